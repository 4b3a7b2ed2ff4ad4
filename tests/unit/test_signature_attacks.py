"""Every refusal class of the signature profile, each from a properly signed voucher mutated with lxml.

The whole check (``check_signed_voucher``) runs the schema before the signature, and the schema refuses
anything in the voucher's own namespace that is out of place; where an attack is stopped by the schema
first, the profile itself (``check_signature_shape``) is asserted directly as well, so both layers are
pinned. Static attack inputs live in tests/data/attacks/, named ``<expected code>__<what>.xml``, and are
looped over in one parametrized test at the end.
"""

from __future__ import annotations

import base64
import copy
import datetime
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.errors import Refusal
from gateway.trust.registry import GrantKind, RoleRegistry
from gateway.trust.roles import Role
from gateway.vouchers.check import TAIPEI, VerifiedVoucher, check_signed_voucher
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.parsing import parse_untrusted
from gateway.xmlsec.profile import check_signature_shape
from gateway.xmlsec.signing import sign_document
from gateway.xmlsec.verification import verify_enveloped
from simulators.pki.authority import CertificateAuthority, IssueOptions, Profile, name, new_key
from simulators.pki.layout import INTERMEDIATE_SUBJECT, load_authority
from tests.conftest import AGENCY_A, AGENCY_B, NOW

ATTACKS = Path(__file__).resolve().parent.parent / "data" / "attacks"

NS = "urn:taipei:treasury:voucher:1"
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
NSMAP = {"v": NS, "ds": DS, "xades": XADES}
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"

TODAY = NOW.astimezone(TAIPEI).date()
SIGNATURE_CODES = {
    "signature-missing", "signature-multiple", "signature-misplaced", "signature-reference-forbidden",
    "signature-transform-forbidden", "signature-algorithm-forbidden", "signature-key-info-invalid",
    "signature-id-duplicated", "signature-invalid",
}


def v(name: str) -> str:
    return f"{{{NS}}}{name}"


def ds(name: str) -> str:
    return f"{{{DS}}}{name}"


# --- helpers -----------------------------------------------------------------------------------------------------


