"""Settings of the HTTP API beyond the listener: the per-agency rate limit and the metrics listener.

Named like the rows of ``adapters.serve.settings.SETTINGS`` (``limits.rate``, ``limits.burst``, ``metrics.listen``;
environment ``VGW_LIMITS_RATE``, ``VGW_LIMITS_BURST``, ``VGW_METRICS_LISTEN``): ``vgw serve`` builds them
from its loaded settings (:meth:`ApiSettings.from_settings`); a ``GatewayHttpApi`` made without settings
(tests, embedding) reads the same environment variables itself (:meth:`ApiSettings.from_environ`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters.http.rate_limit import RateLimit

DEFAULT_RATE = 50.0
DEFAULT_BURST = 100


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) as (host, port); ValueError otherwise."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ApiSettings:
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(DEFAULT_RATE, DEFAULT_BURST))
    """Per calling agency, on the /v1 routes; a rate of 0 turns limiting off."""
    metrics_listen: tuple[str, int] | None = None
    """Where to serve /metrics over plain HTTP besides the mTLS listener (meant for 127.0.0.1), or None."""

    @classmethod
    def from_settings(cls, s: Mapping[str, object]) -> ApiSettings:
        """From ``adapters.serve.settings.load_settings``' result; missing keys take the defaults."""
        metrics = s.get("metrics.listen")
        return cls(RateLimit(float(s.get("limits.rate", DEFAULT_RATE)), int(s.get("limits.burst", DEFAULT_BURST))),
                   listen_address(str(metrics)) if metrics else None)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        """From ``VGW_LIMITS_RATE``, ``VGW_LIMITS_BURST``, ``VGW_METRICS_LISTEN``; ValueError naming the
        variable when one is malformed."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, env, parse in [("limits.rate", "VGW_LIMITS_RATE", float), ("limits.burst", "VGW_LIMITS_BURST", int),
                                 ("metrics.listen", "VGW_METRICS_LISTEN", str)]:
            if environ.get(env):
                try:
                    values[name] = parse(environ[env])
                except ValueError:
                    raise ValueError(f"{env}: not a valid value: {environ[env]!r}") from None
        try:
            return cls.from_settings(values)
        except ValueError as exc:
            raise ValueError(f"VGW_LIMITS_* / VGW_METRICS_LISTEN: {exc}") from None
