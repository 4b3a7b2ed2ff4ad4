"""Settings of `vgw serve`: a TOML file, overridden by ``VGW_*`` environment variables, overridden by options.

Every setting has one flat name (``trust.roots``), one TOML place (``[trust] roots = [...]``) and one
environment variable (``VGW_TRUST_ROOTS``; lists separated by ``os.pathsep``). A wrong type or an unknown
key is refused at start-up with the setting's name, so a typo never silently falls back to a default.
``pki`` names a ``vgw pki init`` folder and fills every TLS and trust file not given explicitly.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """A setting is unknown, of the wrong type, or missing."""


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _paths(text: str) -> tuple[Path, ...]:
    return tuple(Path(p) for p in text.split(os.pathsep) if p)


def _user_map(text: str | list) -> dict[str, str]:
    """Broker users to agencies: ``guest=379000001A,other=379000002A`` (TOML: a list of such strings)."""
    items = text.split(",") if isinstance(text, str) else text
    mapping = {}
    for item in items:
        user, sep, agency = str(item).strip().partition("=")
        if not sep or not user or not agency:
            raise ValueError(f"expected USER=AGENCY, got {item!r}")
        mapping[user] = agency
    return mapping


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str], object]  # from an environment variable's text
    default: object
    help: str

    @property
    def env(self) -> str:
        return "VGW_" + self.name.upper().replace(".", "_").replace("-", "_")


SETTINGS = (
    Setting("listen", str, "127.0.0.1:8443", "HOST:PORT of the HTTPS listener (port 0 picks a free one)"),
    Setting("store", str, "sqlite:///vgw.sqlite3", "sqlite:///PATH or postgresql://..."),
    Setting("workers", int, 1, "processes sharing the listener (1: one process, no supervisor; see operations.md)"),
    Setting("pki", Path, None, "a `vgw pki init` folder: fills the TLS and trust files not set explicitly"),
    Setting("tls.cert", Path, None, "the gateway's certificate (PEM), also used to sign receipts"),
    Setting("tls.key", Path, None, "the gateway's private key (PEM)"),
    Setting("tls.chain", _paths, (), "intermediate certificates sent with ours"),
    Setting("trust.roots", _paths, (), "trust anchors (PEM files)"),
    Setting("trust.intermediates", _paths, (), "issuing CAs (PEM files)"),
    Setting("trust.registry", Path, None, "the role registry (TOML)"),
    Setting("trust.crl_dir", Path, None, "folder of intermediate.crl and root.crl"),
    Setting("trust.ocsp", _bool, False, "ask the OCSP responders named in certificates first"),
    Setting("trust.soft_fail", _bool, False, "accept when no revocation source answers (flagged, counted)"),
    Setting("trust.revocation_max_age", float, 300.0, "seconds a revocation answer or CRL is reused at most"),
    Setting("limits.max_body", int, 8 * 1024 * 1024, "largest accepted request body, bytes"),
    Setting("limits.threads", int, 8, "worker threads for verification and the store"),
    Setting("limits.rate", float, 50.0, "requests per second per agency on /v1 routes (0: no limit)"),
    Setting("limits.burst", int, 100, "requests an agency may send at once"),
    Setting("metrics.listen", str, None, "HOST:PORT for plain-HTTP /metrics (keep it on 127.0.0.1)"),
    Setting("amqp.url", str, None, "amqp://... to also take vouchers from RabbitMQ (exchange vgw.vouchers)"),
    Setting("amqp.users", _user_map, {}, "broker users allowed to submit, as USER=AGENCY pairs"),
    Setting("bank.exchange", _bool, False, "also run the bank exchange in this process: batch treasury-accepted "
            "payments into signed pain.001, relay them, apply the bank's reports (else run `vgw bank run`)"),
    Setting("bank.amqp", str, None, "amqp://... of the bank link (needed by bank.exchange; only `vgw sim serve` "
            "runs it on the in-process transport, with the simulated bank in the same process)"),
    Setting("bank.cert", Path, None, "the bank's certificate (PEM), pinned: the only signer of reports taken"),
    Setting("bank.topology_prefix", str, "", "prefix of the bank exchange and queue names (same on both ends)"),
    Setting("bank.batch_seconds", float, 5.0, "how often treasury-accepted payments are batched"),
    Setting("bank.relay_seconds", float, 2.0, "how often the outbox relay publishes what is unsent"),
    Setting("bank.sweep_seconds", float, 10.0, "how often vouchers are settled from their lines (crash leftovers)"),
    Setting("bank.max_per_message", int, 5000, "transactions per pain.001 message"),
    Setting("bank.unconfirmed_hours", float, 24.0, "flag lines without a final bank answer after this many hours"),
    Setting("bank.resend_seconds", float, 1800.0, "send a transfer message again when lines still have no final "
            "answer this long after it was sent (0: never by itself)"),
    Setting("bank.max_resends", int, 5, "automatic re-sends per transfer message at most"),
    Setting("notices.smtp_host", str, None, "the mail server for deposit notices (入戶通知); unset: no notices sent"),
    Setting("notices.smtp_port", int, 25, "its port (STARTTLS is used whenever the server offers it)"),
    Setting("notices.smtp_require_tls", _bool, False, "refuse to send unless the mail server offers STARTTLS"),
    Setting("notices.smtp_username", str, None, "SMTP AUTH user (with notices.smtp_password_file)"),
    Setting("notices.smtp_password_file", Path, None, "a file holding the SMTP AUTH password"),
    Setting("notices.smtp_ca", Path, None, "PEM of the CA to trust for the mail server's STARTTLS (else the system's)"),
    Setting("notices.from", str, "no-reply@gov.taipei", "the From address of deposit notices"),
    Setting("notices.fax_mode", str, "email", "fax notices by `email` (an e-mail-to-fax gateway) or `spool` (a folder)"),
    Setting("notices.fax_address_format", str, "{number}@fax.gov.taipei", "the e-mail-to-fax address, {number} "
            "the fax number's digits"),
    Setting("notices.fax_spool_dir", Path, None, "the fax server's spool folder (notices.fax_mode = spool)"),
    Setting("notices.letters_dir", Path, None, "where the day's postal letters (PDF) are written; unset: only "
            "`vgw notices letters` writes them"),
    Setting("notices.letters_at", str, "16:00", "Taipei time after which the day's letters are written"),
    Setting("notices.poll_seconds", float, 10.0, "how often due notices are sent"),
    Setting("notices.retry_first_seconds", float, 60.0, "the longest wait before the first retry (doubling, jittered)"),
    Setting("notices.retry_cap_seconds", float, 3600.0, "the longest wait between two attempts"),
    Setting("notices.max_attempts", int, 8, "attempts per notice before it is given up (failed)"),
    Setting("console.signer_url", str, "http://127.0.0.1:61162", "where the console's pages reach the person's "
            "local signing agent (vgw signer serve); named in the pages' Content-Security-Policy"),
    Setting("console.session_idle_minutes", float, 15.0, "a card sign-in session ends after this long unused"),
    Setting("console.session_hours", float, 8.0, "and at the latest this long after the sign-in"),
)
_BY_NAME = {s.name: s for s in SETTINGS}


def _flatten(table: Mapping, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _from_file(value: object, setting: Setting) -> object:
    """Coerce a TOML value to the setting's type (lists of paths, paths, numbers, booleans)."""
    default = setting.default
    if setting.parse is _paths:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{setting.name}: expected a list of paths")
        return tuple(Path(v) for v in value)
    if setting.parse is _user_map:
        if not isinstance(value, list):
            raise SettingsError(f"{setting.name}: expected a list of \"USER=AGENCY\" strings")
        try:
            return _user_map(value)
        except ValueError as exc:
            raise SettingsError(f"{setting.name}: {exc}") from None
    if setting.parse is Path:
        if not isinstance(value, str):
            raise SettingsError(f"{setting.name}: expected a path")
        return Path(value)
    expected = type(default) if default is not None else str
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise SettingsError(f"{setting.name}: expected {expected.__name__}, got {value!r}")
    return value


