"""Certificate policy of the certificate platform (憑證認證平台): who is trusted to sign or connect.

Path building and signature checks of the chain are cryptography's (``x509.verification``); this module
only says what we require of the end entity for each purpose and turns failures into stable codes.
Chain results are cached per certificate, because agencies sign thousands of vouchers with the same few
certificates and building the path each time would dominate verification.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.error import PyAsn1Error
from pyasn1_modules import rfc5280

from gateway.errors import Refusal

# MOICA puts the last four digits of the holder's national ID in Subject Directory Attributes.
SUBJECT_DIRECTORY_ATTRIBUTES = x509.ObjectIdentifier("2.5.29.9")
ID_LAST_FOUR = "2.16.886.1.100.2.51"


class Purpose(enum.Enum):
    DOCUMENT_SIGNING = "document-signing"  # a person signing a voucher or an action
    TLS_CLIENT = "tls-client"  # an agency's or bank's system connecting to us
    SERVICE_SIGNING = "service-signing"  # the gateway's or bank's own signed messages


@dataclass(frozen=True)
class CertificateIdentity:
    """How the registry and the audit log name a certificate."""

    issuer: str
    serial_hex: str
    key_sha256: str
    subject: str
    common_name: str | None
    id_last_four: str | None

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertificateIdentity:
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return cls(
            issuer=cert.issuer.rfc4514_string(),
            serial_hex=format(cert.serial_number, "X"),
            key_sha256=hashlib.sha256(spki).hexdigest(),
            subject=cert.subject.rfc4514_string(),
            common_name=str(cns[0].value) if cns else None,
            id_last_four=citizen_id_last_four(cert),
        )


def citizen_id_last_four(cert: x509.Certificate) -> str | None:
    """The holder's last four ID digits from Subject Directory Attributes, or None if absent or unreadable."""
    try:
        ext = cert.extensions.get_extension_for_oid(SUBJECT_DIRECTORY_ATTRIBUTES)
    except x509.ExtensionNotFound:
        return None
    try:
        attrs, rest = der_decoder.decode(ext.value.value, asn1Spec=rfc5280.SubjectDirectoryAttributes())
        if rest:
            return None
        for attr in attrs:
            if str(attr["type"]) == ID_LAST_FOUR:
                for value in attr["values"]:
                    inner, _ = der_decoder.decode(bytes(value))
                    text = str(inner)
                    if len(text) == 4 and text.isdigit():
                        return text
    except (PyAsn1Error, ValueError, TypeError):
        return None
    return None


def _key_usage_validator(purpose: Purpose):
    def validate(policy, cert: x509.Certificate, ku: x509.KeyUsage) -> None:
        if purpose is Purpose.TLS_CLIENT:
            if not ku.digital_signature:
                raise ValueError("a TLS client certificate needs the digitalSignature key usage")
        elif not (ku.digital_signature or ku.content_commitment):
            raise ValueError("a signing certificate needs digitalSignature or nonRepudiation key usage")
    return validate


def _eku_validator(purpose: Purpose):
    def validate(policy, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
        if purpose is Purpose.TLS_CLIENT:
            if eku is None or ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
                raise ValueError("a TLS client certificate needs the clientAuth extended key usage")
        elif eku is not None and ExtendedKeyUsageOID.OCSP_SIGNING in eku:
            raise ValueError("an OCSP responder certificate may not sign documents")
    return validate


def _ee_policy(purpose: Purpose) -> ExtensionPolicy:
    policy = ExtensionPolicy.permit_all().require_present(x509.KeyUsage, Criticality.AGNOSTIC,
                                                          _key_usage_validator(purpose))
    return policy.may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _eku_validator(purpose))


def key_usage_problem(cert: x509.Certificate, purpose: Purpose) -> str | None:
    """Why ``cert`` may not serve ``purpose`` by its key usages, or None. Checked before path building so the
    refusal says what is wrong rather than "path not found"."""
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "the certificate has no key usage extension"
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    try:
        _key_usage_validator(purpose)(None, cert, ku)
        _eku_validator(purpose)(None, cert, eku)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class ValidatedCertificate:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # leaf first, trust anchor last
    identity: CertificateIdentity

    @property
    def issuer_certificate(self) -> x509.Certificate:
        return self.chain[1]


class TrustStore:
    """The trust anchors (GRCA-like roots) and known intermediates (MOICA-like CAs), with a chain cache."""

    MAX_CACHED = 50_000

    def __init__(self, roots: list[x509.Certificate], intermediates: list[x509.Certificate],
                 max_chain_depth: int = 4) -> None:
        if not roots:
            raise ValueError("a trust store needs at least one root")
        self._store = Store(list(roots))
        self.roots = tuple(roots)
        self.intermediates = tuple(intermediates)
        self._max_depth = max_chain_depth
        self._ca_policy = ExtensionPolicy.webpki_defaults_ca()
        self._ee_policies = {p: _ee_policy(p) for p in Purpose}
        self._cache: dict[tuple[x509.Certificate, Purpose], ValidatedCertificate] = {}
        self._lock = threading.Lock()

    def validate(self, cert: x509.Certificate, purpose: Purpose, now: datetime.datetime,
                 extra_intermediates: tuple[x509.Certificate, ...] = ()) -> ValidatedCertificate:
        """Validate ``cert`` for ``purpose`` at ``now``; raise :class:`Refusal` with a certificate-* code."""
        if now < cert.not_valid_before_utc:
            raise Refusal("certificate-not-yet-valid",
                          f"the certificate is valid only from {cert.not_valid_before_utc.isoformat()}")
        if now > cert.not_valid_after_utc:
            raise Refusal("certificate-expired", f"the certificate expired at {cert.not_valid_after_utc.isoformat()}")
        # Keyed by the certificate itself: its hash is cheap and equality compares the whole DER, so a
        # look-alike can never hit another certificate's entry.
        key = (cert, purpose)
        cached = self._cache.get(key)
        if cached is not None and all(c.not_valid_before_utc <= now <= c.not_valid_after_utc for c in cached.chain):
            return cached
        problem = key_usage_problem(cert, purpose)
        if problem:
            raise Refusal("certificate-key-usage", problem)
        validated = ValidatedCertificate(cert, self._build(cert, purpose, now, extra_intermediates),
                                         CertificateIdentity.of(cert))
        with self._lock:
            if len(self._cache) >= self.MAX_CACHED:  # 2,500 users hold far fewer; this only bounds abuse
                self._cache.clear()
            self._cache[key] = validated
        return validated

    def _build(self, cert: x509.Certificate, purpose: Purpose, now: datetime.datetime,
               extra_intermediates: tuple[x509.Certificate, ...]) -> tuple[x509.Certificate, ...]:
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(now)
            .max_chain_depth(self._max_depth)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policies[purpose])
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(cert, list(self.intermediates) + list(extra_intermediates))
        except VerificationError as exc:
            raise Refusal("certificate-untrusted", f"no trusted path to a root: {exc}") from None
        return tuple(verified.chain)