def mutate(data: bytes, change: Callable[[etree._Element], object]) -> bytes:
    """Parse signed bytes (our own, so a plain parser), apply ``change`` to the root, serialise again."""
    root = etree.fromstring(data)
    change(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def signature_of(root: etree._Element) -> etree._Element:
    return root.xpath("//ds:Signature", namespaces=NSMAP)[0]


def signed_info(root: etree._Element) -> etree._Element:
    return signature_of(root).find(ds("SignedInfo"))


def document_reference(root: etree._Element) -> etree._Element:
    return signed_info(root).xpath("ds:Reference[@URI='']", namespaces=NSMAP)[0]


def properties_reference(root: etree._Element) -> etree._Element:
    return signed_info(root).xpath("ds:Reference[@Type='http://uri.etsi.org/01903#SignedProperties']",
                                   namespaces=NSMAP)[0]


def key_info(root: etree._Element) -> etree._Element:
    return signature_of(root).find(ds("KeyInfo"))


def signed_properties(root: etree._Element) -> etree._Element:
    return root.xpath("//xades:SignedProperties", namespaces=NSMAP)[0]


def first_line_field(root: etree._Element, field: str, line: int = 1) -> etree._Element:
    return root.xpath(f"v:Payees/v:Line[@number='{line}']/v:{field}", namespaces=NSMAP)[0]


def profile_refusal(data: bytes) -> Refusal:
    """The Refusal of the profile check alone, on the safely parsed document."""
    root = parse_untrusted(data)
    with pytest.raises(Refusal) as caught:
        check_signature_shape(root)
    return caught.value


def add_reference(root: etree._Element, uri: str) -> etree._Element:
    reference = etree.SubElement(signed_info(root), ds("Reference"), URI=uri)
    etree.SubElement(reference, ds("DigestMethod"), Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
    etree.SubElement(reference, ds("DigestValue")).text = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    return reference


def pem_body(cert: x509.Certificate) -> str:
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return "".join(line + "\n" for line in pem.splitlines() if not line.startswith("-----"))


def fresh_crls(pki, at: datetime.datetime):
    """A CRL fetcher whose CRLs are current at ``at`` (the PKI's own CRLs last only 7 days)."""
    answers = {}
    for which in ("root", "intermediate"):
        authority = load_authority(pki.dir, which)
        crl = authority.crl([], this_update=at - datetime.timedelta(minutes=1),
                            next_update=at + datetime.timedelta(days=7), number=1000)
        answers[authority.cert.subject] = crl.public_bytes(serialization.Encoding.DER)
    return lambda issuer, cert: answers[issuer.subject]


@pytest.fixture(scope="module")
def platform(pki):
    return pki.platform()


@pytest.fixture
def check(platform, banks):
    """check(data, role=Role.PREPARER, now=NOW, platform=...) -> VerifiedVoucher (or raises Refusal)."""

    def run(data: bytes, *, role: Role = Role.PREPARER, now: datetime.datetime = NOW,
            using=None) -> VerifiedVoucher:
        return check_signed_voucher(data, platform=using or platform, banks=banks, role=role, now=now)
    return run


@pytest.fixture
def refused(check):
    """refused(data, **check_args) -> the Refusal the whole check raises."""

    def run(data: bytes, **kwargs) -> Refusal:
        with pytest.raises(Refusal) as caught:
            check(data, **kwargs)
        return caught.value
    return run


@pytest.fixture
def voucher(factory):
    return factory.voucher(AGENCY_A, today=TODAY, lines=3)


@pytest.fixture
def signed(voucher, sign_voucher) -> bytes:
    return sign_voucher(voucher)


# --- the baseline ------------------------------------------------------------------------------------------------


def test_genuine_voucher_is_accepted(check, voucher, signed, pki) -> None:
    result = check(signed)
    _, cert = pki.person(AGENCY_A, "preparer")
    assert result.voucher == voucher
    assert result.signer.agency == AGENCY_A
    assert result.signer.role is Role.PREPARER
    assert result.signer.identity.serial_hex == format(cert.serial_number, "X")
    assert result.signing_time == NOW
    shape = check_signature_shape(parse_untrusted(signed))
    assert shape.certificate == cert
    assert shape.reference_count == 3


def test_reserialised_genuine_voucher_is_still_accepted(check, voucher, signed) -> None:
    # The mutations below all go through parse + tostring; that round trip alone must not break anything.
    assert check(mutate(signed, lambda root: None)).voucher == voucher


# --- missing, multiple, misplaced --------------------------------------------------------------------------------


def test_unsigned_voucher_is_refused(refused, voucher) -> None:
    assert refused(voucher_to_xml(voucher)).code == "signature-missing"


def test_signature_removed_after_signing_is_refused(refused, signed) -> None:
    data = mutate(signed, lambda root: root.remove(signature_of(root)))
    assert refused(data).code == "signature-missing"
    assert profile_refusal(data).code == "signature-missing"


def test_signature_in_another_namespace_does_not_count(refused, signed) -> None:
    def rename(root):
        for node in signature_of(root).iter():
            node.tag = "{http://www.w3.org/2000/09/xmldsig-evil#}" + etree.QName(node).localname
    refusal = refused(mutate(signed, rename))
    assert refusal.code in {"schema-invalid", "signature-missing"}


def test_second_signature_at_the_root(refused, signed) -> None:
    data = mutate(signed, lambda root: root.append(copy.deepcopy(signature_of(root))))
    assert profile_refusal(data).code == "signature-multiple"
    assert refused(data).code in {"schema-invalid", "signature-multiple"}


def test_second_signature_nested_in_payees(refused, signed) -> None:
    def nest(root):
        root.find(v("Payees")).append(copy.deepcopy(signature_of(root)))
    data = mutate(signed, nest)
    assert profile_refusal(data).code == "signature-multiple"
    assert refused(data).code in {"schema-invalid", "signature-multiple"}


def test_second_signature_hidden_inside_the_signature_reaches_the_profile(refused, signed) -> None:
    # The schema skips the contents of ds:*, so this one passes the schema and must be stopped by the profile.
    def hide(root):
        inner = copy.deepcopy(signature_of(root))
        for node in inner.iter():
            for attr in ("Id", "Target"):
                node.attrib.pop(attr, None)
        signature_of(root).find(ds("Object")).append(inner)
    data = mutate(signed, hide)
    assert refused(data).code == "signature-multiple"


def test_signature_moved_into_header(refused, signed) -> None:
    def move(root):
        root.find(v("Header")).append(signature_of(root))
    data = mutate(signed, move)
    refusal = profile_refusal(data)
    assert refusal.code == "signature-misplaced"
    assert refusal.problems[0].path == "/Voucher/Header/Signature"
    assert refused(data).code in {"schema-invalid", "signature-misplaced"}


def test_signature_moved_before_the_content(refused, signed) -> None:
    def move(root):
        root.insert(0, signature_of(root))
    data = mutate(signed, move)
    assert profile_refusal(data).code == "signature-misplaced"
    assert refused(data).code in {"schema-invalid", "signature-misplaced"}


def test_signature_wrapped_in_a_foreign_element_at_the_root(refused, signed) -> None:
    def wrap(root):
        signature = signature_of(root)
        holder = etree.SubElement(root, ds("Manifest"))
        holder.append(signature)
    data = mutate(signed, wrap)
    assert profile_refusal(data).code == "signature-misplaced"
    assert refused(data).code == "signature-misplaced"


# --- references and transforms -----------------------------------------------------------------------------------


def test_reference_to_an_element_of_the_voucher(refused, signed) -> None:
    def point_at_header(root):
        root.find(v("Header")).set("Id", "something")
        add_reference(root, "#something")
    data = mutate(signed, point_at_header)
    refusal = profile_refusal(data)
    assert refusal.code == "signature-reference-forbidden"
    assert "#something" in refusal.message
    assert refused(data).code in {"schema-invalid", "signature-reference-forbidden"}


def test_reference_to_a_part_of_the_signature_reaches_the_profile(refused, signed) -> None:
    def point_at_object(root):
        signature_of(root).find(ds("Object")).set("Id", "something")
        add_reference(root, "#something")
    assert refused(mutate(signed, point_at_object)).code == "signature-reference-forbidden"


@pytest.mark.parametrize("uri", ["#xpointer(/)", "#xpointer(id('x'))", "http://attacker.example.invalid/doc.xml",
                                 "file:///etc/passwd", "#"])
def test_document_reference_uri_other_than_empty(refused, signed, uri: str) -> None:
    data = mutate(signed, lambda root: document_reference(root).set("URI", uri))
    assert refused(data).code == "signature-reference-forbidden"


def test_document_reference_without_uri(refused, signed) -> None:
    def drop(root):
        del document_reference(root).attrib["URI"]
    assert refused(mutate(signed, drop)).code == "signature-reference-forbidden"


def test_document_referenced_twice(refused, signed) -> None:
    def twice(root):
        extra = copy.deepcopy(document_reference(root))
        extra.attrib.pop("Id", None)
        signed_info(root).append(extra)
    assert refused(mutate(signed, twice)).code == "signature-reference-forbidden"


def test_signed_properties_not_referenced(refused, signed) -> None:
    def drop(root):
        signed_info(root).remove(properties_reference(root))
    assert refused(mutate(signed, drop)).code == "signature-reference-forbidden"


def test_signed_properties_reference_without_its_type(refused, signed) -> None:
    def untype(root):
        del properties_reference(root).attrib["Type"]
    assert refused(mutate(signed, untype)).code == "signature-reference-forbidden"


def test_document_reference_with_an_odd_type(refused, signed) -> None:
    manifest_type = "http://www.w3.org/2000/09/xmldsig#Manifest"
    data = mutate(signed, lambda root: document_reference(root).set("Type", manifest_type))
    assert refused(data).code == "signature-reference-forbidden"


def test_xpath_transform_added(refused, signed) -> None:
    def add_xpath(root):
        transforms = document_reference(root).find(ds("Transforms"))
        transform = etree.SubElement(transforms, ds("Transform"),
                                     Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116")
        etree.SubElement(transform, ds("XPath")).text = "not(ancestor-or-self::v:Payees)"
    refusal = refused(mutate(signed, add_xpath))
    assert refusal.code == "signature-transform-forbidden"


@pytest.mark.parametrize("algorithm", [
    "http://www.w3.org/TR/1999/REC-xpath-19991116",
    "http://www.w3.org/2002/06/xmldsig-filter2",
    "http://www.w3.org/TR/1999/REC-xslt-19991116",
    "http://www.w3.org/2000/09/xmldsig#base64",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
])
def test_parameterless_foreign_transform(refused, signed, algorithm: str) -> None:
    def add(root):
        transforms = document_reference(root).find(ds("Transforms"))
        etree.SubElement(transforms, ds("Transform"), Algorithm=algorithm)
    assert refused(mutate(signed, add)).code == "signature-transform-forbidden"


def test_enveloped_transform_dropped(refused, signed) -> None:
    def drop(root):
        transforms = document_reference(root).find(ds("Transforms"))
        transforms.remove(transforms[0])
    assert refused(mutate(signed, drop)).code == "signature-transform-forbidden"


def test_transform_on_the_signed_properties_reference(refused, signed) -> None:
    def add(root):
        reference = properties_reference(root)
        transforms = etree.Element(ds("Transforms"))
        etree.SubElement(transforms, ds("Transform"), Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature")
        reference.insert(0, transforms)
    assert refused(mutate(signed, add)).code == "signature-transform-forbidden"


def test_foreign_element_in_transforms(refused, signed) -> None:
    def add(root):
        etree.SubElement(document_reference(root).find(ds("Transforms")), ds("XPath")).text = "1"
    assert refused(mutate(signed, add)).code == "signature-transform-forbidden"


# --- algorithms ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
    "http://www.w3.org/2000/09/xmldsig#hmac-sha1",
    "http://www.w3.org/2000/09/xmldsig#dsa-sha1",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-md5",
    "",
], ids=["rsa-sha1", "hmac-sha256", "hmac-sha1", "dsa-sha1", "rsa-md5", "empty"])
def test_weak_or_symmetric_signature_method(refused, signed, algorithm: str) -> None:
    data = mutate(signed, lambda root: signed_info(root).find(ds("SignatureMethod")).set("Algorithm", algorithm))
    refusal = refused(data)
    assert refusal.code == "signature-algorithm-forbidden"


def test_hmac_output_length_parameter(refused, signed) -> None:
    def truncate(root):
        method = signed_info(root).find(ds("SignatureMethod"))
        method.set("Algorithm", "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256")
        etree.SubElement(method, ds("HMACOutputLength")).text = "8"
    assert refused(mutate(signed, truncate)).code == "signature-algorithm-forbidden"


@pytest.mark.parametrize("algorithm", [
    "http://www.w3.org/2000/09/xmldsig#sha1",
    "http://www.w3.org/2001/04/xmldsig-more#md5",
    "http://www.w3.org/2001/04/xmldsig-more#sha224",
], ids=["sha1", "md5", "sha224"])
@pytest.mark.parametrize("which", ["document", "properties"])
def test_weak_digest_method(refused, signed, algorithm: str, which: str) -> None:
    pick = document_reference if which == "document" else properties_reference
    data = mutate(signed, lambda root: pick(root).find(ds("DigestMethod")).set("Algorithm", algorithm))
    assert refused(data).code == "signature-algorithm-forbidden"


def test_canonicalization_with_comments(refused, signed) -> None:
    data = mutate(signed, lambda root: signed_info(root).find(ds("CanonicalizationMethod")).set(
        "Algorithm", "http://www.w3.org/2006/12/xml-c14n11#WithComments"))
    assert refused(data).code == "signature-algorithm-forbidden"


# --- KeyInfo -----------------------------------------------------------------------------------------------------


def test_key_value_added(refused, signed, pki) -> None:
    def add(root):
        key_value = etree.SubElement(key_info(root), ds("KeyValue"))
        rsa_value = etree.SubElement(key_value, ds("RSAKeyValue"))
        etree.SubElement(rsa_value, ds("Modulus")).text = "AQAB"
        etree.SubElement(rsa_value, ds("Exponent")).text = "AQAB"
    assert refused(mutate(signed, add)).code == "signature-key-info-invalid"


def test_second_certificate_added(refused, signed, pki) -> None:
    _, other = pki.person(AGENCY_A, "head")

    def add(root):
        data = key_info(root).find(ds("X509Data"))
        etree.SubElement(data, ds("X509Certificate")).text = pem_body(other)
    assert refused(mutate(signed, add)).code == "signature-key-info-invalid"


def test_second_x509_data_added(refused, signed, pki) -> None:
    def add(root):
        key_info(root).append(copy.deepcopy(key_info(root).find(ds("X509Data"))))
    assert refused(mutate(signed, add)).code == "signature-key-info-invalid"


@pytest.mark.parametrize("child, attrs", [
    ("RetrievalMethod", {"URI": "http://attacker.example.invalid/cert.der",
                         "Type": "http://www.w3.org/2000/09/xmldsig#rawX509Certificate"}),
    ("KeyName", {}),
    ("MgmtData", {}),
])
def test_other_key_info_children(refused, signed, child: str, attrs: dict) -> None:
    def add(root):
        etree.SubElement(key_info(root), ds(child), **attrs).text = None if attrs else "mallory"
    assert refused(mutate(signed, add)).code == "signature-key-info-invalid"


@pytest.mark.parametrize("element", ["KeyInfo", "SignatureValue", "SignedInfo"])
def test_signature_child_duplicated(refused, signed, element: str) -> None:
    def duplicate(root):
        original = signature_of(root).find(ds(element))
        extra = copy.deepcopy(original)
        for node in extra.iter():
            node.attrib.pop("Id", None)
        original.addnext(extra)
    refusal = refused(mutate(signed, duplicate))
    assert refusal.code in {"signature-invalid", "signature-key-info-invalid"}


def test_key_info_removed(refused, signed) -> None:
    def drop(root):
        signature_of(root).remove(key_info(root))
    assert refused(mutate(signed, drop)).code == "signature-key-info-invalid"


def test_x509_data_with_issuer_serial_too(refused, signed) -> None:
    def add(root):
        issuer_serial = etree.SubElement(key_info(root).find(ds("X509Data")), ds("X509IssuerSerial"))
        etree.SubElement(issuer_serial, ds("X509IssuerName")).text = "CN=Mallory"
        etree.SubElement(issuer_serial, ds("X509SerialNumber")).text = "1"
    assert refused(mutate(signed, add)).code == "signature-key-info-invalid"


def test_unreadable_certificate(refused, signed) -> None:
    def garble(root):
        key_info(root).find(f"{ds('X509Data')}/{ds('X509Certificate')}").text = "bm90IGEgY2VydGlmaWNhdGU="
    assert refused(mutate(signed, garble)).code == "signature-key-info-invalid"


def test_a_certificate_whose_key_algorithm_is_damaged_is_refused_not_crashed(refused, signed) -> None:
    """Found by hypothesis (test_hostile_bytes): one flipped byte turns rsaEncryption (1.2.840.113549.1.1.1)
    into 1.1.840…, which cryptography only notices when the key is used — inside signxml, as an exception
    that is not a refusal. The profile now reads the key up front."""
    rsa_encryption = bytes.fromhex("06092a864886f70d010101")

    def damage(root):
        node = key_info(root).find(f"{ds('X509Data')}/{ds('X509Certificate')}")
        der = base64.b64decode("".join(node.itertext()))
        assert der.count(rsa_encryption) == 1
        node.text = base64.b64encode(der.replace(rsa_encryption, bytes.fromhex("060929864886f70d010101"))).decode()
    assert refused(mutate(signed, damage)).code == "signature-key-info-invalid"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.integers(min_value=0), min_size=1, max_size=3))
