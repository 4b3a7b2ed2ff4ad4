"""Which revocation evidence the core believes: CRLs and OCSP responses built in memory, no network.

Each forged or stale piece of evidence is a real signed object (made with the simulators' CA), so the test
fails if the core's check is weakened, not just if a flag is missing.
"""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509 import ocsp
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc2560, rfc5280

from gateway.trust.revocation import (
    RevocationEvidenceError,
    RevocationStatus,
    check_crl_authentic,
    evaluate_crl,
    evaluate_ocsp,
)
from simulators.pki.authority import CertificateAuthority, IssueOptions, Profile, name, new_key

NOW = datetime.datetime(2025, 3, 14, 9, 0, tzinfo=datetime.timezone.utc)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
CA_NAME = name(o="行政院", ou="內政部憑證管理中心")
SHA1_WITH_RSA = "1.2.840.113549.1.1.5"


def _issue(ca: CertificateAuthority, subject: x509.Name, profile: Profile, key_kind: str = "ec"):
    key = new_key(key_kind)
    options = IssueOptions(not_before=NOW - DAY, not_after=NOW + 30 * DAY)
    return key, ca.issue(subject, key.public_key(), profile, options)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.new_root(CA_NAME, NOW)


@pytest.fixture(scope="module")
def impostor() -> CertificateAuthority:
    """Another CA that took the same name, with its own (EC) key: only the signature tells them apart."""
    return CertificateAuthority.new_root(CA_NAME, NOW, key=new_key("ec"))


@pytest.fixture(scope="module")
def leaf(ca) -> x509.Certificate:
    return _issue(ca, name(cn="王志明"), Profile.CITIZEN)[1]


@pytest.fixture(scope="module")
def responder(ca):
    """The CA's delegated OCSP responder: (key, cert)."""
    return _issue(ca, name(cn="OCSP Responder (TEST)", o="行政院"), Profile.OCSP_RESPONDER)


# --- CRLs -----------------------------------------------------------------------------------------------

def _crl(ca, revoked=(), *, this_update=NOW - HOUR, next_update=NOW + DAY):
    return ca.crl(list(revoked), this_update=this_update, next_update=next_update, number=1)


def test_a_fresh_crl_from_the_issuer_without_the_serial_says_good(ca, leaf):
    crl = _crl(ca)
    check_crl_authentic(crl, ca.cert, NOW)
    answer = evaluate_crl(crl, leaf)
    assert (answer.status, answer.source, answer.next_update) == (RevocationStatus.GOOD, "crl", NOW + DAY)


def test_a_listed_serial_is_revoked_with_its_time_and_reason(ca, leaf):
    when = NOW - 3 * HOUR
    crl = _crl(ca, [(leaf.serial_number, when, x509.ReasonFlags.key_compromise)])
    check_crl_authentic(crl, ca.cert, NOW)
    answer = evaluate_crl(crl, leaf)
    assert (answer.status, answer.revocation_time, answer.reason) == (RevocationStatus.REVOKED, when,
                                                                      "key_compromise")


def test_a_crl_whose_next_update_has_passed_is_stale(ca):
    crl = _crl(ca, this_update=NOW - 8 * DAY, next_update=NOW - HOUR)
    with pytest.raises(RevocationEvidenceError, match="stale"):
        check_crl_authentic(crl, ca.cert, NOW)


def test_a_crl_within_the_clock_skew_of_next_update_is_still_accepted(ca):
    check_crl_authentic(_crl(ca, next_update=NOW - datetime.timedelta(minutes=4)), ca.cert, NOW)


def test_a_crl_dated_in_the_future_is_refused(ca):
    with pytest.raises(RevocationEvidenceError, match="future"):
        check_crl_authentic(_crl(ca, this_update=NOW + HOUR, next_update=NOW + DAY), ca.cert, NOW)


