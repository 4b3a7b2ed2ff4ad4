"""The gateway's receipt: built from a verified voucher, signed by the gateway, verified the way an agency does.

Every receipt here is built from a voucher that passed the real check against the session's test PKI, and
signed with the PKI's gateway key.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re

import pytest
from lxml import etree

from gateway.errors import Refusal
from gateway.intake.receipts import (
    NS,
    Receipt,
    build_receipt,
    new_receipt_id,
    read_receipt,
    receipt_element,
    receipt_xml,
    sign_receipt,
    verify_receipt,
)
from gateway.trust.roles import Role
from gateway.vouchers.check import TAIPEI, check_signed_voucher
from gateway.vouchers.model import VoucherRef
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.parsing import parse_untrusted
from gateway.xmlsec.signing import sign_document
from gateway.xmlsec.validation import schema_problems
from tests.conftest import AGENCY_A, NOW

RECEIVED_AT = NOW + datetime.timedelta(seconds=1, microseconds=250_000)
SIGNED_AT = NOW + datetime.timedelta(seconds=2)


@pytest.fixture(scope="module")
def platform(pki):
    return pki.platform()


@pytest.fixture
def voucher(factory):
    return factory.voucher(AGENCY_A, today=NOW.astimezone(TAIPEI).date(), lines=2)


@pytest.fixture
def verify_voucher(platform, banks):
    def verify(data: bytes):
        return check_signed_voucher(data, platform=platform, banks=banks, role=Role.PREPARER, now=NOW)
    return verify


def receipt_for(verified) -> Receipt:
    receipt_id = new_receipt_id(verified.voucher.voucher_id, verified.voucher.revision, verified.received_sha256)
    return build_receipt(verified, receipt_id=receipt_id, received_at=RECEIVED_AT)


@pytest.fixture
def receipt(voucher, sign_voucher, verify_voucher) -> Receipt:
    return receipt_for(verify_voucher(sign_voucher(voucher)))


@pytest.fixture
def correction_receipt(voucher, factory, sign_voucher, verify_voucher) -> Receipt:
    return receipt_for(verify_voucher(sign_voucher(factory.correction(voucher))))


def schema_errors(data: bytes) -> list:
    return schema_problems(parse_untrusted(data), "receipt.xsd")


def refusal_code(data: bytes, cert, now=SIGNED_AT) -> str:
    with pytest.raises(Refusal) as caught:
        verify_receipt(data, gateway_cert=cert, now=now)
    return caught.value.code


# --- building ----------------------------------------------------------------------------------------------------

def test_receipt_takes_its_values_from_the_verified_voucher(pki, voucher, sign_voucher, verify_voucher) -> None:
    data = sign_voucher(voucher)
    receipt = receipt_for(verify_voucher(data))
    _, preparer_cert = pki.person(AGENCY_A, "preparer")
    assert receipt.voucher_id == voucher.voucher_id
    assert receipt.revision == 1 and receipt.agency == AGENCY_A and receipt.corrects is None
    assert receipt.received_sha256 == hashlib.sha256(data).hexdigest()
    assert receipt.signer_serial == format(preparer_cert.serial_number, "X")
    assert receipt.signer_issuer == preparer_cert.issuer.rfc4514_string()
    assert receipt.signer_role is Role.PREPARER
    assert receipt.status == "received"


def test_correction_receipt_names_the_corrected_revision(voucher, correction_receipt) -> None:
    assert correction_receipt.revision == 2
    assert correction_receipt.corrects == VoucherRef(AGENCY_A, voucher.fiscal_year, voucher.voucher_number, 1)


def test_receipt_refuses_naive_time_and_malformed_id(receipt) -> None:
    with pytest.raises(ValueError, match="timezone"):
        dataclasses.replace(receipt, received_at=RECEIVED_AT.replace(tzinfo=None))
    with pytest.raises(ValueError, match="receipt id"):
        dataclasses.replace(receipt, receipt_id="R-" + "A" * 32)
    with pytest.raises(ValueError, match="AGENCY-YEAR-NUMBER"):
        dataclasses.replace(receipt, agency="379000002A")


# --- the receipt id ----------------------------------------------------------------------------------------------

SHA = "ab" * 32


def test_receipt_id_is_deterministic_and_shaped() -> None:
    first = new_receipt_id("379000001A-115-0001000001", 1, SHA)
    assert first == new_receipt_id("379000001A-115-0001000001", 1, SHA)
    assert re.fullmatch(r"R-[0-9a-f]{32}", first)
    # Pinned: a changed scheme would give a retry after an upgrade another id than the first attempt got.
    assert first == "R-5f986b6601d2d4ba4e786604ddebcb1d"


@pytest.mark.parametrize("other", [
    ("379000001A-115-0001000002", 1, SHA),
    ("379000001A-115-0001000001", 2, SHA),
    ("379000001A-115-0001000001", 1, "cd" * 32),
])
def test_receipt_id_differs_when_any_input_differs(other) -> None:
    assert new_receipt_id(*other) != new_receipt_id("379000001A-115-0001000001", 1, SHA)


@pytest.mark.parametrize("args", [
    ("379000001A-115-0001000001", 1, SHA.upper()),  # same digest, other spelling: would give another id
    ("379000001A-115-0001000001", 0, SHA),
    ("not-a-voucher-id", 1, SHA),
])
def test_receipt_id_refuses_inputs_it_could_spell_two_ways(args) -> None:
    with pytest.raises(ValueError):
        new_receipt_id(*args)


# --- XML ---------------------------------------------------------------------------------------------------------

def test_unsigned_receipt_is_schema_valid(receipt, correction_receipt) -> None:
    assert schema_errors(receipt_xml(receipt)) == []
    assert schema_errors(receipt_xml(correction_receipt)) == []
    root = etree.fromstring(receipt_xml(correction_receipt))
    assert root.tag == f"{{{NS}}}Receipt" and root.get("schemaVersion") == "1.0"
    assert root.findtext(f"{{{NS}}}Corrects/{{{NS}}}Revision") == "1"


def test_received_at_is_written_in_utc_and_read_back_as_the_same_instant(receipt) -> None:
    taipei = dataclasses.replace(receipt, received_at=RECEIVED_AT.astimezone(TAIPEI))
    root = etree.fromstring(receipt_xml(taipei))
    assert root.findtext(f"{{{NS}}}ReceivedAt").endswith("Z")
    assert read_receipt(root) == receipt


@pytest.mark.parametrize("field, bad", [
    ("ReceiptId", "R-123"),
    ("VoucherId", "379000001A-2026-0001"),
    ("ReceivedSha256", "AB" * 32),
    ("ReceivedAt", "2026-01-02T03:04:05"),  # no zone
    ("Status", "approved"),
    ("SignerRole", "auditor"),
])
def test_schema_refuses_a_field_out_of_shape(receipt, field, bad) -> None:
    root = receipt_element(receipt)
    root.find(f"{{{NS}}}{field}").text = bad
    problems = schema_errors(etree.tostring(root))
    assert problems and {p.code for p in problems} == {"schema-invalid"}
    assert any(field in (p.path or "") for p in problems)


# --- signing and verifying ---------------------------------------------------------------------------------------

def test_signed_receipt_verifies_to_an_equal_receipt(receipt, correction_receipt, gateway_pair) -> None:
    key, cert = gateway_pair
    for original in (receipt, correction_receipt):
        signed = sign_receipt(original, key, cert, SIGNED_AT)
        assert schema_errors(signed) == []
        assert verify_receipt(signed, gateway_cert=cert, now=SIGNED_AT) == original


@pytest.mark.parametrize("field", ["VoucherId", "ReceivedSha256", "ReceivedAt", "Revision", "SignerSerial"])
def test_a_changed_signed_value_is_refused(receipt, gateway_pair, field) -> None:
    key, cert = gateway_pair
    signed = sign_receipt(receipt, key, cert, SIGNED_AT)
    root = etree.fromstring(receipt_xml(receipt))
    old = root.findtext(f"{{{NS}}}{field}")
    new = {"VoucherId": old[:-1] + ("1" if old[-1] != "1" else "2"),
           "ReceivedSha256": ("0" if old[0] != "0" else "1") + old[1:],
           "ReceivedAt": (RECEIVED_AT - datetime.timedelta(hours=1)).astimezone(datetime.timezone.utc)
                         .isoformat().replace("+00:00", "Z"),
           "Revision": "2",
           "SignerSerial": old[:-1] + ("A" if old[-1] != "A" else "B")}[field]
    tampered = signed.replace(f"<{field}>{old}</{field}>".encode(), f"<{field}>{new}</{field}>".encode(), 1)
    assert tampered != signed and schema_errors(tampered) == []
    assert refusal_code(tampered, cert) == "signature-invalid"


def test_a_receipt_signed_by_another_certificate_of_the_same_ca_is_refused(pki, receipt, gateway_pair,
                                                                        bank_pair) -> None:
    _, gateway_cert = gateway_pair
    bank_key, bank_cert = bank_pair
    assert bank_cert.issuer == gateway_cert.issuer  # same CA: only the pin tells them apart
    assert refusal_code(sign_receipt(receipt, bank_key, bank_cert, SIGNED_AT), gateway_cert) \
        == "receipt-signer-unexpected"
    agency_key, agency_cert = pki.person(AGENCY_A, "preparer")
    assert refusal_code(sign_receipt(receipt, agency_key, agency_cert, SIGNED_AT), gateway_cert) \
        == "receipt-signer-unexpected"


def test_values_come_from_the_signed_document_not_the_received_tree(receipt, gateway_pair) -> None:
    """A comment splits VoucherId's text in the received tree; canonicalization excises it, so the signature
    still verifies, and only the signed document holds the whole value."""
    key, cert = gateway_pair
    signed = sign_receipt(receipt, key, cert, SIGNED_AT)
    head, tail = receipt.voucher_id.split("-", 1)
    commented = signed.replace(f"<VoucherId>{receipt.voucher_id}<".encode(),
                               f"<VoucherId>{head}<!-- x -->-{tail}<".encode(), 1)
    assert commented != signed
    assert verify_receipt(commented, gateway_cert=cert, now=SIGNED_AT) == receipt


def test_unsigned_receipt_is_refused(receipt, gateway_pair) -> None:
    assert refusal_code(receipt_xml(receipt), gateway_pair[1]) == "signature-missing"


def test_schema_invalid_signed_receipt_is_refused_before_the_signature(receipt, gateway_pair) -> None:
    key, cert = gateway_pair
    root = receipt_element(receipt)
    root.find(f"{{{NS}}}Status").text = "approved"
    signed = sign_document(root, key, cert, SIGNED_AT)
    with pytest.raises(Refusal) as caught:
        verify_receipt(signed, gateway_cert=cert, now=SIGNED_AT)
    assert caught.value.code == "schema-invalid"
    assert any(p.path == "/Receipt/Status" for p in caught.value.problems)


def test_a_voucher_signed_by_the_gateway_is_not_a_receipt(voucher, gateway_pair) -> None:
    key, cert = gateway_pair
    assert refusal_code(sign_document(voucher_to_xml(voucher), key, cert, SIGNED_AT), cert) == "schema-invalid"


def test_hostile_xml_is_refused_by_the_hardened_parser(gateway_pair) -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaa">]>'
            b'<Receipt xmlns="urn:taipei:treasury:receipt:1">&a;</Receipt>')
    assert refusal_code(bomb, gateway_pair[1]) == "xml-forbidden-construct"


def test_receipt_verified_after_the_gateway_certificate_expired_is_refused(receipt, gateway_pair) -> None:
    key, cert = gateway_pair
    signed = sign_receipt(receipt, key, cert, SIGNED_AT)
    later = cert.not_valid_after_utc + datetime.timedelta(days=1)
    assert refusal_code(signed, cert, now=later) == "certificate-expired"

