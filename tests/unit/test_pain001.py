"""pain.001.001.09 transfer orders: valid against the official ISO schema, the documented choices in place, and
read back into exactly the payments planned."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest
from lxml import etree

from gateway.bank.batching import plan_transfers
from gateway.bank.pain001 import (
    NS,
    SCHEMA,
    TAIPEI_TREASURY,
    OrderedPayment,
    TreasuryAccount,
    _id_scheme,
    _write_transaction,
    build_pain001,
    read_pain001,
)
from gateway.errors import Refusal
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.identifiers import is_valid_business_id
from gateway.xmlsec.parsing import parse_untrusted
from gateway.xmlsec.validation import schema_problems
from tests.unit.payment_samples import payment, payments

CREATED = datetime.datetime(2026, 3, 11, 1, 30, tzinfo=datetime.timezone.utc)
SAMPLE = (Path(__file__).resolve().parents[1] / "data" / "iso20022"
          / "pain.001.001.09__dvbern-iso20022__sps2022-testreference.xml")
P = {"p": NS}


def build(lines, *, cap: int = 5000, debtor: TreasuryAccount = TAIPEI_TREASURY) -> etree._Element:
    [plan] = plan_transfers(lines, max_per_message=cap)
    return build_pain001(plan, debtor=debtor, created_at=CREATED)


def texts(root: etree._Element, path: str) -> list[str]:
    return [node.text for node in root.xpath(path, namespaces=P)]


def mixed_lines() -> list:
    """Every method, every id kind, long Chinese names (astral characters too), XML's special characters."""
    return [
        payment(0, method="CreditTransfer"),
        payment(1, method="CreditTransfer", name="臺北市" + "𠀋" * 10 + "股份有限公司" + "甲" * 81),  # 100 characters
        payment(2, method="EntrustedTransfer", remittance="薪資 & <加班費> \"三月\" 'A&B'" + "款" * 110),
        payment(3, method="EntrustedTransfer", remittance=""),
        payment(4, method="TreasuryCheque"),
        payment(5, method="TreasuryCheque", name="Ａ&B <Co.>", remittance="x" * 140),
    ]