def test_any_damage_to_the_embedded_certificate_is_a_refusal(refused, signed, flips) -> None:
    """cryptography parses certificates lazily and raises several exception types (InvalidVersion,
    DuplicateExtension, TypeError for a wrongly typed name attribute, UnsupportedAlgorithm): every damaged
    certificate must end as a Refusal with a code, never as one of those."""
    def damage(root):
        node = key_info(root).find(f"{ds('X509Data')}/{ds('X509Certificate')}")
        der = bytearray(base64.b64decode("".join(node.itertext())))
        for bit in flips:
            der[(bit // 8) % len(der)] ^= 1 << (bit % 8)
        node.text = base64.b64encode(bytes(der)).decode()
    assert refused(mutate(signed, damage)).code


# --- duplicated ids ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attribute", ["Id", XML_ID, "ID", "id"])
def test_signed_properties_id_duplicated_inside_the_signature(refused, signed, attribute: str) -> None:
    def duplicate(root):
        signature_of(root).find(ds("SignatureValue")).set(attribute, signed_properties(root).get("Id"))
    refusal = refused(mutate(signed, duplicate))
    assert refusal.code == "signature-id-duplicated"


def test_key_info_id_duplicated_on_the_voucher_root(refused, signed) -> None:
    def duplicate(root):
        root.set("Id", key_info(root).get("Id"))
    data = mutate(signed, duplicate)
    assert profile_refusal(data).code == "signature-id-duplicated"
    assert refused(data).code in {"schema-invalid", "signature-id-duplicated"}


def test_key_info_id_duplicated_inside_the_content_is_stopped_by_the_schema(refused, signed) -> None:
    # A second element carrying the KeyInfo's Id, placed before it in document order, is what a reference
    # resolver might pick instead. The profile scans only the signature and the root (the voucher schema
    # admits no Id-like attribute below the root), so it is the schema, which runs first, that stops it.
    def duplicate(root):
        root.find(v("Payees")).set("Id", key_info(root).get("Id"))
    assert refused(mutate(signed, duplicate)).code == "schema-invalid"


def test_signature_id_duplicated_in_the_object(refused, signed) -> None:
    def duplicate(root):
        signature_of(root).find(ds("Object")).set("Id", signature_of(root).get("Id"))
    assert refused(mutate(signed, duplicate)).code == "signature-id-duplicated"


# --- re-signing with other keys and certificates -----------------------------------------------------------------


def test_resigned_with_a_genuine_but_unregistered_certificate(refused, voucher, pki) -> None:
    intermediate = load_authority(pki.dir, "intermediate")
    key = new_key("rsa")
    cert = intermediate.issue(name(cn="冒名者", serial="TEST99990000"), key.public_key(), Profile.CITIZEN,
                              IssueOptions(not_before=NOW - datetime.timedelta(days=1),
                                           not_after=NOW + datetime.timedelta(days=365), id_last_four="9999"))
    data = sign_document(voucher_to_xml(voucher), key, cert, NOW)
    refusal = refused(data)
    assert refusal.code == "signer-not-authorised"
    assert refusal.http_status == 403
    assert "not in the role registry" in refusal.message


def _self_signed(key, subject: x509.Name) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )


def test_resigned_with_a_self_signed_certificate(refused, voucher, pki) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, preparer = pki.person(AGENCY_A, "preparer")
    cert = _self_signed(key, preparer.subject)  # even the registered person's own name does not help
    assert refused(sign_document(voucher_to_xml(voucher), key, cert, NOW)).code == "certificate-untrusted"


def test_resigned_with_a_lookalike_ca(refused, voucher, pki) -> None:
    # A foreign CA that calls itself exactly what the real intermediate is called, issuing a cert whose
    # serial number equals the registered preparer's: name and serial match the registry, the key does not.
    _, preparer = pki.person(AGENCY_A, "preparer")
    lookalike = CertificateAuthority.new_root(name(**INTERMEDIATE_SUBJECT), NOW)
    key = new_key("rsa")
    cert = lookalike.issue(preparer.subject, key.public_key(), Profile.CITIZEN,
                           IssueOptions(not_before=NOW - datetime.timedelta(days=1),
                                        not_after=NOW + datetime.timedelta(days=365),
                                        serial=preparer.serial_number))
    assert cert.issuer == preparer.issuer and cert.serial_number == preparer.serial_number
    assert refused(sign_document(voucher_to_xml(voucher), key, cert, NOW)).code == "certificate-untrusted"


def test_certificate_swapped_for_another_registered_person(refused, signed, pki) -> None:
    _, reviewer = pki.person(AGENCY_A, "reviewer")

    def swap(root):
        key_info(root).find(f"{ds('X509Data')}/{ds('X509Certificate')}").text = pem_body(reviewer)
    data = mutate(signed, swap)
    assert refused(data).code == "signature-invalid"
    assert refused(data, role=Role.REVIEWER).code == "signature-invalid"


def test_certificate_swapped_for_another_agency(refused, signed, pki) -> None:
    _, other = pki.person(AGENCY_B, "preparer")

    def swap(root):
        key_info(root).find(f"{ds('X509Data')}/{ds('X509Certificate')}").text = pem_body(other)
    assert refused(mutate(signed, swap)).code == "signature-invalid"


# --- tampering after signing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, change", [
    ("Amount", lambda text: str(int(text) + 1)),
    ("AccountNumber", lambda text: text[:-1] + ("0" if text[-1] != "0" else "1")),
    ("PayeeName", lambda text: "王" + text[1:] if text[0] != "王" else "林" + text[1:]),
    ("BankCode", lambda text: "004" if text != "004" else "005"),
])
def test_line_value_changed_after_signing(refused, signed, field: str, change) -> None:
    def tamper(root):
        node = first_line_field(root, field, line=2)
        node.text = change(node.text)
    assert refused(mutate(signed, tamper)).code == "signature-invalid"