def test_a_crl_from_another_named_ca_is_refused(ca):
    other = CertificateAuthority.new_root(name(o="Some Other CA"), NOW)
    with pytest.raises(RevocationEvidenceError, match="another CA"):
        check_crl_authentic(_crl(other), ca.cert, NOW)


def test_a_crl_from_an_impostor_with_the_same_name_is_refused(ca, impostor):
    with pytest.raises(RevocationEvidenceError, match="does not verify"):
        check_crl_authentic(_crl(impostor), ca.cert, NOW)


def _resign_crl_with_sha1(crl: x509.CertificateRevocationList, ca: CertificateAuthority):
    """The same CRL genuinely signed with SHA-1.

    cryptography 50 refuses ``CertificateRevocationListBuilder.sign(key, hashes.SHA1())`` ("not supported
    for signatures"), but old CAs still publish such CRLs, so the TBS is re-encoded with the
    sha1WithRSAEncryption OID and signed with the CA's RSA key by hand.
    """
    crl_asn1, _ = der_decoder.decode(crl.public_bytes(serialization.Encoding.DER),
                                     asn1Spec=rfc5280.CertificateList())
    for algorithm in (crl_asn1["tbsCertList"]["signature"], crl_asn1["signatureAlgorithm"]):
        algorithm["algorithm"] = univ.ObjectIdentifier(SHA1_WITH_RSA)
    tbs = der_encoder.encode(crl_asn1["tbsCertList"])
    crl_asn1["signature"] = univ.BitString.fromOctetString(ca.key.sign(tbs, padding.PKCS1v15(), hashes.SHA1()))
    return x509.load_der_x509_crl(der_encoder.encode(crl_asn1))


def test_a_crl_signed_with_sha1_is_refused_though_its_signature_verifies(ca):
    crl = _resign_crl_with_sha1(_crl(ca), ca)
    assert isinstance(crl.signature_hash_algorithm, hashes.SHA1)
    # Genuine: the signature verifies (by hand; cryptography's is_signature_valid says False for SHA-1).
    ca.cert.public_key().verify(crl.signature, crl.tbs_certlist_bytes, padding.PKCS1v15(), hashes.SHA1())
    with pytest.raises(RevocationEvidenceError, match="weak hash"):
        check_crl_authentic(crl, ca.cert, NOW)


def test_a_crl_with_an_unknown_signature_algorithm_is_evidence_error_not_a_crash(ca):
    crl_asn1, _ = der_decoder.decode(_crl(ca).public_bytes(serialization.Encoding.DER),
                                     asn1Spec=rfc5280.CertificateList())
    for algorithm in (crl_asn1["tbsCertList"]["signature"], crl_asn1["signatureAlgorithm"]):
        algorithm["algorithm"] = univ.ObjectIdentifier("1.2.3.4.5")
    crl = x509.load_der_x509_crl(der_encoder.encode(crl_asn1))
    with pytest.raises(RevocationEvidenceError, match="weak hash"):
        check_crl_authentic(crl, ca.cert, NOW)


# --- OCSP -----------------------------------------------------------------------------------------------

def _ocsp(cert, issuer_cert, signer_key, signer_cert, *, status=ocsp.OCSPCertStatus.GOOD, this_update=NOW - HOUR,
          next_update=NOW + HOUR, revoked_at=None, reason=None, cert_id_hash=hashes.SHA256(), include=True,
          encoding=ocsp.OCSPResponderEncoding.HASH) -> bytes:
    builder = ocsp.OCSPResponseBuilder().add_response(cert, issuer_cert, cert_id_hash, status, this_update,
                                                      next_update, revoked_at, reason)
    builder = builder.responder_id(encoding, signer_cert)
    if include:
        builder = builder.certificates([signer_cert])
    return builder.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_a_good_answer_from_the_delegated_responder_is_believed(ca, leaf, responder):
    answer = evaluate_ocsp(_ocsp(leaf, ca.cert, *responder), leaf, ca.cert, NOW)
    assert (answer.status, answer.source, answer.next_update) == (RevocationStatus.GOOD, "ocsp", NOW + HOUR)


