"""Handing one message to the city's mail server with Twisted's SMTP client.

``twisted.mail.smtp.ESMTPSenderFactory`` speaks ESMTP: STARTTLS whenever the server offers it (the
certificate checked against the system's trust roots, or ``ca`` when given), refused outright when
``require_tls`` is set and the server does not offer it; AUTH when a username is set. Twisted's own
retries are off (``retries=0``): trying again is the notice worker's decision, with its backoff and its
record in the store. :meth:`SmtpSender.send` never fails: it fires with the attempt's result, the server's
reply classified by gateway/notices/content.py ``classify_smtp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from twisted.internet import defer
from twisted.internet import error as net_error
from twisted.logger import Logger
from twisted.mail import smtp

from gateway.notices.content import AttemptResult, Result, classify_smtp

log = Logger(namespace="vgw.notices.smtp")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = "no-reply@gov.taipei"
    """The envelope and header From address."""
    require_tls: bool = False
    """Refuse to send unless the server offers STARTTLS (else STARTTLS is used when offered)."""
    username: str | None = None
    password: str | None = None
    ca: Path | None = None
    """A PEM file of the certificate authority to trust for STARTTLS instead of the system's."""
    timeout: float = 60.0
    helo: str | None = None
    """The name we greet with (EHLO); default: the sender address's domain."""

    @property
    def domain(self) -> str:
        return self.sender.rpartition("@")[2]


class SmtpSender:
    def __init__(self, settings: SmtpSettings, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        self.reactor = reactor
        self._tls = self._tls_options()

    def _tls_options(self):
        from twisted.internet.ssl import Certificate, optionsForClientTLS

        trust = None
        if self.settings.ca is not None:
            trust = Certificate.loadPEM(Path(self.settings.ca).read_bytes())
        return optionsForClientTLS(self.settings.host, trustRoot=trust)

    def send(self, to: str, message: bytes) -> defer.Deferred:
        """Deliver ``message`` to ``to``; fires with an :class:`AttemptResult` (never errbacks)."""
        s = self.settings
        sending: list = []

        def cancel(_d) -> None:  # as twisted.mail.smtp.sendmail does: no retry, drop the connection
            factory, connector = sending
            factory.sendFinished = True
            if factory.currentProtocol is not None:
                factory.currentProtocol.transport.abortConnection()
            else:
                connector.disconnect()

        done: defer.Deferred = defer.Deferred(cancel)
        factory = smtp.ESMTPSenderFactory(
            s.username.encode() if s.username else None, s.password.encode() if s.password else None,
            s.sender, [to], BytesIO(message), done, retries=0, timeout=s.timeout, contextFactory=self._tls,
            heloFallback=not s.require_tls and not s.username, requireAuthentication=bool(s.username),
            requireTransportSecurity=s.require_tls, hostname=s.host)
        factory.domain = (s.helo or s.domain).encode("idna")
        sending += [factory, self.reactor.connectTCP(s.host, s.port, factory, timeout=s.timeout)]
        # ``timeout`` is Twisted's idle timeout, reset by every byte: a server dripping its answers could hold a
        # notice (and its lease) for ever, so the whole session is bounded too
        done.addTimeout(s.timeout * 2, self.reactor, onTimeoutCancel=_session_timeout)
        done.addCallbacks(_delivered, _failed)
        return done


def _session_timeout(_result, after: float) -> AttemptResult:
    return AttemptResult(Result.TRANSIENT, f"the mail server did not finish the session within {after:g} s")


def _delivered(result) -> AttemptResult:
    if isinstance(result, AttemptResult):  # the session's deadline passed
        return result
    _count, addresses = result
    code, reply = 250, b"accepted"
    if addresses:
        _address, code, reply = addresses[0]
    return classify_smtp(int(code), reply)


def _failed(failure) -> AttemptResult:
    exc = failure.value
    if isinstance(exc, smtp.TLSRequiredError):  # our setting, not the recipient: not a bounce
        return AttemptResult(Result.TRANSIENT, "the mail server does not offer STARTTLS and notices.smtp_require_tls "
                                               "is set")
    if isinstance(exc, smtp.SMTPClientError) and isinstance(exc.code, int) and exc.code >= 200:
        answer = classify_smtp(exc.code, _server_reply(exc))
        if answer.result is Result.PERMANENT and _last_command(exc) not in (b"RCPT", b"DATA"):
            # a 5xx to EHLO, AUTH or MAIL FROM is about us (credentials, sender, relay rights), not the payee's
            # address: the notice waits for the operator to fix it, it does not bounce
            return AttemptResult(Result.TRANSIENT, f"{answer.reply} (the server refused the gateway itself: check "
                                                   "notices.from, notices.smtp_username and relay rights)", exc.code)
        return answer
    if isinstance(exc, (net_error.ConnectError, net_error.ConnectionLost, net_error.TimeoutError,
                        smtp.SMTPClientError)):
        return AttemptResult(Result.TRANSIENT, f"{type(exc).__name__}: {exc}")
    log.failure("unexpected error sending a notice", failure)
    return AttemptResult(Result.TRANSIENT, f"{type(exc).__name__}: {exc}")


def _last_command(exc: smtp.SMTPClientError) -> bytes:
    """The verb of the last command the client sent (``RCPT``, ``MAIL``, ``AUTH`` …), from Twisted's transcript;
    after the message body it is ``DATA``'s content, which counts as ``DATA``."""
    sent = [line[4:] for line in exc.log.splitlines() if line.startswith(b">>> ")] if isinstance(exc.log, bytes) else []
    if not sent:
        return b""
    verb = sent[-1].split(b" ", 1)[0].split(b":", 1)[0].upper()
    return verb if verb in (b"EHLO", b"HELO", b"STARTTLS", b"AUTH", b"MAIL", b"RCPT") else b"DATA"


def _server_reply(exc: smtp.SMTPClientError) -> str:
    """The server's own words: Twisted's error says "No recipients accepted", its transcript starts with
    ``ADDRESS: CODE TEXT`` as the server answered the recipient (what the operator needs to see)."""
    first = exc.log.split(b"\n", 1)[0] if isinstance(exc.log, bytes) else b""
    _address, colon, answer = first.partition(b": ")
    text = answer if colon and answer[:3].isdigit() else (exc.resp if isinstance(exc.resp, bytes) else b"")
    text = text.decode("utf-8", "replace")
    code = f"{exc.code} "
    return text[len(code):] if text.startswith(code) else text