def test_amount_and_total_changed_together(refused, signed) -> None:
    # Keeping the voucher internally consistent does not help: the signature covers every byte of content.
    def tamper(root):
        amount = first_line_field(root, "Amount")
        amount.text = str(int(amount.text) + 1_000_000)
        total = root.find(f"{v('Control')}/{v('TotalAmount')}")
        total.text = str(int(total.text) + 1_000_000)
    assert refused(mutate(signed, tamper)).code == "signature-invalid"


def test_line_appended_after_signing(refused, signed) -> None:
    def add(root):
        payees = root.find(v("Payees"))
        extra = copy.deepcopy(payees[-1])
        extra.set("number", str(len(payees) + 1))
        payees.append(extra)
        count = root.find(f"{v('Control')}/{v('LineCount')}")
        count.text = str(len(payees))
    assert refused(mutate(signed, add)).code == "signature-invalid"


def test_signing_time_backdated_after_signing(refused, signed) -> None:
    def backdate(root):
        node = root.xpath("//xades:SigningTime", namespaces=NSMAP)[0]
        node.text = (NOW - datetime.timedelta(hours=1)).isoformat()
    assert refused(mutate(signed, backdate)).code == "signature-invalid"


def test_signature_value_altered(refused, signed) -> None:
    def flip(root):
        node = signature_of(root).find(ds("SignatureValue"))
        text = node.text.strip()
        node.text = ("B" if text[0] != "B" else "C") + text[1:]
    assert refused(mutate(signed, flip)).code == "signature-invalid"


