"""A voucher survives XML, signing and the whole check unchanged; any signed value changed afterwards is caught.

Plus the business rules as ``validate_document`` (``vgw voucher validate``) reports them: codes and paths.
"""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.errors import Refusal
from gateway.trust.roles import Role
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.check import TAIPEI, check_signed_voucher, validate_document
from gateway.vouchers.identifiers import is_valid_national_id, make_national_id
from gateway.vouchers.model import (
    DocumentType,
    Notice,
    NoticeChannel,
    ObjectClass,
    PayeeIdType,
    PaymentMethod,
    PaymentMethodKind,
    Urgency,
    Voucher,
    VoucherRef,
)
from gateway.vouchers.rules import roc_year
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.voucher_factory import VoucherFactory
from tests.conftest import AGENCY_A, AGENCY_B, NOW

NS = "urn:taipei:treasury:voucher:1"
NSMAP = {"v": NS}
TODAY = NOW.astimezone(TAIPEI).date()
MAX_AMOUNT = 99_999_999_999
BANKS = BankDirectory.shipped()

# --- strategies --------------------------------------------------------------------------------------------------

# Chinese (CJK Unified Ideographs) and printable ASCII including space: no control characters, and the only
# whitespace is the plain space, which the XSD pattern \S(.*\S)? allows inside but not at either end.
_chars = st.one_of(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
                   st.characters(min_codepoint=0x20, max_codepoint=0x7E))


def texts(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_chars, min_size=1, max_size=max_size).map(lambda s: s.strip(" ")).filter(bool)


payment_methods = st.one_of(
    st.just(PaymentMethod(PaymentMethodKind.CREDIT_TRANSFER)),
    st.just(PaymentMethod(PaymentMethodKind.ENTRUSTED_TRANSFER)),
    st.builds(lambda delivery, reason: PaymentMethod(PaymentMethodKind.TREASURY_CHEQUE, delivery, reason),
              st.sampled_from(["collect", "mail"]), texts(200)),
)


@st.composite
def vouchers(draw) -> Voucher:
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    count = draw(st.integers(min_value=1, max_value=30))
    base = VoucherFactory(BANKS, seed=seed).voucher(draw(st.sampled_from([AGENCY_A, AGENCY_B])), today=TODAY,
                                                    lines=count)
    amounts = draw(st.lists(st.integers(min_value=1, max_value=MAX_AMOUNT), min_size=count, max_size=count))
    memos = draw(st.lists(st.none() | texts(100), min_size=count, max_size=count))
    lines = tuple(line._replace(amount=amount, memo=memo)
                  for line, amount, memo in zip(base.lines, amounts, memos))
    return dataclasses.replace(
        base, lines=lines, line_count=count, total_amount=sum(amounts), purpose=draw(texts(200)),
        payment_method=draw(payment_methods), urgency=draw(st.sampled_from(list(Urgency))),
        object_class=draw(st.sampled_from(list(ObjectClass))),
        document_type=draw(st.sampled_from(list(DocumentType))),
    )


# --- fixtures and helpers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform(pki):
    return pki.platform()


@pytest.fixture(scope="module")
def signers(pki):
    return {agency: pki.person(agency, "preparer") for agency in (AGENCY_A, AGENCY_B)}


def sign(voucher: Voucher, signers) -> bytes:
    key, cert = signers[voucher.agency_code]
    return sign_document(voucher_to_xml(voucher), key, cert, NOW)


def check(data: bytes, platform):
    return check_signed_voucher(data, platform=platform, banks=BANKS, role=Role.PREPARER, now=NOW)


# --- property 1: the round trip ----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(voucher=vouchers())
def test_signed_voucher_comes_back_equal(platform, signers, voucher: Voucher) -> None:
    result = check(sign(voucher, signers), platform)
    assert result.voucher == voucher
    assert result.signer.agency == voucher.agency_code
    assert result.signer.identity.serial_hex == format(signers[voucher.agency_code][1].serial_number, "X")


