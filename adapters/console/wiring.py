"""Build the console from ``vgw serve``'s settings (called by adapters/serve/command.py): the CSRF key from
the gateway's TLS key, and the dead-letter queue of the bank exchange when it runs over RabbitMQ
(``bank.amqp``, with the same ``bank.topology_prefix`` as the bank worker)."""

from __future__ import annotations

import datetime
from pathlib import Path

from adapters.console.identity import CsrfTokens
from adapters.console.routes import Console
from adapters.console.sign_in import SessionSettings


def build_console(s: dict, *, intake, store, actions=None) -> Console:
    dead_letters = None
    if s.get("bank.amqp"):
        import pika

        from adapters.bank.transport import BankTopology
        from adapters.console.dead_letters import DeadLetters

        dead_letters = DeadLetters(pika.URLParameters(s["bank.amqp"]),
                                   BankTopology().prefixed(s.get("bank.topology_prefix") or ""))
    sessions = SessionSettings(signer_url=s.get("console.signer_url") or SessionSettings.signer_url,
                               idle=datetime.timedelta(minutes=float(s.get("console.session_idle_minutes") or 15)),
                               lifetime=datetime.timedelta(hours=float(s.get("console.session_hours") or 8)))
    return Console(intake=intake, store=store, csrf=CsrfTokens.from_private_key_pem(Path(s["tls.key"]).read_bytes()),
                   dead_letters=dead_letters, sessions=sessions, actions=actions)
