"""The signed bank-message envelope: sealed by one side, opened by the other only if every rung holds.

Signed with the session's test PKI: the gateway's key seals transfer orders, the bank's seals reports, and an
agency person's certificate (same CA) stands in for a signer nobody pinned.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from pathlib import Path

import pytest
from lxml import etree

from gateway.bank.batching import plan_transfers
from gateway.bank.envelope import (
    BANK_LIMITS,
    ENVELOPE_SCHEMA,
    MESSAGE_SCHEMAS,
    MESSAGE_TYPES,
    NS,
    SealedMessage,
    envelope_element,
    open_sealed,
    seal,
)
from gateway.bank.pain001 import NS as PAIN001_NS
from gateway.bank.pain001 import build_pain001, read_pain001
from gateway.errors import GatewayError, Refusal
from gateway.xmlsec.parsing import XmlLimits, parse_untrusted
from gateway.xmlsec.signing import sign_element
from gateway.xmlsec.validation import schema_problems
from schemas import schema_path
from tests.conftest import AGENCY_A, NOW
from tests.unit.payment_samples import payments

PAIN001 = "pain.001.001.09"
PAIN002 = "pain.002.001.10"
TRANSFERS = frozenset({PAIN001})
REPORTS = frozenset({PAIN002, "camt.054.001.08"})
GATEWAY, BANK = "TPE-TREASURY-GATEWAY", "FUBON-012-2102"
SAMPLE = (Path(__file__).resolve().parents[1] / "data" / "iso20022"
          / "pain.001.001.09__dvbern-iso20022__sps2022-testreference.xml")


def transfer_document(count: int = 3) -> tuple[str, etree._Element]:
    [plan] = plan_transfers(payments(count), max_per_message=5000)
    return plan.message_id, build_pain001(plan, created_at=NOW)


def status_report() -> etree._Element:
    """A minimal valid pain.002.001.10: the whole message accepted."""
    return etree.fromstring(f"""
        <Document xmlns="urn:iso:std:iso:20022:tech:xsd:{PAIN002}"><CstmrPmtStsRpt>
          <GrpHdr><MsgId>FB-P2-0001</MsgId><CreDtTm>2026-03-12T10:00:00+08:00</CreDtTm></GrpHdr>
          <OrgnlGrpInfAndSts><OrgnlMsgId>VGW20260312-0123456789abcdef</OrgnlMsgId>
            <OrgnlMsgNmId>{PAIN001}</OrgnlMsgNmId><GrpSts>ACCP</GrpSts></OrgnlGrpInfAndSts>
        </CstmrPmtStsRpt></Document>""".encode())


@pytest.fixture(scope="module")
def transfer(gateway_pair) -> tuple[str, etree._Element, bytes]:
    message_id, document = transfer_document()
    key, cert = gateway_pair
    data = seal(document, message_id=message_id, message_type=PAIN001, sender=GATEWAY, receiver=BANK, key=key,
                cert=cert, created_at=NOW)
    return message_id, document, data


def open_transfer(data: bytes, cert, **kwargs) -> SealedMessage:
    return open_sealed(data, signer_cert=cert, allowed_types=kwargs.pop("allowed_types", TRANSFERS),
                       sender=kwargs.pop("sender", GATEWAY), receiver=kwargs.pop("receiver", BANK),
                       now=kwargs.pop("now", NOW), **kwargs)


def refusal(data: bytes, cert, **kwargs) -> Refusal:
    with pytest.raises(Refusal) as caught:
        open_transfer(data, cert, **kwargs)
    return caught.value


# --- the way it should go --------------------------------------------------------------------------------------

def test_sealed_transfer_opens_to_its_header_and_signed_document(transfer, gateway_pair) -> None:
    message_id, document, data = transfer
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    opened = open_transfer(data, gateway_pair[1])
    assert (opened.message_id, opened.message_type, opened.sender, opened.receiver) == (message_id, PAIN001,
                                                                                         GATEWAY, BANK)
    assert opened.created_at == NOW and opened.created_at.tzinfo is not None
    assert opened.signed_at == NOW
    assert opened.sha256 == hashlib.sha256(data).hexdigest()
    assert opened.document.tag == f"{{{PAIN001_NS}}}Document"
    # Compared as serialised, not canonicalised: libxml2 2.14 canonicalises a subtree under an element with
    # another default namespace wrongly (xmlns="" on grandchildren), and opened.document is such a subtree.
    assert etree.tostring(opened.document) == etree.tostring(document)
    assert [row.end_to_end_id for row in read_pain001(opened.document)] == sorted(p.end_to_end_id
                                                                                   for p in payments(3))


def test_sealed_bytes_follow_the_envelope_schema_with_a_ds_signature_last(transfer) -> None:
    root = parse_untrusted(transfer[2])
    assert schema_problems(root, ENVELOPE_SCHEMA) == []
    assert [etree.QName(child).localname for child in root] == ["Header", "Document", "Signature"]
    assert root[-1].prefix == "ds"
    assert root.findtext(f"{{{NS}}}Header/{{{NS}}}CreatedAt").endswith("Z")
    assert not root.xpath("//@*[local-name()='Id' or local-name()='ID' or local-name()='id']"
                          "[not(ancestor::*[local-name()='Signature'])]")


def test_sealing_leaves_the_callers_document_alone(transfer) -> None:
    _, document, _ = transfer
    assert document.getparent() is None and document.getroottree().getroot() is document


def test_bank_reports_are_sealed_and_opened_the_same_way(bank_pair) -> None:
    key, cert = bank_pair
    data = seal(status_report(), message_id="FB-P2-0001", message_type=PAIN002, sender=BANK, receiver=GATEWAY,
                key=key, cert=cert, created_at=NOW)
    opened = open_sealed(data, signer_cert=cert, allowed_types=REPORTS, sender=BANK, receiver=GATEWAY, now=NOW)
    assert (opened.message_type, opened.sender) == (PAIN002, BANK)
    assert opened.document.findtext(f"{{urn:iso:std:iso:20022:tech:xsd:{PAIN002}}}CstmrPmtStsRpt/"
                                    f"{{urn:iso:std:iso:20022:tech:xsd:{PAIN002}}}GrpHdr/"
                                    f"{{urn:iso:std:iso:20022:tech:xsd:{PAIN002}}}MsgId") == "FB-P2-0001"


def test_a_genuine_third_party_pain001_passes_the_envelope(gateway_pair) -> None:
    key, cert = gateway_pair
    document = parse_untrusted(SAMPLE.read_bytes())
    data = seal(document, message_id="Test-ID", message_type=PAIN001, sender=GATEWAY, receiver=BANK, key=key,
                cert=cert, created_at=NOW)
    assert open_transfer(data, cert).document.findtext(f".//{{{PAIN001_NS}}}MsgId") == "Test-ID"


def test_only_the_signed_content_is_returned(transfer, gateway_pair) -> None:
    """A comment is not signed (C14N without comments), so adding one keeps the signature valid; what comes
    back is the verifier's canonical document, without it."""
    data = transfer[2].replace(b"<CstmrCdtTrfInitn>", b"<CstmrCdtTrfInitn><!-- injected -->", 1)
    assert data != transfer[2]
    opened = open_transfer(data, gateway_pair[1])
    assert b"injected" not in etree.tostring(opened.document)