def test_treasury_cheque_with_chinese_reason_round_trips(platform, signers) -> None:
    base = VoucherFactory(BANKS, seed=3).voucher(AGENCY_A, today=TODAY, lines=2)
    voucher = dataclasses.replace(
        base, purpose='A & B <採購> "急" \'件\'',
        payment_method=PaymentMethod(PaymentMethodKind.TREASURY_CHEQUE, "mail", "受款人無 金融帳戶 & <其他>"))
    assert check(sign(voucher, signers), platform).voucher == voucher


# --- property 2: any signed value changed afterwards -------------------------------------------------------------


def _different_digit(draw, digit: str) -> str:
    return draw(st.sampled_from([d for d in "0123456789" if d != digit]))


@settings(max_examples=25, deadline=None)
@given(voucher=vouchers(), data=st.data())
def test_changing_a_signed_value_breaks_the_signature(platform, signers, voucher: Voucher, data) -> None:
    signed = sign(voucher, signers)
    index = data.draw(st.integers(min_value=0, max_value=len(voucher.lines) - 1), label="line index")
    field = data.draw(st.sampled_from(["Amount", "AccountNumber", "PayeeName"]), label="field")
    line = voucher.lines[index]

    root = etree.fromstring(signed)
    node = root.xpath(f"v:Payees/v:Line[@number='{line.number}']/v:{field}", namespaces=NSMAP)[0]
    if field == "Amount":
        new = str(line.amount + 1 if line.amount < MAX_AMOUNT else line.amount - 1)
    elif field == "AccountNumber":
        position = data.draw(st.integers(min_value=0, max_value=len(line.account_number) - 1), label="digit")
        digits = list(line.account_number)
        digits[position] = _different_digit(data.draw, digits[position])
        new = "".join(digits)
    else:
        position = data.draw(st.integers(min_value=0, max_value=len(line.payee_name) - 1), label="char")
        replacement = data.draw(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
                                .filter(lambda c: c != line.payee_name[position]), label="replacement")
        new = line.payee_name[:position] + replacement + line.payee_name[position + 1:]
    assert new != node.text
    node.text = new
    tampered = etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    with pytest.raises(Refusal) as caught:
        check(tampered, platform)
    assert caught.value.code == "signature-invalid"


# --- validate_document: business rules with codes and paths ------------------------------------------------------


def _line_path(number: int, field: str) -> str:
    return f"/Voucher/Payees/Line[@number={number}]/{field}"


@pytest.fixture
def clean(banks) -> Voucher:
    voucher = VoucherFactory(banks, seed=11).voucher(AGENCY_A, today=TODAY, lines=3)
    # Line 2 pays a person by national ID, so the checksum test below has one to break.
    line2 = voucher.lines[1]._replace(payee_id_type=PayeeIdType.NATIONAL_ID,
                                      payee_id=make_national_id("A", "1", "2345678"))
    return dataclasses.replace(voucher, lines=(voucher.lines[0], line2, voucher.lines[2]))


def problems_of(voucher: Voucher, banks) -> list[tuple[str, str | None]]:
    parsed, problems = validate_document(voucher_to_xml(voucher), today=TODAY, banks=banks)
    assert parsed == voucher  # business-rule problems still come with the parsed voucher
    return [(p.code, p.path) for p in problems]


def test_clean_voucher_has_no_problems(clean, banks) -> None:
    assert problems_of(clean, banks) == []


def test_control_total_mismatch(clean, banks) -> None:
    voucher = dataclasses.replace(clean, total_amount=clean.total_amount + 1)
    assert problems_of(voucher, banks) == [("control-total-mismatch", "/Voucher/Control/TotalAmount")]


def test_line_count_mismatch(clean, banks) -> None:
    voucher = dataclasses.replace(clean, line_count=len(clean.lines) + 1)
    assert problems_of(voucher, banks) == [("line-count-mismatch", "/Voucher/Control/LineCount")]


def test_bad_national_id_checksum(clean, banks) -> None:
    good = clean.lines[1].payee_id
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert is_valid_national_id(good) and not is_valid_national_id(bad)
    line2 = clean.lines[1]._replace(payee_id=bad)
    voucher = dataclasses.replace(clean, lines=(clean.lines[0], line2, clean.lines[2]))
    assert problems_of(voucher, banks) == [("payee-id-invalid", _line_path(2, "PayeeId"))]


