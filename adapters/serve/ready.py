"""The one line ``vgw serve`` prints once it accepts connections: a contract (tests, scripts and the
simulators wait for ``vgw: ready on https://HOST:PORT``), printed alike by a single process
(adapters/serve/command.py) and by the supervisor of several workers (adapters/serve/pool.py)."""

from __future__ import annotations

from adapters.http.settings import listen_address


def ready_line(s: dict, https_port: int, metrics_port: int | None) -> str:
    """The one line saying the gateway accepts connections, and where (never a password from a URL)."""
    line = f"vgw: ready on https://{listen_address(s['listen'])[0]}:{https_port}"
    if metrics_port is not None:
        line += f" metrics=http://{listen_address(s['metrics.listen'])[0]}:{metrics_port}/metrics"
    line += f" store={s['store'].split('@')[-1]}"
    if s["amqp.url"]:
        line += f" amqp={s['amqp.url'].split('@')[-1]}"
    if s["bank.exchange"]:
        line += f" bank={s['bank.amqp'].split('@')[-1] if s['bank.amqp'] else 'in-process'}"
    return line