def test_a_5000_transaction_message_fits_the_bank_limits_with_room(gateway_pair) -> None:
    message_id, document = transfer_document(5000)
    key, cert = gateway_pair
    data = seal(document, message_id=message_id, message_type=PAIN001, sender=GATEWAY, receiver=BANK, key=key,
                cert=cert, created_at=NOW)
    root = parse_untrusted(data, BANK_LIMITS)
    elements = int(root.xpath("count(//*)"))
    depth = max(sum(1 for _ in node.iterancestors()) + 1 for node in root.iter())
    assert len(data) * 10 < BANK_LIMITS.max_bytes and elements * 10 < BANK_LIMITS.max_elements
    assert depth <= 12 < BANK_LIMITS.max_depth
    assert open_transfer(data, cert).message_id == message_id


# --- what is refused -------------------------------------------------------------------------------------------

def test_an_amount_changed_after_signing_is_refused(transfer, gateway_pair) -> None:
    data = transfer[2]
    start = data.index(b'<InstdAmt Ccy="TWD">') + len(b'<InstdAmt Ccy="TWD">')
    end = data.index(b"</InstdAmt>", start)
    tampered = data[:start] + str(int(data[start:end]) + 1).encode() + data[end:]
    assert refusal(tampered, gateway_pair[1]).code == "signature-invalid"


def test_a_header_changed_after_signing_is_refused(transfer, gateway_pair) -> None:
    tampered = transfer[2].replace(f"<Receiver>{BANK}</Receiver>".encode(), b"<Receiver>OTHER-BANK</Receiver>")
    assert refusal(tampered, gateway_pair[1]).code == "signature-invalid"


def test_a_message_signed_by_another_certificate_of_the_same_ca_is_refused(pki, gateway_pair) -> None:
    key, cert = pki.person(AGENCY_A, "preparer")
    message_id, document = transfer_document()
    data = seal(document, message_id=message_id, message_type=PAIN001, sender=GATEWAY, receiver=BANK, key=key,
                cert=cert, created_at=NOW)
    found = refusal(data, gateway_pair[1])
    assert found.code == "bank-signer-unexpected" and f"{cert.serial_number:X}" in found.message
    assert open_transfer(data, cert).message_id == message_id  # pinned to that one, it would open