def test_signed_info_digest_altered(refused, signed) -> None:
    def flip(root):
        node = document_reference(root).find(ds("DigestValue"))
        node.text = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert refused(mutate(signed, flip)).code == "signature-invalid"


# --- comment injection -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("comment", ["", "999", " 0000 "])
def test_comment_split_account_number_yields_the_signed_value(check, signed, voucher, comment: str) -> None:
    original = voucher.lines[0].account_number

    def inject(root):
        node = first_line_field(root, "AccountNumber")
        node.text = original[:3]
        marker = etree.Comment(comment)
        marker.tail = original[3:]
        node.append(marker)
    data = mutate(signed, inject)
    assert f"{original[:3]}<!--{comment}-->{original[3:]}".encode() in data

    # What a naive reader of the received tree would see: only the text before the comment.
    received = first_line_field(parse_untrusted(data), "AccountNumber")
    assert received.text == original[:3]

    # c14n excludes comments, so the signature still verifies ...
    result = check(data)
    # ... and the value handed on is the full account number that was signed.
    assert result.voucher.lines[0].account_number == original
    assert result.voucher == voucher


def test_verified_signature_tree_has_no_comments(signed) -> None:
    def inject(root):
        node = first_line_field(root, "Amount")
        text = node.text
        node.text = text[:1]
        marker = etree.Comment("1")
        marker.tail = text[1:]
        node.append(marker)
    data = mutate(signed, inject)
    verified = verify_enveloped(parse_untrusted(data), now=NOW)
    assert not list(verified.signed_root.iter(etree.Comment))
    assert not verified.signed_root.xpath("//ds:Signature", namespaces=NSMAP)
    amount = verified.signed_root.xpath("v:Payees/v:Line[1]/v:Amount", namespaces=NSMAP)[0]
    assert len(amount) == 0 and amount.text == first_line_field(etree.fromstring(signed), "Amount").text