def test_an_answer_signed_by_the_ca_itself_is_believed(ca, leaf):
    der = _ocsp(leaf, ca.cert, ca.key, ca.cert, include=False, encoding=ocsp.OCSPResponderEncoding.NAME)
    assert evaluate_ocsp(der, leaf, ca.cert, NOW).status is RevocationStatus.GOOD


def test_a_sha1_cert_id_is_matched(ca, leaf, responder):
    der = _ocsp(leaf, ca.cert, *responder, cert_id_hash=hashes.SHA1())
    assert evaluate_ocsp(der, leaf, ca.cert, NOW).status is RevocationStatus.GOOD


def test_a_revoked_answer_carries_time_and_reason(ca, leaf, responder):
    when = NOW - 2 * HOUR
    der = _ocsp(leaf, ca.cert, *responder, status=ocsp.OCSPCertStatus.REVOKED, revoked_at=when,
                reason=x509.ReasonFlags.affiliation_changed)
    answer = evaluate_ocsp(der, leaf, ca.cert, NOW)
    assert (answer.status, answer.revocation_time, answer.reason) == (RevocationStatus.REVOKED, when,
                                                                      "affiliation_changed")


def test_a_responder_certified_by_a_foreign_ca_is_refused(ca, leaf, impostor):
    """The impostor even copies the CA's name, so only the responder certificate's signature betrays it."""
    foreign_responder = _issue(impostor, name(cn="OCSP Responder (TEST)", o="行政院"), Profile.OCSP_RESPONDER)
    with pytest.raises(RevocationEvidenceError, match="not issued by the CA"):
        evaluate_ocsp(_ocsp(leaf, ca.cert, *foreign_responder), leaf, ca.cert, NOW)


def test_a_response_signed_by_a_key_other_than_the_named_responders_is_refused(ca, leaf, responder):
    """The real responder's certificate and id, but the signature made with someone else's key."""
    other_key = new_key("ec")
    der = _tamper_basic_response(_ocsp(leaf, ca.cert, *responder), lambda basic: None,
                                 sign=lambda tbs: other_key.sign(tbs, ec.ECDSA(hashes.SHA256())))
    with pytest.raises(RevocationEvidenceError, match="does not verify"):
        evaluate_ocsp(der, leaf, ca.cert, NOW)


def test_a_responder_without_the_ocsp_signing_usage_is_refused(ca, leaf):
    tls_client = _issue(ca, name(cn="some system"), Profile.TLS_CLIENT)
    with pytest.raises(RevocationEvidenceError, match="OCSPSigning"):
        evaluate_ocsp(_ocsp(leaf, ca.cert, *tls_client), leaf, ca.cert, NOW)


def test_a_response_without_the_responder_certificate_is_refused(ca, leaf, responder):
    with pytest.raises(RevocationEvidenceError, match="unknown responder"):
        evaluate_ocsp(_ocsp(leaf, ca.cert, *responder, include=False), leaf, ca.cert, NOW)


def test_a_stale_response_is_refused(ca, leaf, responder):
    der = _ocsp(leaf, ca.cert, *responder, this_update=NOW - 3 * HOUR, next_update=NOW - HOUR)
    with pytest.raises(RevocationEvidenceError, match="stale"):
        evaluate_ocsp(der, leaf, ca.cert, NOW)


def test_a_response_about_another_certificate_is_refused(ca, leaf, responder):
    other = _issue(ca, name(cn="林淑芬"), Profile.CITIZEN)[1]
    with pytest.raises(RevocationEvidenceError, match="does not cover"):
        evaluate_ocsp(_ocsp(other, ca.cert, *responder), leaf, ca.cert, NOW)


@pytest.mark.parametrize("status", [ocsp.OCSPResponseStatus.TRY_LATER, ocsp.OCSPResponseStatus.UNAUTHORIZED])
def test_an_unsuccessful_response_is_refused(leaf, ca, status):
    der = ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)
    with pytest.raises(RevocationEvidenceError, match=status.name):
        evaluate_ocsp(der, leaf, ca.cert, NOW)


