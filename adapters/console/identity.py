"""Who is asking, and what they may see: the console's viewer, named by the TLS client certificate exactly as
the API names its caller (:meth:`adapters.services.intake.IntakeService.calling_agency`: chain, clientAuth,
revocation, and an agency the role registry knows).

- A certificate whose agency is :data:`gateway.trust.roles.TREASURY_AGENCY` (the Finance Bureau's console
  certificate, ``OU=379030000A``; the registry names that agency in its treasury operators' grants) is a
  **treasury operator**: the treasury pages, the dead-letter queue and its replay, every agency's vouchers.
- Any other known agency's certificate is that agency's **staff**: its own vouchers, queues, rejections and
  statements, nothing of another agency and none of the treasury pages.

CSRF: the console's POSTs (replay, the preparation form) carry a token bound to the client certificate,
``HMAC-SHA256(key, "console-csrf|" + certificate SHA-256)``, checked in constant time. The key is derived
from the gateway's own TLS private key, so every worker process of one gateway and every restart agree
without a shared secret store, and nobody without that key can mint one. A forged cross-site form cannot
read the token (the pages are same-origin only and framing is refused), and an ``Origin`` or
``Sec-Fetch-Site`` naming another site is refused before the token is even looked at."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from gateway.trust.roles import TREASURY_AGENCY


@dataclass(frozen=True)
class Viewer:
    agency: str
    subject: str
    """The certificate's subject, as shown on every page (who you are)."""
    fingerprint: str
    """SHA-256 of the client certificate (hex), what the CSRF token is bound to."""
    person: str | None = None
    """The person signed in with their card over this connection (adapters/console/sign_in.py), if any."""
    roles: tuple[str, ...] = ()
    session_hash: str | None = None
    cert_serial: str | None = None
    """The serial of the card's certificate the person signed in with (and its issuer, below)."""
    cert_issuer: str | None = None

    @property
    def treasury(self) -> bool:
        return self.agency == TREASURY_AGENCY

    def may_see_agency(self, agency: str) -> bool:
        return self.treasury or agency == self.agency

    @property
    def actor(self) -> str:
        """How the audit log names this person's console actions."""
        return f"console:{self.agency}:{self.fingerprint[:16]}"


def viewer_of(cert: x509.Certificate, agency: str) -> Viewer:
    return Viewer(agency, cert.subject.rfc4514_string(), cert.fingerprint(hashes.SHA256()).hex())


class CsrfTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_private_key_pem(cls, pem: bytes) -> CsrfTokens:
        """The key derived from the gateway's TLS private key (same for every worker and restart)."""
        key = serialization.load_pem_private_key(pem, password=None)
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        return cls(hmac.new(b"vgw console csrf key v1", der, hashlib.sha256).digest())

    def token(self, viewer: Viewer) -> str:
        return hmac.new(self._key, f"console-csrf|{viewer.fingerprint}".encode(), hashlib.sha256).hexdigest()

    def valid(self, viewer: Viewer, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.token(viewer).encode(), token.encode("utf-8", "replace"))


def cross_site(origin: str | None, fetch_site: str | None, host: str | None) -> bool:
    """Whether a POST's ``Origin`` / ``Sec-Fetch-Site`` headers say it came from another site. Absent headers
    say nothing (non-browser clients); the CSRF token is the check that always applies."""
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    if origin is not None and (host is None or origin != f"https://{host}"):
        return True
    return False