def load_settings(config: Path | None, environ: Mapping[str, str], overrides: Mapping[str, object]) -> dict:
    """Defaults < config file < environment < command-line overrides (``None`` overrides are ignored)."""
    values = {s.name: s.default for s in SETTINGS}
    if config is not None:
        try:
            table = tomllib.loads(Path(config).read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"cannot read {config}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config} is not valid TOML: {exc}") from None
        for name, value in _flatten(table).items():
            if name not in _BY_NAME:
                raise SettingsError(f"{config}: unknown setting {name!r}")
            values[name] = _from_file(value, _BY_NAME[name])
    for setting in SETTINGS:
        if setting.env in environ:
            try:
                values[setting.name] = setting.parse(environ[setting.env])
            except ValueError as exc:
                raise SettingsError(f"{setting.env}: {exc}") from None
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
    return _fill_from_pki(values)


def _fill_from_pki(values: dict) -> dict:
    pki = values["pki"]
    if pki is not None:
        pki = Path(pki)
        defaults = {
            "tls.cert": pki / "gateway/cert.pem", "tls.key": pki / "gateway/key.pem",
            "tls.chain": (pki / "intermediate/cert.pem",), "trust.roots": (pki / "root/cert.pem",),
            "trust.intermediates": (pki / "intermediate/cert.pem",), "trust.registry": pki / "registry.toml",
            "trust.crl_dir": pki / "crl", "bank.cert": pki / "bank/cert.pem",
        }
        for name, value in defaults.items():
            if values[name] in (None, ()):
                values[name] = value
    missing = [n for n in ("tls.cert", "tls.key", "trust.registry") if values[n] is None]
    if missing or not values["trust.roots"]:
        raise SettingsError("set pki, or tls.cert, tls.key, trust.roots and trust.registry "
                            f"(missing: {', '.join(missing + ([] if values['trust.roots'] else ['trust.roots']))})")
    return values