# --- wrapping ----------------------------------------------------------------------------------------------------


def _evil_copy(root: etree._Element) -> etree._Element:
    """An unsigned copy of the voucher content with line 1 paying somebody else."""
    evil = copy.deepcopy(root)
    for signature in evil.xpath("ds:Signature", namespaces=NSMAP):
        evil.remove(signature)
    first_line_field(evil, "AccountNumber").text = "999999999999"
    first_line_field(evil, "PayeeName").text = "冒領人"
    return evil


def _wrapper_root(root):
    envelope = etree.Element(v("Envelope"), nsmap={None: NS})
    envelope.append(copy.deepcopy(root))
    return envelope


def _evil_root_with_original_in_object(root):
    evil = _evil_copy(root)
    signature = copy.deepcopy(signature_of(root))
    original = copy.deepcopy(root)
    original.remove(original.xpath("ds:Signature", namespaces=NSMAP)[0])
    signature.find(ds("Object")).append(original)
    evil.append(signature)
    return evil


def _evil_root_with_original_in_key_info(root):
    evil = _evil_copy(root)
    signature = copy.deepcopy(signature_of(root))
    original = copy.deepcopy(root)
    original.remove(original.xpath("ds:Signature", namespaces=NSMAP)[0])
    signature.find(ds("KeyInfo")).append(original)
    evil.append(signature)
    return evil