def test_a_mixed_message_is_valid_against_the_official_schema() -> None:
    lines = mixed_lines()
    assert len(lines[1].payee_name) == 100 and len(lines[5].remittance) == 140
    assert {_id_scheme(p.payee_id)[1] for p in lines} == {"TWBAN", "TWNID", "TWARC"}
    root = build(lines)
    assert schema_problems(root, SCHEMA) == []
    # ... and still after a round trip through bytes and the hardened parser.
    reparsed = parse_untrusted(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    assert schema_problems(reparsed, SCHEMA) == []
    assert texts(reparsed, "//p:Cdtr/p:Nm") == texts(root, "//p:Cdtr/p:Nm")


def test_a_full_5000_transaction_message_is_valid() -> None:
    root = build(payments(5000))
    assert schema_problems(root, SCHEMA) == []
    assert texts(root, "/p:Document/p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs") == ["5000"]


def test_header_and_group_carry_the_documented_choices() -> None:
    lines = mixed_lines()
    [plan] = plan_transfers(lines, max_per_message=100)
    root = build_pain001(plan, debtor=TAIPEI_TREASURY, created_at=CREATED)
    header = "/p:Document/p:CstmrCdtTrfInitn/p:GrpHdr/"
    assert texts(root, header + "p:MsgId") == [plan.message_id]
    assert texts(root, header + "p:CreDtTm") == ["2026-03-11T09:30:00+08:00"]  # Taipei time, with its offset
    assert texts(root, header + "p:NbOfTxs") == ["6"]
    assert texts(root, header + "p:CtrlSum") == [str(sum(p.amount for p in lines))]
    assert texts(root, header + "p:InitgPty/p:Nm") == ["臺北市政府財政局"]

    blocks = root.xpath("//p:PmtInf", namespaces=P)
    assert [b.findtext(f"{{{NS}}}PmtInfId") for b in blocks] == [g.payment_info_id for g in plan.groups]
    assert [(b.findtext(f"{{{NS}}}PmtMtd"), b.findtext(f"{{{NS}}}PmtTpInf/{{{NS}}}CtgyPurp/{{{NS}}}Cd"))
            for b in blocks] == [("TRF", "SUPP"), ("TRF", "SALA"), ("CHK", "SUPP")]
    assert texts(root, "//p:PmtInf/p:BtchBookg") == ["false"] * 3
    assert texts(root, "//p:PmtInf/p:ChrgBr") == ["DEBT"] * 3
    assert texts(root, "//p:PmtInf/p:ReqdExctnDt/p:Dt") == ["2026-03-12"] * 3
    assert texts(root, "//p:PmtInf/p:Dbtr/p:Nm") == ["臺北市政府"] * 3
    assert texts(root, "//p:PmtInf/p:Dbtr/p:Id/p:OrgId/p:Othr/p:Id") == [TAIPEI_TREASURY.business_id] * 3
    assert texts(root, "//p:PmtInf/p:DbtrAcct/p:Id/p:Othr/p:Id") == [TAIPEI_TREASURY.account_number] * 3
    assert texts(root, "//p:PmtInf/p:DbtrAgt/p:FinInstnId/p:ClrSysMmbId/p:MmbId") == ["0122102"] * 3
    assert texts(root, "//p:PmtInf/p:DbtrAgt/p:FinInstnId/p:ClrSysMmbId/p:ClrSysId/p:Prtry") == ["FISC"] * 3
    assert [b.findtext(f"{{{NS}}}NbOfTxs") for b in blocks] == ["2", "2", "2"]


def test_transactions_carry_the_payment() -> None:
    lines = mixed_lines()
    root = build(lines)
    by_e2e = {tx.findtext(f"{{{NS}}}PmtId/{{{NS}}}EndToEndId"): tx for tx in root.iter(f"{{{NS}}}CdtTrfTxInf")}
    assert set(by_e2e) == {p.end_to_end_id for p in lines}
    for line in lines:
        tx = by_e2e[line.end_to_end_id]

        def one(path: str, tx=tx) -> str:
            [value] = tx.xpath(path, namespaces=P)
            return value if isinstance(value, str) else value.text

        assert one("p:PmtId/p:InstrId") == line.end_to_end_id
        assert one("p:Amt/p:InstdAmt") == str(line.amount) and one("p:Amt/p:InstdAmt/@Ccy") == "TWD"
        assert one("p:CdtrAgt/p:FinInstnId/p:ClrSysMmbId/p:MmbId") == line.bank_code + line.branch_code
        assert one("p:CdtrAgt/p:FinInstnId/p:ClrSysMmbId/p:ClrSysId/p:Prtry") == "FISC"
        assert one("p:CdtrAgt/p:BrnchId/p:Id") == line.branch_code
        assert one("p:Cdtr/p:Nm") == line.payee_name
        kind, scheme = _id_scheme(line.payee_id)
        assert one(f"p:Cdtr/p:Id/p:{kind}/p:Othr/p:Id") == line.payee_id
        assert one(f"p:Cdtr/p:Id/p:{kind}/p:Othr/p:SchmeNm/p:Prtry") == scheme
        assert one("p:CdtrAcct/p:Id/p:Othr/p:Id") == line.account_number
        assert tx.xpath("p:RmtInf/p:Ustrd/text()", namespaces=P) == ([line.remittance] if line.remittance else [])
        cheque = tx.xpath("p:ChqInstr/p:ChqTp/text()", namespaces=P)
        assert cheque == (["CCHQ"] if line.method == "TreasuryCheque" else [])
    assert _id_scheme("64000006") == ("OrgId", "TWBAN")
    assert _id_scheme("A123456789") == ("PrvtId", "TWNID")
    assert _id_scheme("F800000012") == ("PrvtId", "TWARC")


def test_template_copies_equal_what_the_readable_writer_writes() -> None:
    """The fast path (a copied template per shape) writes exactly what _write_transaction writes."""
    lines = mixed_lines()
    root = build(lines)
    direct = etree.Element(f"{{{NS}}}PmtInf", nsmap={None: NS})
    expected = {}
    for line in lines:
        node = _write_transaction(direct, e2e=line.end_to_end_id, amount=str(line.amount), bank_code=line.bank_code,
                                  branch_code=line.branch_code, name=line.payee_name, payee_id=line.payee_id,
                                  scheme=_id_scheme(line.payee_id), account=line.account_number,
                                  remittance=line.remittance, cheque=line.method == "TreasuryCheque")
        expected[line.end_to_end_id] = etree.tostring(node, method="c14n")
    built = {tx.findtext(f"{{{NS}}}PmtId/{{{NS}}}EndToEndId"): etree.tostring(tx, method="c14n")
             for tx in root.iter(f"{{{NS}}}CdtTrfTxInf")}
    assert built == expected
    assert "\ue000" not in etree.tostring(root, encoding="unicode")


def test_names_are_not_shortened_a_too_long_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="Max140Text"):
        build([payment(0, name="名" * 141)])
    assert schema_problems(build([payment(0, name="名" * 140)]), SCHEMA) == []


def test_created_at_must_carry_a_zone() -> None:
    [plan] = plan_transfers(payments(1), max_per_message=10)
    with pytest.raises(ValueError, match="timezone"):
        build_pain001(plan, debtor=TAIPEI_TREASURY, created_at=CREATED.replace(tzinfo=None))


def test_the_default_treasury_account_is_well_formed_and_at_a_real_branch() -> None:
    assert is_valid_business_id(TAIPEI_TREASURY.business_id, on=datetime.date(2026, 1, 1))
    assert TAIPEI_TREASURY.fisc_code == "0122102"
    assert BankDirectory.shipped().has_branch("012", "2102")
    with pytest.raises(ValueError):
        dataclasses.replace(TAIPEI_TREASURY, account_number="12-34")
    with pytest.raises(ValueError):
        dataclasses.replace(TAIPEI_TREASURY, name=" 臺北市政府")
    with pytest.raises(ValueError):
        dataclasses.replace(TAIPEI_TREASURY, branch_code="210")