def test_the_bank_cannot_send_what_only_the_gateway_sends(transfer, bank_pair, gateway_pair) -> None:
    assert refusal(transfer[2], bank_pair[1]).code == "bank-signer-unexpected"
    found = refusal(transfer[2], gateway_pair[1], allowed_types=REPORTS)
    assert found.code == "bank-message-type-unexpected"
    assert found.problems[0].path == "/BankMessage/Header/MessageType"


def _signed_envelope(document, key, cert, *, message_id: str, sender: str = GATEWAY, receiver: str = BANK) -> bytes:
    """An envelope signed as given, without :func:`seal`'s own checks: what a confused peer can send."""
    envelope = envelope_element(document, message_id=message_id, message_type=PAIN001, sender=sender,
                                receiver=receiver, created_at=NOW)
    return etree.tostring(sign_element(envelope, key, cert, NOW), xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize("party, code, path", [
    ({"sender": "FUBON-012-9999"}, "bank-sender-unexpected", "/BankMessage/Header/Sender"),
    ({"receiver": "TPE-OTHER-GATEWAY"}, "bank-receiver-unexpected", "/BankMessage/Header/Receiver"),
])
def test_a_genuinely_signed_message_from_or_for_another_party_is_refused(gateway_pair, party, code, path) -> None:
    key, cert = gateway_pair
    message_id, document = transfer_document()
    data = _signed_envelope(document, key, cert, message_id=message_id, **party)
    found = refusal(data, cert)
    assert found.code == code and found.problems[0].path == path
    assert open_transfer(data, cert, **party).message_id == message_id  # expected by that party, it would open


def test_an_envelope_id_other_than_the_documents_own_msgid_is_refused_and_never_sealed(gateway_pair) -> None:
    key, cert = gateway_pair
    message_id, document = transfer_document()
    found = refusal(_signed_envelope(document, key, cert, message_id="VGW-SOMETHING-ELSE"), cert)
    assert found.code == "bank-message-id-mismatch" and message_id in found.message
    assert found.problems[0].path == "/BankMessage/Header/MessageId"
    with pytest.raises(GatewayError, match="MsgId"):
        seal(document, message_id="VGW-SOMETHING-ELSE", message_type=PAIN001, sender=GATEWAY, receiver=BANK,
             key=key, cert=cert, created_at=NOW)


def test_a_document_of_another_type_than_the_header_names_is_refused(transfer, gateway_pair) -> None:
    tampered = transfer[2].replace(f"<MessageType>{PAIN001}</MessageType>".encode(),
                                   f"<MessageType>{PAIN002}</MessageType>".encode())
    found = refusal(tampered, gateway_pair[1], allowed_types=REPORTS)
    assert found.code == "bank-message-type-unexpected"
    assert found.problems[0].path == "/BankMessage/Document/Document" and found.problems[0].line is not None


def test_a_signed_but_schema_invalid_document_is_refused_with_lines_and_paths(gateway_pair) -> None:
    key, cert = gateway_pair
    message_id, document = transfer_document()
    amounts = document.xpath("//p:InstdAmt", namespaces={"p": PAIN001_NS})
    amounts[1].text = "a lot"
    amounts[2].text = "-5"
    envelope = envelope_element(document, message_id=message_id, message_type=PAIN001, sender=GATEWAY,
                                receiver=BANK, created_at=NOW)
    data = etree.tostring(sign_element(envelope, key, cert, NOW), xml_declaration=True, encoding="UTF-8")
    found = refusal(data, cert)
    assert found.code == "schema-invalid" and len(found.problems) == 2
    base = "/BankMessage/Document/Document/CstmrCdtTrfInitn/PmtInf/"
    assert [p.path for p in found.problems] == [base + "CdtTrfTxInf[2]/Amt/InstdAmt",
                                                base + "CdtTrfTxInf[3]/Amt/InstdAmt"]
    assert all(p.line and p.line > 1 for p in found.problems)
    assert "urn:iso" not in found.problems[0].message and "InstdAmt" in found.problems[0].message


def test_seal_refuses_to_sign_an_invalid_document(gateway_pair) -> None:
    key, cert = gateway_pair
    message_id, document = transfer_document()
    document[0].remove(document[0][0])  # no GrpHdr
    with pytest.raises(GatewayError, match="refusing to seal"):
        seal(document, message_id=message_id, message_type=PAIN001, sender=GATEWAY, receiver=BANK, key=key,
             cert=cert, created_at=NOW)


@pytest.mark.parametrize(("change", "match"), [
    ({"message_type": "pain.008.001.08"}, "message type"),
    ({"message_type": PAIN002}, "namespace"),
    ({"message_id": "has space"}, "message id"),
    ({"message_id": "X" * 36}, "message id"),
    ({"sender": "tpe-gateway"}, "party"),
    ({"created_at": NOW.replace(tzinfo=None)}, "timezone"),
])
def test_seal_checks_its_arguments(gateway_pair, change, match) -> None:
    key, cert = gateway_pair
    message_id, document = transfer_document(1)
    arguments = dict(message_id=message_id, message_type=PAIN001, sender=GATEWAY, receiver=BANK,
                     created_at=NOW) | change
    with pytest.raises((ValueError, GatewayError), match=match):
        seal(document, key=key, cert=cert, **arguments)


def test_an_unsigned_or_reshaped_envelope_is_refused_by_its_schema(transfer, gateway_pair) -> None:
    root = parse_untrusted(transfer[2])
    root.remove(root[-1])
    unsigned = etree.tostring(root)
    assert refusal(unsigned, gateway_pair[1]).code == "schema-invalid"
    with_id = transfer[2].replace(b"<Header>", b'<Header Id="h">', 1)
    assert refusal(with_id, gateway_pair[1]).code == "schema-invalid"
    two_documents = transfer[2].replace(b"</Document></Document>",
                                        b"</Document><x:Extra xmlns:x='urn:x'/></Document>")
    assert two_documents != transfer[2]
    assert refusal(two_documents, gateway_pair[1]).code == "schema-invalid"


def test_a_dtd_or_entity_is_refused_before_anything_reads_it(transfer, gateway_pair) -> None:
    body = transfer[2].split(b"?>", 1)[1]
    entity = b'<?xml version="1.0"?><!DOCTYPE BankMessage [<!ENTITY x "1000000">]>' + body.replace(
        b"<MessageId>", b"<MessageId>&x;", 1)
    assert refusal(entity, gateway_pair[1]).code == "xml-forbidden-construct"
    external = b'<?xml version="1.0"?><!DOCTYPE BankMessage SYSTEM "file:///etc/passwd">' + body
    assert refusal(external, gateway_pair[1]).code == "xml-forbidden-construct"


def test_oversize_and_overdeep_messages_are_refused(transfer, gateway_pair) -> None:
    data = transfer[2]
    assert refusal(data, gateway_pair[1], limits=XmlLimits(max_bytes=len(data) - 1, max_depth=40,
                                                            max_elements=2_000_000)).code == "too-large"
    deep = b"<a>" * 45 + b"</a>" * 45
    hostile = data.replace(b"<CstmrCdtTrfInitn>", b"<CstmrCdtTrfInitn>" + deep, 1)
    assert refusal(hostile, gateway_pair[1]).code == "too-deep"
    assert refusal(b"<BankMessage" + b" " * BANK_LIMITS.max_bytes + b"/>", gateway_pair[1]).code == "too-large"


def test_an_expired_certificate_is_refused_at_that_time(transfer, gateway_pair) -> None:
    later = gateway_pair[1].not_valid_after_utc + datetime.timedelta(days=1)
    assert refusal(transfer[2], gateway_pair[1], now=later).code == "certificate-expired"


def test_unknown_allowed_types_are_a_programming_error(transfer, gateway_pair) -> None:
    with pytest.raises(ValueError):
        open_transfer(transfer[2], gateway_pair[1], allowed_types=frozenset({"pain.001.001.03"}))


# --- the schemas ---------------------------------------------------------------------------------------------

def test_the_envelope_schema_names_exactly_the_types_with_an_official_schema() -> None:
    xs = {"xs": "http://www.w3.org/2001/XMLSchema"}
    envelope = etree.parse(str(schema_path(ENVELOPE_SCHEMA)))
    enumerated = envelope.xpath("//xs:simpleType[@name='MessageTypeType']//xs:enumeration/@value", namespaces=xs)
    assert set(enumerated) == MESSAGE_TYPES == set(MESSAGE_SCHEMAS)
    for message_type, name in MESSAGE_SCHEMAS.items():
        schema = etree.parse(str(schema_path(name))).getroot()
        assert schema.get("targetNamespace") == "urn:iso:std:iso:20022:tech:xsd:" + message_type


def test_the_iso_schemas_are_the_recorded_official_files() -> None:
    """Byte for byte what schemas/ISO20022-SOURCES.md records (SHA-256), so nobody edits one unnoticed."""
    sources = schema_path("ISO20022-SOURCES.md").read_text("utf-8")
    recorded = dict(re.findall(r"^\| ([a-z]{4}\.[0-9.]+\.xsd) \| `([0-9a-f]{64})` \|", sources, re.MULTILINE))
    assert set(recorded) == {"pain.001.001.09.xsd", "pain.002.001.10.xsd", "camt.054.001.08.xsd",
                             "camt.053.001.08.xsd"}
    for name, digest in recorded.items():
        assert hashlib.sha256(schema_path(name).read_bytes()).hexdigest() == digest, name
