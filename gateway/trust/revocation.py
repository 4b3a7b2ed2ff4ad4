"""Is a certificate revoked? Decide from OCSP responses and CRLs, fail closed, cache until nextUpdate.

The evidence comes in as bytes through the ports in :mod:`gateway.ports`; this module checks that the
evidence is authentic (signed by the issuing CA or its delegated OCSP responder), fresh and about the
right certificate, and only then believes it. With no usable answer from any source the status is
unknown and the certificate is refused, unless the deployment chose soft-fail, which is then reported
on every answer so the adapter can log and count it.
"""

from __future__ import annotations

import datetime
import enum
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from gateway.errors import Refusal
from gateway.ports import CrlFetcher, OcspFetcher, RevocationFetchError

_WEAK_HASHES = (hashes.SHA1, hashes.MD5)
MAX_AGE_WITHOUT_NEXT_UPDATE = datetime.timedelta(minutes=15)


class RevocationStatus(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RevocationAnswer:
    status: RevocationStatus
    source: str  # "ocsp", "crl", or "none" when soft-failed
    this_update: datetime.datetime | None = None
    next_update: datetime.datetime | None = None
    revocation_time: datetime.datetime | None = None
    reason: str | None = None
    soft_failed: bool = False
    detail: str = ""


class RevocationEvidenceError(Exception):
    """Evidence was fetched but cannot be believed: wrong signer, stale, about another certificate."""


def ocsp_url(cert: x509.Certificate) -> str | None:
    """The OCSP responder URL from the certificate's Authority Information Access, if any."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for desc in aia:
        if desc.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
                desc.access_location, x509.UniformResourceIdentifier):
            return desc.access_location.value
    return None


def build_ocsp_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """A DER OCSP request for ``cert`` (CertID hashed with SHA-256), without a nonce so answers can be cached."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256())
    return builder.build().public_bytes(serialization.Encoding.DER)


def _signature_hash(evidence) -> hashes.HashAlgorithm | None:
    """The hash of the evidence's signature; None (refused as unknown) when cryptography does not know the OID.

    The OID is read before the signature is checked, so it is attacker-controlled on plain-HTTP OCSP/CRL.
    """
    try:
        return evidence.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None


def _verify_signed_by(public_key, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None) -> None:
    if algorithm is None or isinstance(algorithm, _WEAK_HASHES):
        raise RevocationEvidenceError(f"evidence signed with a weak or unknown hash ({algorithm})")
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            raise RevocationEvidenceError("evidence signed with an unsupported key type")
    except InvalidSignature:
        raise RevocationEvidenceError("evidence signature does not verify") from None


def _responder_key(resp: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime.datetime):
    """The key that may sign this response: the issuer's own, or a delegated responder it certified."""
    issuer_key_hash = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    if resp.responder_name == issuer.subject or resp.responder_key_hash == issuer_key_hash:
        return issuer.public_key()
    for candidate in resp.certificates:
        names_match = resp.responder_name is not None and candidate.subject == resp.responder_name
        key_match = resp.responder_key_hash is not None and resp.responder_key_hash == \
            x509.SubjectKeyIdentifier.from_public_key(candidate.public_key()).digest
        if not (names_match or key_match):
            continue
        try:
            candidate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise RevocationEvidenceError("the OCSP responder certificate is not issued by the CA") from None
        try:
            eku = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = []
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            raise RevocationEvidenceError("the OCSP responder certificate lacks the OCSPSigning usage")
        if not candidate.not_valid_before_utc <= now <= candidate.not_valid_after_utc:
            raise RevocationEvidenceError("the OCSP responder certificate is not valid now")
        return candidate.public_key()
    raise RevocationEvidenceError("the OCSP response is signed by an unknown responder")


def evaluate_ocsp(der: bytes, cert: x509.Certificate, issuer: x509.Certificate, now: datetime.datetime,
                  skew: datetime.timedelta = datetime.timedelta(minutes=5)) -> RevocationAnswer:
    """Believe an OCSP response about ``cert`` only if authentic, fresh and about that certificate."""
    try:
        resp = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        raise RevocationEvidenceError(f"not an OCSP response: {exc}") from None
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise RevocationEvidenceError(f"OCSP responder answered {resp.response_status.name}")
    _verify_signed_by(_responder_key(resp, issuer, now), resp.signature, resp.tbs_response_bytes,
                      _signature_hash(resp))
    for single in resp.responses:
        if single.serial_number != cert.serial_number:
            continue
        try:
            expected = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, single.hash_algorithm).build()
        except (UnsupportedAlgorithm, ValueError):
            raise RevocationEvidenceError("the OCSP response identifies the certificate with an unsupported hash") \
                from None
        if (single.issuer_key_hash, single.issuer_name_hash) != (expected.issuer_key_hash, expected.issuer_name_hash):
            continue
        this_update = single.this_update_utc
        next_update = single.next_update_utc
        if this_update > now + skew:
            raise RevocationEvidenceError("OCSP response is dated in the future")
        if next_update is not None and next_update < now - skew:
            raise RevocationEvidenceError("OCSP response is stale (nextUpdate has passed)")
        if next_update is None and this_update < now - MAX_AGE_WITHOUT_NEXT_UPDATE:
            # Without nextUpdate nothing bounds a replayed old "good" (we send no nonce): demand a fresh one.
            raise RevocationEvidenceError("OCSP response without nextUpdate is older than "
                                          f"{int(MAX_AGE_WITHOUT_NEXT_UPDATE.total_seconds() // 60)} minutes")
        status = {
            ocsp.OCSPCertStatus.GOOD: RevocationStatus.GOOD,
            ocsp.OCSPCertStatus.REVOKED: RevocationStatus.REVOKED,
            ocsp.OCSPCertStatus.UNKNOWN: RevocationStatus.UNKNOWN,
        }[single.certificate_status]
        reason = single.revocation_reason.name if status is RevocationStatus.REVOKED and single.revocation_reason \
            else None
        return RevocationAnswer(status, "ocsp", this_update, next_update,
                                single.revocation_time_utc if status is RevocationStatus.REVOKED else None, reason)
    raise RevocationEvidenceError("the OCSP response does not cover this certificate")


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise RevocationEvidenceError(f"not a CRL: {exc}") from None