def _second_voucher_in_payees(root):
    root.find(v("Payees")).append(_evil_copy(root))
    return root


def _second_voucher_after_the_signature(root):
    root.append(_evil_copy(root))
    return root


def _second_voucher_in_unsigned_properties(root):
    qualifying = root.xpath("//xades:QualifyingProperties", namespaces=NSMAP)[0]
    etree.SubElement(qualifying, f"{{{XADES}}}UnsignedProperties").append(_evil_copy(root))
    return root


def _second_voucher_in_the_object(root):
    signature_of(root).find(ds("Object")).append(_evil_copy(root))
    return root


def _second_line_set_in_the_object(root):
    payees = copy.deepcopy(_evil_copy(root).find(v("Payees")))
    etree.SubElement(signature_of(root), ds("Object")).append(payees)
    return root


@pytest.mark.parametrize("wrap", [
    _wrapper_root, _evil_root_with_original_in_object, _evil_root_with_original_in_key_info,
    _second_voucher_in_payees, _second_voucher_after_the_signature, _second_voucher_in_unsigned_properties,
    _second_voucher_in_the_object, _second_line_set_in_the_object,
], ids=lambda f: f.__name__.strip("_"))
def test_wrapping_attack_is_refused(check, signed, wrap) -> None:
    root = etree.fromstring(signed)
    data = etree.tostring(wrap(root), xml_declaration=True, encoding="UTF-8")
    assert b"999999999999" in data or wrap is _wrapper_root
    with pytest.raises(Refusal) as caught:
        check(data)
    assert caught.value.code == "schema-invalid" or caught.value.code in SIGNATURE_CODES


# --- the role registry -------------------------------------------------------------------------------------------


def test_other_agencys_preparer_cannot_sign_for_agency_a(refused, voucher, sign_voucher) -> None:
    refusal = refused(sign_voucher(voucher, agency=AGENCY_B, role="preparer"))
    assert refusal.code == "signer-not-authorised"
    assert AGENCY_A in refusal.message


def test_reviewer_is_not_a_preparer(check, refused, voucher, sign_voucher) -> None:
    data = sign_voucher(voucher, role="reviewer")
    assert refused(data, role=Role.PREPARER).code == "signer-not-authorised"
    assert check(data, role=Role.REVIEWER).signer.role is Role.REVIEWER  # the same bytes, the right role


def test_deputy_reviewer_in_their_window(check, refused, voucher, sign_voucher, pki) -> None:
    data = sign_voucher(voucher, role="deputy")
    result = check(data, role=Role.REVIEWER)
    assert result.voucher == voucher
    assert result.signer.grant.kind is GrantKind.DEPUTY
    reviewer_grants = [g for g in pki.platform().registry.grants
                       if g.agency == AGENCY_A and g.role is Role.REVIEWER and g.kind is GrantKind.PRINCIPAL]
    assert result.signer.grant.acting_for == reviewer_grants[0].person
    assert refused(data, role=Role.PREPARER).code == "signer-not-authorised"