def test_unknown_bank_branch(clean, banks) -> None:
    assert banks.has_branch("004", "0037") and not banks.has_branch("004", "9999")
    line3 = clean.lines[2]._replace(bank_code="004", branch_code="9999")
    voucher = dataclasses.replace(clean, lines=clean.lines[:2] + (line3,))
    assert problems_of(voucher, banks) == [("bank-branch-unknown", _line_path(3, "BranchCode"))]


@pytest.mark.parametrize("offset", [-2, 2, 10])
def test_fiscal_year_out_of_range(clean, banks, offset: int) -> None:
    voucher = dataclasses.replace(clean, fiscal_year=roc_year(TODAY) + offset)
    assert problems_of(voucher, banks) == [("fiscal-year-out-of-range", "/Voucher/Header/FiscalYear")]


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_fiscal_year_within_one_year_is_fine(clean, banks, offset: int) -> None:
    assert problems_of(dataclasses.replace(clean, fiscal_year=roc_year(TODAY) + offset), banks) == []


def test_revision_two_without_corrects(clean, banks) -> None:
    voucher = dataclasses.replace(clean, revision=2)
    assert problems_of(voucher, banks) == [("correction-reference-missing", "/Voucher/Header/Corrects")]


def test_revision_two_with_corrects_is_fine(clean, banks) -> None:
    voucher = dataclasses.replace(clean, revision=2, corrects=clean.ref)
    assert voucher.corrects == VoucherRef(AGENCY_A, clean.fiscal_year, clean.voucher_number, 1)
    assert problems_of(voucher, banks) == []


def test_every_problem_is_reported_at_once(clean, banks) -> None:
    good = clean.lines[1].payee_id
    line2 = clean.lines[1]._replace(payee_id=good[:-1] + str((int(good[-1]) + 1) % 10))
    line3 = clean.lines[2]._replace(bank_code="004", branch_code="9999")
    voucher = dataclasses.replace(clean, lines=(clean.lines[0], line2, line3), total_amount=clean.total_amount + 5,
                                  line_count=7, fiscal_year=roc_year(TODAY) + 3, revision=2)
    assert sorted(problems_of(voucher, banks)) == sorted([
        ("line-count-mismatch", "/Voucher/Control/LineCount"),
        ("control-total-mismatch", "/Voucher/Control/TotalAmount"),
        ("fiscal-year-out-of-range", "/Voucher/Header/FiscalYear"),
        ("correction-reference-missing", "/Voucher/Header/Corrects"),
        ("payee-id-invalid", _line_path(2, "PayeeId")),
        ("bank-branch-unknown", _line_path(3, "BranchCode")),
    ])


def test_schema_problems_come_without_a_voucher(clean, banks) -> None:
    root = etree.fromstring(voucher_to_xml(clean))
    root.xpath("v:Payees/v:Line[1]/v:Amount", namespaces=NSMAP)[0].text = "12.50"
    parsed, problems = validate_document(etree.tostring(root), today=TODAY, banks=banks)
    assert parsed is None
    assert problems and {p.code for p in problems} == {"schema-invalid"}
    assert all(p.line is not None for p in problems)


def test_unsafe_xml_comes_back_as_one_problem(banks) -> None:
    parsed, problems = validate_document(b'<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>', today=TODAY, banks=banks)
    assert parsed is None
    assert [p.code for p in problems] == ["xml-forbidden-construct"]


def test_signed_voucher_validates_too(clean, banks, sign_voucher) -> None:
    parsed, problems = validate_document(sign_voucher(clean), today=TODAY, banks=banks)
    assert parsed == clean and problems == []


def test_notice_channels_round_trip(platform, signers) -> None:
    base = VoucherFactory(BANKS, seed=5).voucher(AGENCY_B, today=TODAY, lines=4)
    notices = (Notice(NoticeChannel.EMAIL, "a.b+c@example.gov.tw"), Notice(NoticeChannel.FAX, "02-27208889"),
               Notice(NoticeChannel.POST, "臺北市信義區市府路1號", post_code="11008"), None)
    lines = tuple(line._replace(notice=notice) for line, notice in zip(base.lines, notices))
    voucher = dataclasses.replace(base, lines=lines, prepared_on=TODAY - datetime.timedelta(days=3))
    assert check(sign(voucher, signers), platform).voucher == voucher
