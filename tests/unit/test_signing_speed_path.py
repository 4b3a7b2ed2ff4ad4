"""Signing in place (:func:`gateway.xmlsec.signing.sign_owned_element`) gives the very signature signing a copy gives.

signxml names the parts of a signature with random tokens (``SignXMLSignature…`` Ids), and ECDSA signatures are
randomised, so the comparisons fix signxml's tokens and sign with an RSA key (PKCS #1 v1.5 is deterministic):
then both paths must give the same bytes. Performance is measured, not tested here.
"""

from __future__ import annotations

import datetime
import itertools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.processor import XMLProcessor
from signxml.xades import XAdESSignatureConfiguration, XAdESSigner, XAdESVerifier

from gateway.bank.batching import plan_transfers
from gateway.bank.envelope import envelope_element, open_sealed, seal
from gateway.bank.pain001 import build_pain001
from gateway.xmlsec.parsing import hardened_parser, parse_untrusted
from gateway.xmlsec.signing import sign_document, sign_element, sign_owned_element
from gateway.xmlsec.verification import verify_enveloped
from tests.conftest import NOW
from tests.unit.payment_samples import payments

DS = "http://www.w3.org/2000/09/xmldsig#"
PAIN001 = "pain.001.001.09"
HEADER = dict(message_type=PAIN001, sender="TPE-TREASURY-GATEWAY", receiver="FUBON-012-2102", created_at=NOW)

DOCUMENTS = {
    "plain": b'<r xmlns="urn:x"><a>1</a><b x="y">t&amp;&lt;</b></r>',
    "comments, PIs and siblings": (b'<!-- before --><?pi x?><r xmlns="urn:x"><!-- c --><a>1</a><?p q?>\n  <b/></r>'
                                   b'<!-- after -->'),
    "CDATA": b'<r xmlns="urn:x"><a><![CDATA[<&>]]></a></r>',
    "ds prefix declared": f'<r xmlns="urn:x" xmlns:ds="{DS}"><a/></r>'.encode(),
    "ds namespace under another prefix": f'<r xmlns="urn:x" xmlns:foo="{DS}"><foo:a/></r>'.encode(),
    "ds prefix bound elsewhere": b'<r xmlns="urn:x" xmlns:ds="urn:not-ds" xmlns:xades="urn:nope"><ds:a/></r>',
    "unused namespaces, xml attributes": (b'<r xmlns="urn:x" xmlns:u="urn:unused" xml:lang="zh" xml:space="preserve">'
                                          b'<a xmlns:v="urn:v"> x </a></r>'),
    "root with an Id": b'<r xmlns="urn:x" Id="doc1"><a/></r>',
    "no namespace, CRLF, tab": '<r><a>中文</a>\r\n<b a="\t"/></r>'.encode(),
}


@pytest.fixture
def fixed_tokens(monkeypatch):
    """Make signxml's Id tokens a counter; call the fixture's value to restart it before each signature."""
    counter = {"next": itertools.count()}
    monkeypatch.setattr(XAdESSigner, "_get_token", lambda self, length=4: f"{next(counter['next']):0{2 * length}X}")

    def restart() -> None:
        counter["next"] = itertools.count()
    return restart


@pytest.fixture(scope="module")
def rsa_pair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "in-place signing test")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return key, cert


def transfer_document(count: int) -> tuple[str, etree._Element]:
    [plan] = plan_transfers(payments(count), max_per_message=5000)
    return plan.message_id, build_pain001(plan, created_at=NOW)