def check_crl_authentic(crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: datetime.datetime,
                        skew: datetime.timedelta = datetime.timedelta(minutes=5)) -> None:
    if crl.issuer != issuer.subject:
        raise RevocationEvidenceError("the CRL is issued by another CA")
    algorithm = _signature_hash(crl)
    if algorithm is None or isinstance(algorithm, _WEAK_HASHES):
        raise RevocationEvidenceError("the CRL is signed with a weak hash")
    if not crl.is_signature_valid(issuer.public_key()):
        raise RevocationEvidenceError("the CRL signature does not verify")
    if crl.last_update_utc > now + skew:
        raise RevocationEvidenceError("the CRL is dated in the future")
    for partial in (x509.IssuingDistributionPoint, x509.DeltaCRLIndicator):
        try:
            crl.extensions.get_extension_for_class(partial)
        except x509.ExtensionNotFound:
            continue
        # A partitioned or delta CRL does not list every revoked certificate of the issuer; believing it as
        # the issuer's full CRL (which is how CRLs are cached here) could miss a revocation.
        raise RevocationEvidenceError("partitioned and delta CRLs are not supported; publish a full CRL")
    if crl.next_update_utc is None or crl.next_update_utc < now - skew:
        raise RevocationEvidenceError("the CRL is stale (nextUpdate has passed)")


