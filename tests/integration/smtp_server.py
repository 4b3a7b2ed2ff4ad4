"""A real SMTP server on loopback for the deposit notice tests: aiosmtpd in a thread of its own, with
STARTTLS on a self-signed certificate (or without TLS), recording what arrived and answering recipients as a
test scripts it (``451 …`` then ``250``, a ``550`` for good)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Delivered:
    tls: bool
    mail_from: str
    recipients: list[str]
    content: bytes

    @property
    def message(self):
        return message_from_bytes(self.content, policy=policy.default)


@dataclass
class Mailbox:
    """The aiosmtpd handler: ``script[address]`` lists the answers to give that recipient, in order (then 250)."""

    delivered: list[Delivered] = field(default_factory=list)
    script: dict[str, list[str]] = field(default_factory=dict)
    tried: list[str] = field(default_factory=list)
    refused_senders: set[str] = field(default_factory=set)
    refused_content: bytes | None = None
    """Messages containing these bytes are refused after DATA (554), like a content filter."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address in self.refused_senders:
            return "550 5.7.1 relaying denied for this sender"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.tried.append(address)
            answers = self.script.get(address)
            answer = answers.pop(0) if answers else "250 OK"
        if not answer.startswith("250"):
            return answer
        envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server, session, envelope):
        if self.refused_content is not None and self.refused_content in envelope.content:
            return "554 5.6.0 message content refused"
        with self.lock:
            self.delivered.append(Delivered(session.ssl is not None, envelope.mail_from, list(envelope.rcpt_tos),
                                            envelope.content))
        return "250 2.0.0 OK queued"

    def to(self, address: str) -> list[Delivered]:
        with self.lock:
            return [d for d in self.delivered if address in d.recipients]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (also its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextlib.contextmanager
def smtp_server(directory: Path, *, tls: bool = True, login: tuple[str, str] | None = None):
    """Yields (mailbox, port, CA file or None) of a running server; stopped afterwards. With ``login`` the
    server requires AUTH (after STARTTLS) with that user and password."""
    mailbox = Mailbox()
    context, ca = None, None
    if tls:
        ca, key = self_signed(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(ca, key)
    port = free_port()
    auth = {}
    if login is not None:
        def authenticator(server, session, envelope, mechanism, data):
            return AuthResult(success=(data.login, data.password) == (login[0].encode(), login[1].encode()))
        auth = {"authenticator": authenticator, "auth_required": True}
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=context, **auth)
    controller.start()
    try:
        yield mailbox, port, ca
    finally:
        controller.stop()
