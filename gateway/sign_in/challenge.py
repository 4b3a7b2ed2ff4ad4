"""The sign-in challenge (schemas/sign-in.xsd): made by the gateway, signed by the person's card, checked here.

A signed challenge opens a session only if all of this holds (each a stable code):

- it is schema-valid and signed in the voucher profile by a trusted, unrevoked certificate with document
  signing usage, the signature's time within the policy's bounds (the codes of gateway/xmlsec);
- its Origin is this gateway's (``sign-in-origin-mismatch``): a challenge signed on another site's page
  opens nothing here;
- it has not expired, and was not signed before it was issued (``sign-in-expired``);
- its signer holds a grant, in force now, for the agency whose system the browser came through
  (``sign-in-not-registered``): a person of another agency, or one whose deputy window has closed, is not
  let in through this agency's connection.

That the nonce was issued by this gateway, for this TLS connection, and is used once is the store's to say
(adapters/storage): the check here returns the nonce for the adapter to consume. Pure: the time is passed in.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass

from lxml import etree

from gateway.errors import Refusal
from gateway.trust.certificates import CertificateIdentity
from gateway.trust.platform import CertificatePlatform
from gateway.trust.registry import Grant
from gateway.xmlsec.signed_document import DEFAULT_SIGNATURE_POLICY, SignaturePolicy, check_signed_document
from gateway.xmlsec.writing import child_writer, utc_seconds_text

NS = "urn:taipei:voucher-gateway:sign-in:1"
SIGN_IN_SCHEMA = "sign-in.xsd"
LIFETIME = datetime.timedelta(minutes=3)
"""How long a challenge may wait for the card: enough to find the card and type the PIN."""
_Q = "{%s}" % NS
_sub = child_writer(NS)


@dataclass(frozen=True)
class Challenge:
    origin: str
    nonce: str
    issued_at: datetime.datetime
    expires: datetime.datetime


def new_challenge(origin: str, random_bytes: bytes, now: datetime.datetime) -> Challenge:
    """A challenge for ``origin`` with a nonce from 32 bytes of the caller's randomness (the core draws none)."""
    if len(random_bytes) != 32:
        raise ValueError("a nonce is 32 random bytes")
    nonce = base64.urlsafe_b64encode(random_bytes).rstrip(b"=").decode("ascii")
    issued = now.replace(microsecond=0)
    return Challenge(origin, nonce, issued, issued + LIFETIME)


def challenge_document(challenge: Challenge) -> bytes:
    """The unsigned challenge the page hands to the person's signing agent."""
    root = etree.Element(_Q + "SignIn", nsmap={None: NS})
    _sub(root, "Origin", challenge.origin)
    _sub(root, "Nonce", challenge.nonce)
    _sub(root, "IssuedAt", utc_seconds_text(challenge.issued_at))
    _sub(root, "Expires", utc_seconds_text(challenge.expires))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass(frozen=True)
class SignedIn:
    """A checked sign-in: the challenge's nonce (for the store to consume), who signed it and under which
    grants of the agency they came in for."""

    nonce: str
    expires: datetime.datetime
    identity: CertificateIdentity
    grants: tuple[Grant, ...]

    @property
    def name(self) -> str:
        return self.identity.common_name or self.identity.subject


def read_challenge(root: etree._Element) -> Challenge:
    """The values of a schema-valid challenge (in the gateway: only the verifier's signed root)."""
    def text(name: str) -> str:
        return (root.findtext(_Q + name) or "").strip()

    return Challenge(text("Origin"), text("Nonce"), datetime.datetime.fromisoformat(text("IssuedAt")),
                     datetime.datetime.fromisoformat(text("Expires")))


def check_sign_in(data: bytes, *, origin: str, agency: str, platform: CertificatePlatform, now: datetime.datetime,
                  policy: SignaturePolicy = DEFAULT_SIGNATURE_POLICY) -> SignedIn:
    """Accept ``data`` as a challenge for ``origin``, signed by a person registered for ``agency`` now."""
    signed = check_signed_document(data, SIGN_IN_SCHEMA, platform=platform, now=now, policy=policy)
    challenge = read_challenge(signed.signed_root)
    if challenge.origin != origin:
        raise Refusal("sign-in-origin-mismatch", f"the challenge was for {challenge.origin}, not this gateway "
                      f"({origin})", path="/SignIn/Origin")
    if not challenge.issued_at <= now < challenge.expires:
        raise Refusal("sign-in-expired", f"the challenge was valid from {challenge.issued_at.isoformat()} to "
                      f"{challenge.expires.isoformat()}; sign in again", path="/SignIn/Expires")
    if signed.signing_time < challenge.issued_at - policy.clock_skew:
        raise Refusal("sign-in-expired", "the challenge was signed before it was issued")
    identity = signed.certificate.validated.identity
    grants = tuple(g for g in platform.registry.grants_for(identity) if g.agency == agency and g.covers(now))
    if not grants:
        raise Refusal("sign-in-not-registered", f"{identity.common_name or identity.subject} holds no role for "
                      f"agency {agency} now")
    return SignedIn(challenge.nonce, challenge.expires, identity, grants)