def test_bytes_that_are_no_ocsp_response_are_refused(leaf, ca):
    with pytest.raises(RevocationEvidenceError, match="not an OCSP response"):
        evaluate_ocsp(b"<html>proxy error</html>", leaf, ca.cert, NOW)


def _tamper_basic_response(der: bytes, change, sign=None) -> bytes:
    """Edit the BasicOCSPResponse with ``change`` and, given ``sign(tbs) -> signature``, sign it again.

    cryptography's builder will not sign with a key that does not match the responder certificate, nor
    write an unknown algorithm, so such responses are made by editing a real one.
    """
    outer, _ = der_decoder.decode(der, asn1Spec=rfc2560.OCSPResponse())
    basic, _ = der_decoder.decode(outer["responseBytes"]["response"], asn1Spec=rfc2560.BasicOCSPResponse())
    change(basic)
    if sign is not None:
        basic["signature"] = univ.BitString.fromOctetString(sign(der_encoder.encode(basic["tbsResponseData"])))
    outer["responseBytes"]["response"] = univ.OctetString(der_encoder.encode(basic))
    return der_encoder.encode(outer)


def test_an_unknown_signature_algorithm_is_evidence_error_not_a_crash(ca, leaf, responder):
    """The OID is read before any signature check, so anyone on the wire can send it."""
    def change(basic):
        basic["signatureAlgorithm"]["algorithm"] = univ.ObjectIdentifier("1.2.3.4.5")
    der = _tamper_basic_response(_ocsp(leaf, ca.cert, *responder), change)
    with pytest.raises(RevocationEvidenceError, match="weak or unknown hash"):
        evaluate_ocsp(der, leaf, ca.cert, NOW)


def test_an_authentic_answer_with_an_unknown_cert_id_hash_is_evidence_error_not_a_crash(ca, leaf):
    def change(basic):
        basic["tbsResponseData"]["responses"][0]["certID"]["hashAlgorithm"]["algorithm"] = \
            univ.ObjectIdentifier("1.2.840.113549.2.5")  # MD5
    der = _ocsp(leaf, ca.cert, ca.key, ca.cert, include=False, encoding=ocsp.OCSPResponderEncoding.NAME)

    def sign(tbs):
        return ca.key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(RevocationEvidenceError, match="unsupported hash"):
        evaluate_ocsp(_tamper_basic_response(der, change, sign=sign), leaf, ca.cert, NOW)


# --- Replay and partial-CRL guards (added with the fixes for them) ----------------------------------------


def test_an_answer_without_next_update_is_believed_only_while_fresh(ca, leaf, responder):
    fresh = _ocsp(leaf, ca.cert, *responder, this_update=NOW - datetime.timedelta(minutes=5), next_update=None)
    assert evaluate_ocsp(fresh, leaf, ca.cert, NOW).status is RevocationStatus.GOOD
    replayed = _ocsp(leaf, ca.cert, *responder, this_update=NOW - DAY, next_update=None)
    with pytest.raises(RevocationEvidenceError, match="without nextUpdate"):
        evaluate_ocsp(replayed, leaf, ca.cert, NOW)


def test_a_partitioned_crl_is_not_taken_for_the_issuers_full_crl(ca):
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(NOW - HOUR).next_update(NOW + DAY)
               .add_extension(x509.IssuingDistributionPoint(
                   full_name=[x509.UniformResourceIdentifier("http://127.0.0.1/crl/part1.crl")], relative_name=None,
                   only_contains_user_certs=True, only_contains_ca_certs=False, only_some_reasons=None,
                   indirect_crl=False, only_contains_attribute_certs=False), critical=True))
    crl = builder.sign(ca.key, hashes.SHA256())
    with pytest.raises(RevocationEvidenceError, match="partitioned"):
        check_crl_authentic(crl, ca.cert, NOW)