def evaluate_crl(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> RevocationAnswer:
    """Status of ``cert`` by an already authenticated CRL of its issuer."""
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return RevocationAnswer(RevocationStatus.GOOD, "crl", crl.last_update_utc, crl.next_update_utc)
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
    except x509.ExtensionNotFound:
        reason = None
    return RevocationAnswer(RevocationStatus.REVOKED, "crl", crl.last_update_utc, crl.next_update_utc,
                            entry.revocation_date_utc, reason)


DEFAULT_MAX_CACHE_AGE = datetime.timedelta(minutes=5)


class RevocationChecker:
    """Asks OCSP first (when the certificate names a responder), then the CRL.

    Answers and CRLs are cached until their nextUpdate, but never longer than ``max_cache_age``: a CA's
    nextUpdate is often days away, and a revocation the CA has already published (a new CRL file, a new
    OCSP answer) must reach the gateway within minutes, not at the old CRL's expiry.
    """

    def __init__(self, *, ocsp_fetcher: OcspFetcher | None = None, crl_fetcher: CrlFetcher | None = None,
                 soft_fail: bool = False, skew: datetime.timedelta = datetime.timedelta(minutes=5),
                 max_cache_age: datetime.timedelta = DEFAULT_MAX_CACHE_AGE) -> None:
        self._ocsp = ocsp_fetcher
        self._crl = crl_fetcher
        self.soft_fail = soft_fail
        self._skew = skew
        self._max_age = max_cache_age
        # Each cache entry carries the moment it stops being used: min(nextUpdate, fetched + max age).
        self._answers: dict[tuple[x509.Certificate, int], tuple[RevocationAnswer, datetime.datetime]] = {}
        self._crls: dict[x509.Certificate, tuple[x509.CertificateRevocationList, datetime.datetime]] = {}
        self._lock = threading.Lock()
        self.soft_failures = 0
        """How many certificates were accepted without a revocation answer (soft-fail): exported as a metric."""

    def forget(self) -> None:
        """Drop every cached answer and CRL (after an operator learns of a revocation out of band)."""
        with self._lock:
            self._answers.clear()
            self._crls.clear()

    def status(self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime.datetime) -> RevocationAnswer:
        key = (issuer, cert.serial_number)  # issuer compared by full DER on lookup
        cached = self._answers.get(key)
        if cached is not None and now < cached[1]:
            return cached[0]
        failures: list[str] = []
        answer = self._ask_ocsp(cert, issuer, now, failures) or self._ask_crl(cert, issuer, now, failures)
        if answer is None:
            detail = "; ".join(failures) or "no revocation source is configured"
            if self.soft_fail:
                with self._lock:
                    self.soft_failures += 1
                return RevocationAnswer(RevocationStatus.UNKNOWN, "none", soft_failed=True, detail=detail)
            raise Refusal("revocation-unavailable", f"the certificate's revocation status cannot be had: {detail}")
        if answer.next_update is not None and answer.status is not RevocationStatus.UNKNOWN:
            with self._lock:
                self._answers[key] = (answer, min(answer.next_update, now + self._max_age))
        return answer

    def _ask_ocsp(self, cert, issuer, now, failures) -> RevocationAnswer | None:
        url = ocsp_url(cert)
        if self._ocsp is None or url is None:
            return None
        try:
            return evaluate_ocsp(self._ocsp(url, build_ocsp_request(cert, issuer)), cert, issuer, now, self._skew)
        except (RevocationFetchError, RevocationEvidenceError) as exc:
            failures.append(f"OCSP {url}: {exc}")
            return None

    def _ask_crl(self, cert, issuer, now, failures) -> RevocationAnswer | None:
        if self._crl is None:
            return None
        cached = self._crls.get(issuer)
        if cached is not None and now < cached[1]:
            crl = cached[0]
        else:
            try:
                crl = load_crl(self._crl(issuer, cert))
                check_crl_authentic(crl, issuer, now, self._skew)
            except (RevocationFetchError, RevocationEvidenceError) as exc:
                failures.append(f"CRL: {exc}")
                return None
            with self._lock:
                self._crls[issuer] = (crl, min(crl.next_update_utc, now + self._max_age))
        return evaluate_crl(crl, cert)

    def require_good(self, cert: x509.Certificate, issuer: x509.Certificate,
                     now: datetime.datetime) -> RevocationAnswer:
        """The answer for ``cert``, refusing revoked and unknown ones (soft-fail answers pass, flagged)."""
        answer = self.status(cert, issuer, now)
        if answer.status is RevocationStatus.REVOKED:
            when = answer.revocation_time.isoformat() if answer.revocation_time else "an unknown time"
            raise Refusal("certificate-revoked", f"the certificate was revoked at {when}"
                          + (f" ({answer.reason})" if answer.reason else "") + f" per {answer.source.upper()}")
        if answer.status is RevocationStatus.UNKNOWN and not answer.soft_failed:
            raise Refusal("certificate-status-unknown", "the OCSP responder does not know this certificate")
        return answer
