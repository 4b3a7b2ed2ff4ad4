"""Wiring the deposit notice worker from the ``notices.*`` settings (adapters/serve/settings.py) into a running gateway.

Kept apart from adapters/serve/command.py so that file only says "start the notices here". Notices are off
unless ``notices.smtp_host`` is set (e-mail, and fax by e-mail, need the mail server); the letters and a
fax spool folder need no mail server but run in the same worker, so they ride on the same switch.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from adapters.command_line import CliError
from adapters.notices.fax import FaxByEmail, FaxSpool
from adapters.notices.smtp import SmtpSender, SmtpSettings
from adapters.notices.worker import EmailChannel, NoticeWorker, NoticeWorkerSettings
from gateway.notices.content import Channel, RetryPolicy

FAX_MODES = ("email", "spool")


def notices_problem(s: dict) -> str | None:
    """Why the notice settings cannot run, or None (also None when notices are off)."""
    if not s["notices.smtp_host"]:
        return None
    if s["notices.fax_mode"] not in FAX_MODES:
        return f"notices.fax_mode: expected one of {', '.join(FAX_MODES)}, got {s['notices.fax_mode']!r}"
    if s["notices.fax_mode"] == "spool" and s["notices.fax_spool_dir"] is None:
        return "notices.fax_mode is spool but notices.fax_spool_dir is not set"
    if "{number}" not in s["notices.fax_address_format"]:
        return "notices.fax_address_format: must contain {number}"
    if "@" not in s["notices.from"]:
        return f"notices.from: expected an e-mail address, got {s['notices.from']!r}"
    for name in ("notices.poll_seconds", "notices.retry_first_seconds", "notices.retry_cap_seconds"):
        if not s[name] > 0:
            return f"{name}: expected a positive number, got {s[name]}"
    if s["notices.retry_cap_seconds"] < s["notices.retry_first_seconds"]:
        return "notices.retry_cap_seconds: must not be below notices.retry_first_seconds"
    if s["notices.max_attempts"] < 1:
        return "notices.max_attempts: expected at least 1"
    try:
        letters_time(s["notices.letters_at"])
    except ValueError:
        return f"notices.letters_at: expected HH:MM, got {s['notices.letters_at']!r}"
    if s["notices.smtp_password_file"] is not None and not Path(s["notices.smtp_password_file"]).is_file():
        return f"notices.smtp_password_file: no such file {s['notices.smtp_password_file']}"
    return None


def letters_time(text: str) -> datetime.time:
    return datetime.time.fromisoformat(text)


def build_worker(s: dict, store, *, reactor, registry=None, clock=None) -> NoticeWorker:
    """The worker the settings describe (notices must be on and :func:`notices_problem` None)."""
    from adapters.statements.cjk_font import cjk_font_name

    password = None
    if s["notices.smtp_password_file"] is not None:
        password = Path(s["notices.smtp_password_file"]).read_text(encoding="utf-8").strip()
    sender = SmtpSender(SmtpSettings(host=s["notices.smtp_host"], port=s["notices.smtp_port"],
                                     sender=s["notices.from"], require_tls=s["notices.smtp_require_tls"],
                                     username=s["notices.smtp_username"], password=password,
                                     ca=s["notices.smtp_ca"]), reactor=reactor)
    extra = {"clock": clock} if clock is not None else {}
    from adapters.clock import utc_now

    now = clock or utc_now
    if s["notices.fax_mode"] == "spool":
        fax = FaxSpool(s["notices.fax_spool_dir"], font=cjk_font_name)
    else:
        fax = FaxByEmail(sender, address_format=s["notices.fax_address_format"], font=cjk_font_name, clock=now)
    policy = RetryPolicy(first=datetime.timedelta(seconds=s["notices.retry_first_seconds"]),
                         cap=datetime.timedelta(seconds=s["notices.retry_cap_seconds"]),
                         max_attempts=s["notices.max_attempts"])
    settings = NoticeWorkerSettings(poll_seconds=s["notices.poll_seconds"], policy=policy,
                                    letters_dir=s["notices.letters_dir"],
                                    letters_at=letters_time(s["notices.letters_at"]))
    return NoticeWorker(store, {Channel.EMAIL: EmailChannel(sender, clock=now), Channel.FAX: fax},
                        settings=settings, reactor=reactor, registry=registry, font=cjk_font_name, **extra)


def start_notices(reactor, s: dict, store, registry) -> None:
    """Run the worker in this reactor when ``notices.smtp_host`` is set; stopped before the store closes."""

    if not s["notices.smtp_host"]:
        return
    if problem := notices_problem(s):
        raise CliError(f"cannot start: {problem}")
    try:
        worker = build_worker(s, store, reactor=reactor, registry=registry)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot start the deposit notices: {exc}") from None
    reactor.callWhenRunning(worker.start)
    reactor.addSystemEventTrigger("before", "shutdown", worker.stop)
