"""XAdES binds the signer's certificate into the signed properties (SigningCertificateV2). A signature whose
value verifies with the KeyInfo certificate but whose signed properties name another certificate is refused:
this guards the gateway's shortcut in ``_OwnTreeVerifier._verify_cert_digests``."""

from __future__ import annotations

import datetime

import pytest
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.xades import XAdESSigner

from gateway.errors import Refusal
from gateway.trust.roles import Role
from gateway.vouchers.check import check_signed_voucher
from gateway.vouchers.xml_mapping import voucher_element
from gateway.xmlsec.signing import sign_document

from ..conftest import AGENCY_A, NOW


class _SignerNamingAnotherCertificate(XAdESSigner):
    """Signs with one key/certificate but writes another certificate's digest into SigningCertificateV2."""

    def __init__(self, named, **kwargs):
        super().__init__(**kwargs)
        self._named = named

    def add_signing_certificate(self, signed_signature_properties, sig_root, signing_settings):
        signing_settings.cert_chain = [self._named]
        super().add_signing_certificate(signed_signature_properties, sig_root, signing_settings)


def _sign(voucher, key, cert, named) -> bytes:
    signer = _SignerNamingAnotherCertificate(named, signature_algorithm=SignatureMethod.RSA_SHA256,
                                             digest_algorithm=DigestAlgorithm.SHA256,
                                             c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1)
    signed = signer.sign(voucher_element(voucher), key=key, cert=[cert], always_add_key_value=False)
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def test_signed_properties_naming_another_certificate_are_refused(pki, factory, banks):
    key, cert = pki.person(AGENCY_A, "preparer")
    _, other = pki.person(AGENCY_A, "reviewer")
    voucher = factory.voucher(AGENCY_A, today=NOW.date())
    platform = pki.platform()
    honest = _sign(voucher, key, cert, named=cert)
    # signxml's own signer stamps the wall clock as SigningTime, so check at the wall clock too (NOW is the
    # session's start, which a long suite leaves minutes behind)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert check_signed_voucher(honest, platform=platform, banks=banks, role=Role.PREPARER, now=now)
    lying = _sign(voucher, key, cert, named=other)
    with pytest.raises(Refusal) as exc:
        check_signed_voucher(lying, platform=platform, banks=banks, role=Role.PREPARER, now=now)
    assert exc.value.code == "signature-invalid"


def test_the_production_signer_names_its_own_certificate(pki, factory, banks):
    key, cert = pki.person(AGENCY_A, "preparer")
    signed = sign_document(voucher_element(factory.voucher(AGENCY_A, today=NOW.date())), key, cert, NOW)
    result = check_signed_voucher(signed, platform=pki.platform(), banks=banks, role=Role.PREPARER, now=NOW)
    assert result.signer.identity.serial_hex == format(cert.serial_number, "X")