def serialised(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def verifies_with_plain_signxml(data: bytes, cert: x509.Certificate) -> bool:
    XAdESVerifier().verify(data, x509_cert=cert, expect_config=XAdESSignatureConfiguration(verification_time=NOW))
    return True


@pytest.mark.parametrize("name", DOCUMENTS)
def test_in_place_gives_the_bytes_of_the_copy(name, rsa_pair, fixed_tokens) -> None:
    key, cert = rsa_pair
    fixed_tokens()
    copied = serialised(sign_element(etree.fromstring(DOCUMENTS[name], hardened_parser()), key, cert, NOW))
    fixed_tokens()
    root = etree.fromstring(DOCUMENTS[name], hardened_parser())
    signed = sign_owned_element(root, key, cert, NOW)
    assert signed is root
    assert serialised(signed) == copied
    fixed_tokens()
    assert sign_document(DOCUMENTS[name], key, cert, NOW) == copied  # bytes are parsed, then signed in place
    assert verifies_with_plain_signxml(copied, cert)


def test_a_sealed_bank_message_is_the_same_as_before(rsa_pair, fixed_tokens) -> None:
    key, cert = rsa_pair
    message_id, document = transfer_document(40)
    fixed_tokens()
    before = serialised(sign_element(envelope_element(document, message_id=message_id, **HEADER), key, cert, NOW))
    fixed_tokens()
    assert seal(document, message_id=message_id, key=key, cert=cert, **HEADER) == before


def test_a_sealed_bank_message_verifies_and_opens(gateway_pair) -> None:
    key, cert = gateway_pair
    message_id, document = transfer_document(40)
    data = seal(document, message_id=message_id, key=key, cert=cert, **HEADER)
    verified = verify_enveloped(parse_untrusted(data), now=NOW)
    assert verified.signing_time == NOW and verified.signer_certificate == cert
    assert verifies_with_plain_signxml(data, cert)
    assert open_sealed(data, signer_cert=cert, allowed_types=frozenset({PAIN001}), sender=HEADER["sender"],
                       receiver=HEADER["receiver"], now=NOW).message_id == message_id


def test_in_place_signing_copies_nothing_and_canonicalises_the_document_once(gateway_pair, monkeypatch) -> None:
    key, cert = gateway_pair
    message_id, document = transfer_document(40)
    root = envelope_element(document, message_id=message_id, **HEADER)
    calls = {"parse": 0, "serialise": 0, "c14n of the document": 0}

    def counting(name, original):
        def wrapper(self, node, *args, **kwargs):
            calls[name] += 1
            return original(self, node, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(XMLProcessor, "_fromstring", counting("parse", XMLProcessor._fromstring))
    monkeypatch.setattr(XMLProcessor, "_tostring", counting("serialise", XMLProcessor._tostring))
    original_c14n = XAdESSigner._c14n

    def c14n(self, nodes, *args, **kwargs):
        calls["c14n of the document"] += nodes is root
        return original_c14n(self, nodes, *args, **kwargs)
    monkeypatch.setattr(XAdESSigner, "_c14n", c14n)

    signed = sign_owned_element(root, key, cert, NOW)
    assert calls == {"parse": 0, "serialise": 0, "c14n of the document": 1}
    assert signed is root and signed[-1].tag == f"{{{DS}}}Signature"
    assert verify_enveloped(parse_untrusted(serialised(signed)), now=NOW).signer_certificate == cert


def test_sign_element_still_signs_a_copy_and_leaves_the_callers_tree(gateway_pair) -> None:
    key, cert = gateway_pair
    root = etree.fromstring(DOCUMENTS["plain"])
    before = etree.tostring(root)
    signed = sign_element(root, key, cert, NOW)
    assert signed is not root and etree.tostring(root) == before
    assert verify_enveloped(parse_untrusted(serialised(signed)), now=NOW).signer_certificate == cert


def test_a_signature_placeholder_is_filled_the_way_signxml_fills_it(rsa_pair, fixed_tokens) -> None:
    key, cert = rsa_pair
    data = f'<r xmlns="urn:x"><a/><ds:Signature xmlns:ds="{DS}" Id="placeholder"/><b/></r>'.encode()
    fixed_tokens()
    copied = serialised(sign_element(etree.fromstring(data), key, cert, NOW))
    fixed_tokens()
    signed = sign_owned_element(etree.fromstring(data), key, cert, NOW)
    assert serialised(signed) == copied
    assert [etree.QName(child).localname for child in signed] == ["a", "Signature", "b"]
    assert verifies_with_plain_signxml(copied, cert)


def test_only_a_document_root_is_signed_in_place(gateway_pair) -> None:
    key, cert = gateway_pair
    root = etree.fromstring(b'<r xmlns="urn:x"><a><b/></a></r>')
    with pytest.raises(ValueError, match="root element"):
        sign_owned_element(root[0], key, cert, NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_owned_element(root, key, cert, NOW.replace(tzinfo=None))
    assert etree.tostring(root) == b'<r xmlns="urn:x"><a><b/></a></r>'
