"""Certificate policy: chain, validity, key usage per purpose, the citizen-certificate profile."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509

from gateway.errors import Refusal
from gateway.trust.certificates import CertificateIdentity, Purpose, TrustStore, citizen_id_last_four
from simulators.pki.authority import CertificateAuthority, IssueOptions, Profile, name, new_key
from simulators.pki.layout import load_authority

from ..conftest import NOW

DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def trust(pki) -> TrustStore:
    return TrustStore([pki.root], [pki.intermediate])


@pytest.fixture(scope="module")
def moica(pki) -> CertificateAuthority:
    return load_authority(pki.dir, "intermediate")


def _issue(ca, profile=Profile.CITIZEN, *, not_before=NOW - DAY, not_after=NOW + 365 * DAY, **options):
    key = new_key("ec")
    return ca.issue(name(cn="測試人員"), key.public_key(), profile,
                    IssueOptions(not_before=not_before, not_after=not_after, **options))


def test_a_citizen_certificate_chains_to_the_root(trust, pki):
    _, cert = pki.person("379000001A", "preparer")
    validated = trust.validate(cert, Purpose.DOCUMENT_SIGNING, NOW)
    assert [c.subject for c in validated.chain] == [cert.subject, pki.intermediate.subject, pki.root.subject]
    assert validated.identity.issuer == "OU=內政部憑證管理中心,O=行政院,C=TW"


def test_the_moica_profile_carries_the_last_four_id_digits(pki, moica):
    _, cert = pki.person("379000001A", "head")
    four = citizen_id_last_four(cert)
    assert four is not None and len(four) == 4 and four.isdigit()
    assert CertificateIdentity.of(cert).id_last_four == four
    assert citizen_id_last_four(_issue(moica, id_last_four="0421")) == "0421"
    assert citizen_id_last_four(_issue(moica)) is None


def test_expired_and_not_yet_valid_are_told_apart(trust, moica):
    expired = _issue(moica, not_before=NOW - 30 * DAY, not_after=NOW - DAY)
    future = _issue(moica, not_before=NOW + DAY, not_after=NOW + 30 * DAY)
    with pytest.raises(Refusal) as exc:
        trust.validate(expired, Purpose.DOCUMENT_SIGNING, NOW)
    assert exc.value.code == "certificate-expired"
    with pytest.raises(Refusal) as exc:
        trust.validate(future, Purpose.DOCUMENT_SIGNING, NOW)
    assert exc.value.code == "certificate-not-yet-valid"


def test_a_certificate_from_another_ca_is_untrusted(trust):
    foreign_root = CertificateAuthority.new_root(name(o="Foreign Root CA"), NOW, key=new_key("ec"))
    with pytest.raises(Refusal) as exc:
        trust.validate(_issue(foreign_root), Purpose.DOCUMENT_SIGNING, NOW)
    assert exc.value.code == "certificate-untrusted"


def test_a_look_alike_intermediate_with_another_key_is_untrusted(trust):
    """Same names as MOICA, different key: path building must not be fooled by names."""
    fake_root = CertificateAuthority.new_root(name(o="Government Root Certification Authority (TEST)"), NOW,
                                              key=new_key("ec"))
    fake_key = new_key("ec")
    fake_moica = CertificateAuthority(fake_key, fake_root.issue(name(o="行政院", ou="內政部憑證管理中心"),
                                                                fake_key.public_key(), Profile.INTERMEDIATE,
                                                                IssueOptions(NOW - DAY, NOW + 365 * DAY)))
    with pytest.raises(Refusal) as exc:
        trust.validate(_issue(fake_moica), Purpose.DOCUMENT_SIGNING, NOW)
    assert exc.value.code == "certificate-untrusted"


def test_key_usage_decides_the_purpose(trust, moica, pki):
    encipher_only = x509.KeyUsage(False, False, True, False, False, False, False, False, False)
    with pytest.raises(Refusal) as exc:
        trust.validate(_issue(moica, key_usage_override=encipher_only), Purpose.DOCUMENT_SIGNING, NOW)
    assert exc.value.code == "certificate-key-usage"
    # A person's signing card is no TLS client certificate, and a TLS client certificate is one.
    _, citizen = pki.person("379000001A", "preparer")
    with pytest.raises(Refusal) as exc:
        trust.validate(citizen, Purpose.TLS_CLIENT, NOW)
    assert exc.value.code == "certificate-key-usage"
    tls = x509.load_pem_x509_certificate(open(pki.manifest["agencies"]["379000001A"]["tls"]["cert"], "rb").read())
    assert trust.validate(tls, Purpose.TLS_CLIENT, NOW).identity.subject.endswith("C=TW")


def test_the_ocsp_responder_certificate_cannot_sign_documents(trust, pki):
    responder = x509.load_pem_x509_certificate(open(pki.manifest["ocsp"]["cert"], "rb").read())
    with pytest.raises(Refusal) as exc:
        trust.validate(responder, Purpose.DOCUMENT_SIGNING, NOW)
    assert exc.value.code == "certificate-key-usage"


def test_the_chain_cache_still_judges_validity_at_each_call(trust, moica):
    short = _issue(moica, not_before=NOW - DAY, not_after=NOW + DAY)
    assert trust.validate(short, Purpose.DOCUMENT_SIGNING, NOW)
    with pytest.raises(Refusal) as exc:
        trust.validate(short, Purpose.DOCUMENT_SIGNING, NOW + 2 * DAY)
    assert exc.value.code == "certificate-expired"
