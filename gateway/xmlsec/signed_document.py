"""The checks every signed document from outside passes before its content is read: vouchers and actions.

Order matters for both safety and cost: cheap structural refusals first (size, DTD, depth, schema), then
the signature, its time bounds, and the signer's certificate (chain, key usage, revocation). What comes
back is only what the verifier returned as signed, so the caller reads content from ``signed_root``.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from lxml import etree

from gateway.errors import Refusal
from gateway.trust.certificates import Purpose
from gateway.trust.platform import CertificatePlatform, CheckedCertificate
from gateway.xmlsec.parsing import DEFAULT_LIMITS, XmlLimits, parse_untrusted
from gateway.xmlsec.validation import schema_problems
from gateway.xmlsec.verification import verify_enveloped


@dataclass(frozen=True)
class SignaturePolicy:
    """Deployment choices for signed documents, with the safe defaults."""

    max_signature_age: datetime.timedelta = datetime.timedelta(days=30)
    """A SigningTime older than this is refused: it bounds how far back a signer can claim to have signed."""
    clock_skew: datetime.timedelta = datetime.timedelta(minutes=5)
    """How far in the future a SigningTime may lie, for signers' clocks that run fast."""
    limits: XmlLimits = DEFAULT_LIMITS


DEFAULT_SIGNATURE_POLICY = SignaturePolicy()


@dataclass(frozen=True)
class SignedDocument:
    signed_root: etree._Element
    """The document as the signature verifier returned it: the only tree whose values may be used."""
    signing_time: datetime.datetime
    certificate: CheckedCertificate
    received_sha256: str
    """SHA-256 of the exact bytes received."""


def check_signed_document(data: bytes, schema: str, *, platform: CertificatePlatform, now: datetime.datetime,
                          policy: SignaturePolicy = DEFAULT_SIGNATURE_POLICY) -> SignedDocument:
    """Parse ``data`` hardened, validate it against ``schema``, verify its one enveloped signature and the
    signer's certificate for document signing at ``now``; raise :class:`Refusal` with codes otherwise."""
    received_sha256 = hashlib.sha256(data).hexdigest()
    root = parse_untrusted(data, policy.limits)
    problems = schema_problems(root, schema)
    if problems:
        raise Refusal(problems)
    signature = verify_enveloped(root, now=now)
    if signature.signing_time > now + policy.clock_skew:
        raise Refusal("signature-time-invalid", f"the signature claims a time in the future "
                      f"({signature.signing_time.isoformat()})")
    if signature.signing_time < now - policy.max_signature_age:
        raise Refusal("signature-time-invalid", f"the signature is older than {policy.max_signature_age.days} days")
    checked = platform.check(signature.signer_certificate, Purpose.DOCUMENT_SIGNING, now)
    return SignedDocument(signature.signed_root, signature.signing_time, checked, received_sha256)