# --- reading -------------------------------------------------------------------------------------------------

def test_read_gives_back_exactly_the_payments_planned() -> None:
    lines = mixed_lines() + payments(40)[6:]
    plans = plan_transfers(lines, max_per_message=7)
    read: list[OrderedPayment] = []
    for plan in plans:
        data = etree.tostring(build_pain001(plan, debtor=TAIPEI_TREASURY, created_at=CREATED))
        rows = read_pain001(parse_untrusted(data))
        assert {row.message_id for row in rows} == {plan.message_id}
        assert [(row.payment_info_id, row.payment) for row in rows] == [
            (group.payment_info_id, p) for group in plan.groups for p in group.payments]
        read += rows
    assert sorted((r.payment for r in read), key=lambda p: p.end_to_end_id) == \
        sorted(lines, key=lambda p: p.end_to_end_id)
    row = read[0]
    assert row.debtor_account == TAIPEI_TREASURY.account_number
    assert (row.end_to_end_id, row.amount, row.bank_code, row.branch_code, row.account_number, row.payee_name,
            row.payee_id) == (row.payment.end_to_end_id, row.payment.amount, row.payment.bank_code,
                              row.payment.branch_code, row.payment.account_number, row.payment.payee_name,
                              row.payment.payee_id)


def _tampered(edit) -> etree._Element:
    root = parse_untrusted(etree.tostring(build(payments(3))))
    edit(root)
    return root


def _first(root, path):
    return root.xpath(path, namespaces=P)[0]


@pytest.mark.parametrize(("edit", "code", "path_end"), [
    (lambda r: setattr(_first(r, "//p:GrpHdr/p:NbOfTxs"), "text", "4"), "line-count-mismatch", "/GrpHdr/NbOfTxs"),
    (lambda r: setattr(_first(r, "//p:PmtInf/p:NbOfTxs"), "text", "2"), "line-count-mismatch", "/PmtInf/NbOfTxs"),
    (lambda r: setattr(_first(r, "//p:GrpHdr/p:CtrlSum"), "text", "1.5"), "control-total-mismatch",
     "/GrpHdr/CtrlSum"),
    (lambda r: _first(r, "//p:InstdAmt").set("Ccy", "USD"), "schema-invalid", "/CdtTrfTxInf[1]/Amt/InstdAmt"),
    (lambda r: setattr(_first(r, "//p:CdtTrfTxInf[2]/p:Amt/p:InstdAmt"), "text", "10.50"), "schema-invalid",
     "/CdtTrfTxInf[2]/Amt/InstdAmt"),
    (lambda r: setattr(_first(r, "//p:CdtTrfTxInf[3]/p:PmtId/p:EndToEndId"), "text", "NOTPROVIDED"),
     "schema-invalid", "/CdtTrfTxInf[3]"),
    (lambda r: _first(r, "//p:CdtTrfTxInf[2]").remove(_first(r, "//p:CdtTrfTxInf[2]/p:Cdtr")), "schema-invalid",
     "/CdtTrfTxInf[2]"),
    (lambda r: setattr(_first(r, "//p:PmtTpInf/p:CtgyPurp/p:Cd"), "text", "TAXS"), "schema-invalid", "/PmtInf"),
])
def test_read_refuses_what_this_gateway_never_writes(edit, code, path_end) -> None:
    root = _tampered(edit)
    with pytest.raises(Refusal) as caught:
        read_pain001(root)
    assert caught.value.code == code
    problem = caught.value.problems[0]
    assert problem.path.startswith("/Document/CstmrCdtTrfInitn/") and problem.path.endswith(path_end)
    assert problem.line is not None


def test_control_sums_may_be_spelled_as_any_equal_decimal() -> None:
    root = _tampered(lambda r: setattr(_first(r, "//p:GrpHdr/p:CtrlSum"), "text",
                                       _first(r, "//p:GrpHdr/p:CtrlSum").text + ".00"))
    assert len(read_pain001(root)) == 3


def test_a_third_party_message_is_schema_valid_but_not_one_to_book() -> None:
    """A real SPS 2022 pain.001.001.09 (tests/data/iso20022/SOURCES.md): our copy of the official XSD accepts
    it; read_pain001 refuses it, as it has no category purpose this gateway orders with (and CHF amounts)."""
    root = parse_untrusted(SAMPLE.read_bytes())
    assert schema_problems(root, SCHEMA) == []
    with pytest.raises(Refusal) as caught:
        read_pain001(root)
    assert caught.value.code == "schema-invalid" and "category purpose" in caught.value.message


def test_read_refuses_another_document() -> None:
    with pytest.raises(Refusal) as caught:
        read_pain001(etree.fromstring(b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"/>'))
    assert caught.value.code == "schema-invalid"