def test_deputy_after_their_window(check, refused, factory, pki) -> None:
    later = NOW + datetime.timedelta(days=40)
    voucher = factory.voucher(AGENCY_A, today=later.astimezone(TAIPEI).date(), lines=2)
    platform = pki.platform(crl_fetcher=fresh_crls(pki, later))

    key, cert = pki.person(AGENCY_A, "deputy")
    by_deputy = sign_document(voucher_to_xml(voucher), key, cert, later)
    refusal = refused(by_deputy, role=Role.REVIEWER, now=later, using=platform)
    assert refusal.code == "signer-not-authorised"
    assert "not in force" in refusal.message

    # The same day, the principal reviewer is accepted: the refusal is the deputy's window, not the date.
    key, cert = pki.person(AGENCY_A, "reviewer")
    by_reviewer = sign_document(voucher_to_xml(voucher), key, cert, later)
    assert check(by_reviewer, role=Role.REVIEWER, now=later, using=platform).voucher == voucher


def _registry_with_deputy_ending(pki, agency: str, valid_to: datetime.datetime) -> str:
    data = tomllib.loads(Path(pki.manifest["registry"]).read_text("utf-8"))
    changed = 0
    for grant in data["grant"]:
        if grant["agency"] == agency and grant["kind"] == "deputy":
            grant["valid_from"] = valid_to - datetime.timedelta(days=30)
            grant["valid_to"] = valid_to
            changed += 1
    assert changed == 1
    return tomli_w.dumps(data)


def test_deputy_window_edited_to_end_yesterday(check, refused, voucher, sign_voucher, pki) -> None:
    text = _registry_with_deputy_ending(pki, AGENCY_A, NOW - datetime.timedelta(days=1))
    assert "deputy" in text
    platform = pki.platform(registry_text=text)
    data = sign_voucher(voucher, role="deputy")
    assert refused(data, role=Role.REVIEWER, using=platform).code == "signer-not-authorised"
    assert check(data, role=Role.REVIEWER).signer.grant.kind is GrantKind.DEPUTY  # the shipped registry still has it


def test_registry_reload_takes_effect(check, refused, voucher, sign_voucher, pki) -> None:
    platform = pki.platform()
    data = sign_voucher(voucher, role="deputy")
    assert check(data, role=Role.REVIEWER, using=platform).signer.grant.kind is GrantKind.DEPUTY
    platform.replace_registry(RoleRegistry.from_toml(
        _registry_with_deputy_ending(pki, AGENCY_A, NOW - datetime.timedelta(days=1))))
    assert refused(data, role=Role.REVIEWER, using=platform).code == "signer-not-authorised"


# --- signing time ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [datetime.timedelta(hours=1), datetime.timedelta(minutes=6),
                                    -datetime.timedelta(days=60), -datetime.timedelta(days=31)],
                         ids=["1h-ahead", "6min-ahead", "60d-old", "31d-old"])
def test_signing_time_out_of_bounds(refused, voucher, sign_voucher, offset: datetime.timedelta) -> None:
    refusal = refused(sign_voucher(voucher, at=NOW + offset))
    assert refusal.code == "signature-time-invalid"


def test_signing_time_within_clock_skew_is_accepted(check, voucher, sign_voucher) -> None:
    at = NOW + datetime.timedelta(minutes=4)
    result = check(sign_voucher(voucher, at=at))
    assert result.signing_time == at


# --- static attack files -----------------------------------------------------------------------------------------


ATTACK_FILES = sorted(ATTACKS.glob("*.xml"))


def test_attack_files_exist() -> None:
    assert len(ATTACK_FILES) >= 10
    for path in ATTACK_FILES:
        assert "__" in path.name, f"{path.name}: name it <expected code>__<what>.xml"


@pytest.mark.parametrize("path", ATTACK_FILES, ids=lambda p: p.stem)
def test_static_attack_is_refused(platform, banks, path: Path) -> None:
    expected = path.name.split("__", 1)[0]
    data = path.read_bytes()
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["accepted"] = check_signed_voucher(data, platform=platform, banks=banks, role=Role.PREPARER,
                                                       now=NOW)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(15)
    assert not worker.is_alive(), f"{path.name}: the check did not finish (hung parser?)"
    assert "accepted" not in outcome, f"{path.name} was accepted"
    refusal = outcome["error"]
    assert isinstance(refusal, Refusal), f"{path.name}: {refusal!r}"
    assert refusal.code == expected, f"{path.name}: {refusal}"
    assert "root:" not in str(refusal)
