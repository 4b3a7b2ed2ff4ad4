"""Reading the bank's pain.002 and camt.054 (and writing them, as the bank simulator does).

Every document the writers build validates against the official ISO XSDs shipped in schemas/; the readers
give back what was written (round-trip properties); real third-party samples (tests/data/iso20022/) read
into outcomes or a Refusal with a stable code; and no mutation of a built document — valid or not — makes
a reader raise anything but a Refusal.
"""

from __future__ import annotations

import copy
import datetime
import math
import time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.bank.iso_codes import RETURN_REASONS, STATUS_REASONS, code_set
from gateway.bank.outcomes import apply_outcome
from gateway.bank.payments import BankOutcome, BankReport, LineState, OutcomeKind, UnmatchedItem, end_to_end_id
from gateway.bank.report_writing import Booking, TxStatus, build_camt054, build_pain002, info_lines
from gateway.bank.reports import (
    CAMT054,
    CAMT054_NS,
    GROUP_OUTCOMES,
    MAX_REASON_TEXT,
    PAIN002,
    PAIN002_NS,
    TRANSACTION_OUTCOMES,
    read_camt054,
    read_pain002,
)
from gateway.business_time import TAIPEI
from gateway.errors import Refusal
from gateway.problems import TITLES
from gateway.xmlsec.parsing import parse_untrusted
from gateway.xmlsec.validation import schema_problems

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "iso20022"
PAIN_XSD, CAMT_XSD = "pain.002.001.10.xsd", "camt.054.001.08.xsd"
P, C = {"p": PAIN002_NS}, {"c": CAMT054_NS}
NOW = datetime.datetime(2026, 3, 12, 15, 30, tzinfo=TAIPEI)
TODAY = NOW.date()
ORIGINAL = "VGW20260312-3f9a0c1e2d4b5a69"
BLOCK = ORIGINAL + "-01"
ACCOUNT = "012-2102-00012345"
OK, OK2, OK3 = (end_to_end_id("379000000A", 115, "000123", 1, n) for n in (1, 2, 3))
NO_NEWS = ("RCVD", "PDNG", "PART", "RCVC", "RVMC", "RVNM", "RVNA", "RVNC", "RVCM", "ACFW", "BLCK", "CANC", "CPUC")
NEW_CODES = ("bank-report-invalid", "bank-amount-invalid", "bank-account-unexpected", "bank-outcome-conflict")


def reparsed(root: etree._Element) -> etree._Element:
    """As the gateway sees a report: bytes, parsed by the hardened parser."""
    return parse_untrusted(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def pain(**kwargs) -> etree._Element:
    kwargs.setdefault("message_id", "FB-P2-0001")
    kwargs.setdefault("created_at", NOW)
    kwargs.setdefault("original_message_id", ORIGINAL)
    kwargs.setdefault("group_status", None)
    kwargs.setdefault("payment_info_id", BLOCK)
    root = reparsed(build_pain002(**kwargs))
    assert schema_problems(root, PAIN_XSD) == []
    return root


def camt(entries, **kwargs) -> etree._Element:
    kwargs.setdefault("message_id", "FB-C5-0001")
    kwargs.setdefault("created_at", NOW)
    kwargs.setdefault("account", ACCOUNT)
    root = reparsed(build_camt054(entries=entries, **kwargs))
    assert schema_problems(root, CAMT_XSD) == []
    return root


def one(root: etree._Element, path: str, ns: dict) -> etree._Element:
    found = root.xpath(path, namespaces=ns)
    assert len(found) == 1, path
    return found[0]


def refused(read, root, code: str, **kwargs) -> Refusal:
    with pytest.raises(Refusal) as caught:
        read(root, **kwargs)
    assert caught.value.code == code
    return caught.value


def test_new_codes_have_titles() -> None:
    assert set(NEW_CODES) <= set(TITLES)


# --- pain.002 ---------------------------------------------------------------------------------------------------

def test_pain002_header_and_transaction_details() -> None:
    root = pain(group_status="PART", tx_statuses=[
        (OK, "RJCT", "AC04", "帳戶已結清 account closed", 1500, "FB000001"),
        (OK2, "ACSC", None, None, 2000, "FB000002"),
        (OK3, "ACCP", None, None, None, None),
    ])
    report = read_pain002(root)
    assert (report.message_id, report.message_type, report.created_at) == ("FB-P2-0001", PAIN002, NOW)
    assert report.outcomes == (
        BankOutcome(OutcomeKind.REJECTED, ORIGINAL, BLOCK, OK, 1500, "AC04", "帳戶已結清 account closed",
                    "FB000001"),
        BankOutcome(OutcomeKind.PAID, ORIGINAL, BLOCK, OK2, 2000, None, None, "FB000002"),
        BankOutcome(OutcomeKind.ACCEPTED, ORIGINAL, BLOCK, OK3),
    )
    assert report.unmatched == ()


@pytest.mark.parametrize("status", sorted(TRANSACTION_OUTCOMES))
def test_every_transaction_status_with_news(status: str) -> None:
    report = read_pain002(pain(tx_statuses=[(OK, status, None, None, None, None)]))
    assert [o.kind for o in report.outcomes] == [TRANSACTION_OUTCOMES[status]]


def test_status_mapping_is_the_documented_one() -> None:
    kinds = {kind: sorted(s for s, k in TRANSACTION_OUTCOMES.items() if k is kind) for kind in OutcomeKind}
    assert kinds[OutcomeKind.PAID] == ["ACCC", "ACSC"]
    assert kinds[OutcomeKind.REJECTED] == ["RJCT"]
    assert {"ACCP", "ACSP", "ACTC", "ACWC", "ACFC"} <= set(kinds[OutcomeKind.ACCEPTED])
    assert "PART" not in GROUP_OUTCOMES and "PART" not in TRANSACTION_OUTCOMES


@pytest.mark.parametrize("status", NO_NEWS)
def test_statuses_without_news_are_skipped(status: str) -> None:
    """Pending, received, partial and Verification-of-Payee statuses decide nothing about a payment."""
    report = read_pain002(pain(group_status=status, tx_statuses=[(OK, status, "NARR", "x", 10, "R")],
                               payment_statuses={"G-01": (status, None, None)}))
    assert report.outcomes == () and report.unmatched == ()


def test_whole_message_rejected() -> None:
    """AM10 (control sum wrong) rejects the file: one message-scope outcome with the bank's reason."""
    report = read_pain002(pain(group_status="RJCT", group_reason="AM10", group_reason_text="CtrlSum 1500 != 1600"))
    assert report.outcomes == (BankOutcome(OutcomeKind.REJECTED, ORIGINAL, reason_code="AM10",
                                           reason_text="CtrlSum 1500 != 1600"),)


def test_payment_group_rejected() -> None:
    report = read_pain002(pain(group_status="PART", payment_statuses={
        f"{ORIGINAL}-01": ("ACCP", None, None), f"{ORIGINAL}-02": ("RJCT", "DT01", "execution date is a holiday")}))
    assert report.outcomes == (
        BankOutcome(OutcomeKind.ACCEPTED, ORIGINAL, f"{ORIGINAL}-01"),
        BankOutcome(OutcomeKind.REJECTED, ORIGINAL, f"{ORIGINAL}-02", reason_code="DT01",
                    reason_text="execution date is a holiday"),
    )


def test_transaction_details_come_first_then_groups_then_the_message() -> None:
    report = read_pain002(pain(group_status="ACCP", payment_statuses={"G-01": ("ACTC", None, None)},
                               tx_statuses=[TxStatus(OK, "RJCT", "AC01", payment_info_id="G-01")]))
    assert [(o.end_to_end_id, o.original_payment_info_id, o.kind) for o in report.outcomes] == [
        (OK, "G-01", OutcomeKind.REJECTED), (None, "G-01", OutcomeKind.ACCEPTED), (None, None, OutcomeKind.ACCEPTED)]


def settle(report: BankReport, lines: dict[str, str]) -> tuple[dict[str, LineState], dict[str, str | None], int]:
    """A consumer in miniature (as gateway/bank/settlement.py): each outcome, in order, on the lines in its
    scope; ``lines`` maps EndToEndId -> PmtInfId, all in message ORIGINAL. Returns states, the reason each
    line's first move carried, and how many conflicts were flagged."""
    states = dict.fromkeys(lines, LineState.PENDING)
    reasons: dict[str, str | None] = {}
    conflicts = 0
    for outcome in report.outcomes:
        if outcome.end_to_end_id:
            scope = [outcome.end_to_end_id]
        elif outcome.original_payment_info_id:
            scope = [e for e, block in lines.items() if block == outcome.original_payment_info_id]
        else:
            scope = list(lines) if outcome.original_message_id == ORIGINAL else []
        for e2e in scope:
            try:
                after = apply_outcome(states[e2e], outcome.kind)
            except Refusal:
                conflicts += 1
                continue
            if after is not None:
                reasons.setdefault(e2e, outcome.reason_code)
                states[e2e] = after
    return states, reasons, conflicts


def test_a_transaction_detail_wins_over_its_group() -> None:
    lines = {OK: "G-01", OK2: "G-01", OK3: "G-02"}
    # Accepted as a whole, one payment rejected.
    states, reasons, conflicts = settle(read_pain002(pain(group_status="ACCP", tx_statuses=[
        TxStatus(OK, "RJCT", "AC01", payment_info_id="G-01")])), lines)
    assert states == {OK: LineState.RETURNED, OK2: LineState.ACCEPTED, OK3: LineState.ACCEPTED}
    assert reasons[OK] == "AC01" and conflicts == 0
    # Rejected as a whole, with one payment's own reason: the payment keeps its own reason.
    states, reasons, conflicts = settle(read_pain002(pain(group_status="RJCT", group_reason="FF01", tx_statuses=[
        TxStatus(OK, "RJCT", "AC04", payment_info_id="G-01")])), lines)
    assert set(states.values()) == {LineState.RETURNED} and conflicts == 0
    assert reasons == {OK: "AC04", OK2: "FF01", OK3: "FF01"}
    # A payment group rejected, the rest accepted.
    states, _reasons, _ = settle(read_pain002(pain(group_status="PART", payment_statuses={
        "G-02": ("RJCT", "AM04", None), "G-01": ("ACSP", None, None)})), lines)
    assert states == {OK: LineState.ACCEPTED, OK2: LineState.ACCEPTED, OK3: LineState.RETURNED}
    # Settled as a whole but one payment rejected: the payment's detail stands, and the contradiction is flagged.
    states, _reasons, conflicts = settle(read_pain002(pain(group_status="ACSC", tx_statuses=[
        TxStatus(OK, "RJCT", "AC01", payment_info_id="G-01")])), lines)
    assert states == {OK: LineState.RETURNED, OK2: LineState.PAID, OK3: LineState.PAID} and conflicts == 1


def test_missing_or_not_provided_end_to_end_id_is_unmatched() -> None:
    report = read_pain002(pain(tx_statuses=[(None, "RJCT", "AC01", None, 500, "R1"),
                                            ("NOTPROVIDED", "ACSC", None, None, None, None),
                                            (OK, "ACSC", None, None, None, None)]))
    assert [o.end_to_end_id for o in report.outcomes] == [OK]
    assert report.unmatched == (
        UnmatchedItem("no-end-to-end-id", None, OutcomeKind.REJECTED, 500, None, "AC01", "R1"),
        UnmatchedItem("no-end-to-end-id", "NOTPROVIDED", OutcomeKind.PAID),
    )


def test_a_foreign_end_to_end_id_is_an_outcome_for_the_consumer_to_flag() -> None:
    """Not ours but present: the consumer finds no line and records it as unknown (bank-reference-unknown)."""
    report = read_pain002(pain(tx_statuses=[("SOMEONE-ELSES-REF", "ACSC", None, None, None, None)]))
    assert report.outcomes[0].end_to_end_id == "SOMEONE-ELSES-REF"


def test_reasons_join_lines_and_extra_codes_and_are_capped() -> None:
    root = pain(tx_statuses=[(OK, "RJCT", "AC01", "first", None, None)])
    tx = one(root, "//p:TxInfAndSts", P)
    extra = copy.deepcopy(one(tx, "p:StsRsnInf", P))
    one(extra, "p:Rsn/p:Cd", P).text = "BE01"
    one(extra, "p:AddtlInf", P).text = "  second   line "
    one(tx, "p:StsRsnInf", P).addnext(extra)
    outcome = read_pain002(root).outcomes[0]
    assert (outcome.reason_code, outcome.reason_text) == ("AC01", "first BE01 second line")
    long_text = " ".join(["word"] * 300)
    outcome = read_pain002(pain(tx_statuses=[(OK, "RJCT", None, long_text, None, None)])).outcomes[0]
    assert len(outcome.reason_text) == MAX_REASON_TEXT and outcome.reason_text.endswith("…")


def test_proprietary_reason_goes_into_the_text() -> None:
    root = pain(tx_statuses=[(OK, "RJCT", "AC01", None, None, None)])
    code = one(root, "//p:Rsn/p:Cd", P)
    code.tag = f"{{{PAIN002_NS}}}Prtry"
    code.text = "FUBON-E042"
    assert schema_problems(root, PAIN_XSD) == []
    outcome = read_pain002(root).outcomes[0]
    assert (outcome.reason_code, outcome.reason_text) == (None, "FUBON-E042")


@pytest.mark.parametrize(("text", "expected"), [
    ("1500", 1500), ("1500.00", 1500), ("+0001500.0", 1500), ("999999999999999999", 999999999999999999)])
def test_whole_amounts(text: str, expected: int) -> None:
    root = pain(tx_statuses=[(OK, "ACSC", None, None, 1, None)])
    one(root, "//p:InstdAmt", P).text = text
    assert schema_problems(root, PAIN_XSD) == []
    assert read_pain002(root).outcomes[0].amount == expected


@pytest.mark.parametrize(("currency", "text", "says"), [
    ("TWD", "1500.50", "not a whole dollar"), ("TWD", "0", "not above zero"), ("TWD", "0.000", "not above zero"),
    ("EUR", "100", "not New Taiwan dollars"), ("USD", "1500", "not New Taiwan dollars")])
def test_amounts_that_are_not_whole_nt_dollars_are_refused(currency: str, text: str, says: str) -> None:
    root = pain(tx_statuses=[(OK, "ACSC", None, None, 1, None)])
    amount = one(root, "//p:InstdAmt", P)
    amount.text = text
    amount.set("Ccy", currency)
    assert schema_problems(root, PAIN_XSD) == []
    refusal = refused(read_pain002, root, "bank-amount-invalid")
    assert says in refusal.message and refusal.problems[0].path.endswith("/InstdAmt")


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-12T15:30:00", NOW),
    ("2026-03-12T07:30:00Z", NOW),
    ("2026-03-12T08:30:00.123456789+01:00", NOW.replace(microsecond=123456)),
    ("2026-03-11T24:00:00+08:00", datetime.datetime(2026, 3, 12, tzinfo=TAIPEI)),
])
def test_creation_times(text: str, expected: datetime.datetime) -> None:
    root = pain()
    one(root, "//p:GrpHdr/p:CreDtTm", P).text = text
    created = read_pain002(root).created_at
    assert created == expected and created.tzinfo is not None


@pytest.mark.parametrize("text", ["10000-01-01T00:00:00", "-0001-01-01T00:00:00", "2026-02-30T00:00:00",
                                  "2026-03-12T24:00:01", "2026-03-12", "yesterday"])
def test_creation_times_we_cannot_represent_are_refused(text: str) -> None:
    root = pain()
    one(root, "//p:GrpHdr/p:CreDtTm", P).text = text
    refused(read_pain002, root, "bank-report-invalid")


def test_the_wrong_document_is_refused() -> None:
    refused(read_pain002, camt([]), "bank-report-invalid")
    refused(read_camt054, pain(), "bank-report-invalid")
    refused(read_pain002, etree.Comment("x"), "bank-report-invalid")
    refused(read_pain002, etree.fromstring(f'<Document xmlns="{PAIN002_NS}"/>'), "bank-report-invalid")


# --- camt.054 ---------------------------------------------------------------------------------------------------

def test_camt054_debit_is_paid_and_credit_with_return_is_returned() -> None:
    root = camt([(OK, 1500, "DBIT", TODAY, "FB100", None),
                 Booking(OK2, 2000, "CRDT", TODAY, "FB101", "AC04", "account closed 帳戶結清")])
    report = read_camt054(root, treasury_account=ACCOUNT)
    assert (report.message_id, report.message_type, report.created_at) == ("FB-C5-0001", CAMT054, NOW)
    assert report.outcomes == (
        BankOutcome(OutcomeKind.PAID, end_to_end_id=OK, amount=1500, bank_reference="FB100", booked_on=TODAY),
        BankOutcome(OutcomeKind.RETURNED, end_to_end_id=OK2, amount=2000, reason_code="AC04",
                    reason_text="account closed 帳戶結清", bank_reference="FB101", booked_on=TODAY),
    )
    assert report.unmatched == ()


def test_camt054_bookings_that_are_not_our_outcomes_are_listed() -> None:
    root = camt([(OK, 700, "CRDT", TODAY, "FB1", None),  # money in, not a return
                 (OK2, 800, "DBIT", TODAY, "FB2", "AC01"),  # a debit returning money someone sent us
                 (None, 900, "DBIT", TODAY, "FB3", None),
                 ("NOTPROVIDED", 950, "CRDT", TODAY, "FB4", "MS03")])
    report = read_camt054(root)
    assert report.outcomes == ()
    assert report.unmatched == (
        UnmatchedItem("credit-without-return", OK, None, 700, "CRDT", None, "FB1", TODAY),
        UnmatchedItem("debit-with-return", OK2, None, 800, "DBIT", "AC01", "FB2", TODAY),
        UnmatchedItem("no-end-to-end-id", None, OutcomeKind.PAID, 900, "DBIT", None, "FB3", TODAY),
        UnmatchedItem("no-end-to-end-id", "NOTPROVIDED", OutcomeKind.RETURNED, 950, "CRDT", "MS03", "FB4", TODAY),
    )


def test_camt054_pending_entries_are_not_bookings() -> None:
    root = camt([(OK, 1500, "DBIT", TODAY, "FB1", None), (OK2, 1600, "DBIT", TODAY, "FB2", None)])
    one(root, "(//c:Ntry)[1]/c:Sts/c:Cd", C).text = "PDNG"
    assert schema_problems(root, CAMT_XSD) == []
    assert [o.end_to_end_id for o in read_camt054(root).outcomes] == [OK2]


def test_camt054_reversals_are_for_a_person() -> None:
    root = camt([(OK, 1500, "CRDT", TODAY, "FB1", "AC01")])
    one(root, "//c:Ntry/c:CdtDbtInd", C).addnext(etree.Element(f"{{{CAMT054_NS}}}RvslInd"))
    one(root, "//c:RvslInd", C).text = "true"
    assert schema_problems(root, CAMT_XSD) == []
    report = read_camt054(root)
    assert report.outcomes == () and [u.why for u in report.unmatched] == ["reversal"]


@pytest.mark.parametrize("detail", ["TxAmt", "InstdAmt"])
def test_camt054_batch_booking_and_amount_details(detail: str) -> None:
    """One debit entry for a batch: each transaction is its own outcome; an amount may come from AmtDtls."""
    root = camt([(OK, 1500, "DBIT", TODAY, "FB1", None), (OK2, 2500, "DBIT", TODAY, "FB2", None)])
    entries = root.xpath("//c:Ntry", namespaces=C)
    second_tx = one(entries[1], ".//c:TxDtls", C)
    one(entries[0], "c:NtryDtls", C).append(second_tx)
    entries[1].getparent().remove(entries[1])
    one(entries[0], "c:Amt", C).text = "4000"
    amount = one(second_tx, "c:Amt", C)
    details = etree.Element(f"{{{CAMT054_NS}}}AmtDtls")
    etree.SubElement(etree.SubElement(details, f"{{{CAMT054_NS}}}{detail}"), f"{{{CAMT054_NS}}}Amt",
                     Ccy="TWD").text = "2500"
    one(second_tx, "c:CdtDbtInd", C).addnext(details)
    second_tx.remove(amount)
    assert schema_problems(root, CAMT_XSD) == []
    report = read_camt054(root)
    assert [(o.end_to_end_id, o.amount, o.kind) for o in report.outcomes] == [
        (OK, 1500, OutcomeKind.PAID), (OK2, 2500, OutcomeKind.PAID)]


def test_camt054_single_transaction_without_amount_takes_the_entry_amount_and_booking_time() -> None:
    root = camt([(OK, 1500, "DBIT", TODAY, "FB1", None)])
    tx = one(root, "//c:TxDtls", C)
    tx.remove(one(tx, "c:Amt", C))
    day = one(root, "//c:BookgDt/c:Dt", C)
    day.tag = f"{{{CAMT054_NS}}}DtTm"
    day.text = "2026-03-12T17:00:00Z"  # 01:00 on the 13th in Taipei
    assert schema_problems(root, CAMT_XSD) == []
    outcome = read_camt054(root).outcomes[0]
    assert (outcome.amount, outcome.booked_on) == (1500, datetime.date(2026, 3, 13))


def test_camt054_entry_without_details_is_unmatched() -> None:
    root = camt([(OK, 1500, "DBIT", TODAY, "FB1", None)])
    entry = one(root, "//c:Ntry", C)
    entry.remove(one(entry, "c:NtryDtls", C))
    assert read_camt054(root).unmatched == (
        UnmatchedItem("no-end-to-end-id", None, None, 1500, "DBIT", None, "FB1", TODAY),)


def test_camt054_for_another_account_or_currency_is_refused() -> None:
    root = camt([(OK, 1500, "DBIT", TODAY, "FB1", None)], account="SOMEONE-ELSE")
    refused(read_camt054, root, "bank-account-unexpected", treasury_account=ACCOUNT)
    assert read_camt054(root).outcomes  # without the check, it reads
    one(root, "//c:Acct/c:Ccy", C).text = "EUR"
    refused(read_camt054, root, "bank-amount-invalid")


def test_camt054_unknown_debit_credit_indicator_is_refused() -> None:
    """The XSD allows only CRDT and DBIT; an unvalidated document with anything else is refused, not guessed."""
    root = camt([(OK, 1500, "DBIT", TODAY, "FB1", None)])
    one(root, "//c:TxDtls/c:CdtDbtInd", C).text = "BOTH"
    assert refused(read_camt054, root, "bank-report-invalid").problems[0].path.endswith("/TxDtls/CdtDbtInd")


def test_camt054_fractional_amount_is_refused() -> None:
    root = camt([(OK, 1500, "DBIT", TODAY, "FB1", None)])
    one(root, "//c:TxDtls/c:Amt", C).text = "1500.4"
    assert schema_problems(root, CAMT_XSD) == []
    refused(read_camt054, root, "bank-amount-invalid")


# --- round trips ------------------------------------------------------------------------------------------------

ref_text = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-", min_size=1, max_size=35)
our_ids = st.builds(end_to_end_id, st.sampled_from(["379000000A", "379000001A", "3790000029"]),
                    st.integers(100, 999), st.from_regex(r"[0-9A-Z]{1,12}", fullmatch=True),
                    st.integers(1, 999), st.integers(1, 9999))
any_ids = st.one_of(our_ids, our_ids, our_ids, ref_text, st.none(), st.just("NOTPROVIDED"))
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.,:-退匯帳戶", min_size=1, max_size=25)
texts = st.one_of(st.none(), st.lists(words, max_size=12).map(" ".join))
reason_codes = st.one_of(st.none(), st.sampled_from(sorted(code_set(STATUS_REASONS))))
return_codes = st.one_of(st.none(), st.sampled_from(sorted(code_set(RETURN_REASONS))))
amounts = st.integers(1, 10**15)
block_ids = st.sampled_from([None, f"{ORIGINAL}-01", f"{ORIGINAL}-02", f"{ORIGINAL}-03"])
tx_codes = st.sampled_from(sorted(TRANSACTION_OUTCOMES) + list(NO_NEWS))
group_codes = st.one_of(st.none(), st.sampled_from(sorted(GROUP_OUTCOMES) + ["PART", "RCVD", "PDNG"]))

tx_statuses = st.builds(TxStatus, any_ids, tx_codes, reason_codes, texts, st.none() | amounts,
                        st.none() | ref_text, block_ids)
payment_statuses = st.dictionaries(st.sampled_from([f"{ORIGINAL}-01", f"{ORIGINAL}-02"]),
                                   st.tuples(group_codes, reason_codes, texts), max_size=2)


def _text(value: str | None) -> str | None:
    return " ".join((value or "").split()) or None


def expected_pain(txs, group_status, group_reason, group_text, blocks):
    """What a pain.002 built from these inputs must read as, worked out from the inputs alone."""
    order = list(blocks) + [b for b in dict.fromkeys(t.payment_info_id or BLOCK for t in txs) if b not in blocks]
    details, unmatched = [], []
    for block in order:
        for tx in (t for t in txs if (t.payment_info_id or BLOCK) == block):
            kind = TRANSACTION_OUTCOMES.get(tx.status)
            if kind is None:
                continue
            if tx.end_to_end_id in (None, "NOTPROVIDED"):
                unmatched.append(UnmatchedItem("no-end-to-end-id", tx.end_to_end_id, kind, tx.amount, None,
                                               tx.reason_code, tx.bank_reference))
            else:
                details.append(BankOutcome(kind, ORIGINAL, block, tx.end_to_end_id, tx.amount, tx.reason_code,
                                           _text(tx.reason_text), tx.bank_reference))
    groups = [BankOutcome(GROUP_OUTCOMES[status], ORIGINAL, block, reason_code=code, reason_text=_text(text))
              for block, (status, code, text) in blocks.items() if status in GROUP_OUTCOMES]
    whole = [BankOutcome(GROUP_OUTCOMES[group_status], ORIGINAL, reason_code=group_reason,
                         reason_text=_text(group_text))] if group_status in GROUP_OUTCOMES else []
    return tuple(details + groups + whole), tuple(unmatched)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tx_statuses, max_size=12), group_codes, reason_codes, texts, payment_statuses)
def test_pain002_round_trip(txs, group_status, group_reason, group_text, blocks) -> None:
    root = pain(tx_statuses=txs, group_status=group_status, group_reason=group_reason,
                group_reason_text=group_text, payment_statuses=blocks)
    report = read_pain002(root)
    assert (report.outcomes, report.unmatched) == expected_pain(txs, group_status, group_reason, group_text, blocks)


bookings = st.builds(Booking, any_ids, amounts, st.sampled_from(["DBIT", "CRDT"]),
                     st.dates(datetime.date(2000, 1, 1), datetime.date(2099, 12, 31)), st.none() | ref_text,
                     return_codes, texts, message_id=st.none() | ref_text, payment_info_id=st.none() | ref_text)


def expected_camt(entries):
    outcomes, unmatched = [], []
    for b in entries:
        is_return = b.return_reason is not None or bool(_text(b.return_text))
        text = _text(b.return_text) if is_return else None
        reference = b.bank_reference
        if b.credit_debit == "DBIT":
            kind, why = (None, "debit-with-return") if is_return else (OutcomeKind.PAID, None)
        else:
            kind, why = (OutcomeKind.RETURNED, None) if is_return else (None, "credit-without-return")
        if why is None and b.end_to_end_id in (None, "NOTPROVIDED"):
            why = "no-end-to-end-id"
        if why:
            unmatched.append(UnmatchedItem(why, b.end_to_end_id, kind, b.amount, b.credit_debit,
                                           b.return_reason, reference, b.booked_on))
        else:
            outcomes.append(BankOutcome(kind, b.message_id, b.payment_info_id, end_to_end_id=b.end_to_end_id,
                                        amount=b.amount, reason_code=b.return_reason, reason_text=text,
                                        bank_reference=reference, booked_on=b.booked_on))
    return tuple(outcomes), tuple(unmatched)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bookings, max_size=12))
def test_camt054_round_trip(entries) -> None:
    report = read_camt054(camt(entries), treasury_account=ACCOUNT)
    assert (report.outcomes, report.unmatched) == expected_camt(entries)


@given(st.lists(words, max_size=40).map(" ".join))
def test_info_lines_fit_and_join_back(text) -> None:
    lines = info_lines(text)
    assert all(0 < len(line) <= 105 for line in lines)
    assert " ".join(lines) == " ".join(text.split())


def test_writers_refuse_programming_mistakes() -> None:
    with pytest.raises(ValueError):
        build_camt054(message_id="X", created_at=NOW, account=ACCOUNT, entries=[(OK, 0, "DBIT", TODAY, None, None)])
    with pytest.raises(ValueError):
        build_camt054(message_id="X", created_at=NOW, account=ACCOUNT, entries=[(OK, 1, "BOTH", TODAY, None, None)])
    with pytest.raises(ValueError):
        build_pain002(message_id="X", created_at=NOW.replace(tzinfo=None), original_message_id=ORIGINAL,
                      group_status=None)
    with pytest.raises(ValueError):
        build_pain002(message_id="X", created_at=NOW, original_message_id=ORIGINAL, group_status=None,
                      tx_statuses=[(OK, "ACSC", None, None, 1.5, None)])


# --- the real third-party samples -------------------------------------------------------------------------------

def sample(name: str) -> etree._Element:
    return parse_untrusted((SAMPLES / name).read_bytes())


SAMPLE_FILES = sorted(p.name for p in SAMPLES.glob("*.xml")
                      if p.name.startswith(("pain.002.001.10__", "camt.054.001.08__")))


def test_the_samples_are_there_with_their_sources() -> None:
    assert len(SAMPLE_FILES) == 5
    sources = (SAMPLES / "SOURCES.md").read_text("utf-8")
    assert all(name in sources for name in SAMPLE_FILES)


def test_the_samples_against_the_official_schemas() -> None:
    for name in SAMPLE_FILES:
        problems = schema_problems(sample(name), PAIN_XSD if name.startswith("pain") else CAMT_XSD)
        if name == "pain.002.001.10__hbci4java__vop-RVNM-name-mismatch.xml":
            assert len(problems) == 1 and "BICFI" in problems[0].message  # the anonymised BIC, nothing else
        else:
            assert problems == [], name


def test_verification_of_payee_match_carries_no_outcome() -> None:
    """HypoVereinsbank's VoP answer (RCVC): the name matched, nothing about the payment is decided."""
    report = read_pain002(sample("pain.002.001.10__hbci4java__vop-RCVC-match-HYVEDEMM.xml"))
    assert report.message_id == "dc6f9da5b431-4956-8e23-1bef7d23f948"
    assert report.created_at == datetime.datetime(2025, 11, 2, 18, 33, 13, 303000,
                                                  tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert report.outcomes == () and report.unmatched == ()


def test_verification_of_payee_mismatch_carries_no_outcome() -> None:
    """RVNM (name mismatch) asks the payer; its time has no offset, so it reads as Taipei time."""
    root = sample("pain.002.001.10__hbci4java__vop-RVNM-name-mismatch.xml")
    report = read_pain002(root)
    assert report.outcomes == () and report.unmatched == ()
    assert report.created_at == datetime.datetime(2025, 10, 20, 21, 33, 51, 999511, tzinfo=TAIPEI)
    # Had the bank rejected it instead, the NOTPROVIDED reference could not name a payment: unmatched.
    one(root, "//p:TxSts", P).text = "RJCT"
    report = read_pain002(root)
    assert report.outcomes == ()
    assert report.unmatched == (UnmatchedItem("no-end-to-end-id", "NOTPROVIDED", OutcomeKind.REJECTED),)


@pytest.mark.parametrize(("name", "says"), [
    ("camt.054.001.08__dvbern-iso20022__postfinance-credit-2020.xml", "'CHF'"),
    ("camt.054.001.08__dvbern-iso20022__postfinance-credit-2022.xml", "'CHF'"),
    ("camt.054.001.08__genkgo-camt__full-example.xml", "'SEK'"),
])
def test_foreign_currency_notifications_are_refused(name: str, says: str) -> None:
    refusal = refused(read_camt054, sample(name), "bank-amount-invalid")
    assert says in refusal.message and refusal.problems[0].line is not None


def in_nt_dollars(root: etree._Element) -> etree._Element:
    """The sample as if its account were kept in NT$: every currency TWD, every amount rounded up to a whole one."""
    for node in root.iter():
        if node.get("Ccy"):
            node.set("Ccy", "TWD")
            node.text = str(math.ceil(Decimal(node.text)))
    for node in root.xpath("//c:Acct/c:Ccy", namespaces=C):
        node.text = "TWD"
    return root


def test_postfinance_credits_in_nt_dollars_are_money_in_not_outcomes() -> None:
    """Two credits from a payer (one with a foreign EndToEndId, one with none): not about our payments."""
    root = in_nt_dollars(sample("camt.054.001.08__dvbern-iso20022__postfinance-credit-2020.xml"))
    assert schema_problems(root, CAMT_XSD) == []
    report = read_camt054(root)
    assert report.message_id == "20200618375204295372463" and report.outcomes == ()
    assert report.unmatched == (
        UnmatchedItem("credit-without-return", "1006265-aic5dL-75dzf3jk9-cf2d5e9", None, 779, "CRDT", None,
                      "2000000000000000", datetime.date(2020, 6, 18)),
        UnmatchedItem("credit-without-return", None, None, 914, "CRDT", None, "3000000000000000",
                      datetime.date(2020, 6, 18)),
    )
    root = in_nt_dollars(sample("camt.054.001.08__dvbern-iso20022__postfinance-credit-2022.xml"))
    assert [(u.why, u.end_to_end_id, u.amount) for u in read_camt054(root).unmatched] == [
        ("credit-without-return", "NOTPROVIDED", 523)]


def test_genkgo_full_example_in_nt_dollars() -> None:
    """A debit entry whose three transactions each say CRDT (the transaction's indicator wins) and carry no
    return information: three unmatched credits, each with its own amount."""
    root = in_nt_dollars(sample("camt.054.001.08__genkgo-camt__full-example.xml"))
    assert schema_problems(root, CAMT_XSD) == []
    report = read_camt054(root)
    assert report.outcomes == ()
    assert [(u.why, u.end_to_end_id, u.amount, u.bank_reference) for u in report.unmatched] == [
        ("credit-without-return", "UXC06170000006PI00001EE00001", 4, "ACSR160617103200001"),
        ("credit-without-return", "UXC06170000006PI00001EE00002", 4, "ACSR160617103200001"),
        ("credit-without-return", "UXC06170000006PI00001EE00002", 4, "ACSR160617103200001"),
    ]
    # Turn the transactions into debits of the treasury account: three payments settled.
    for node in root.xpath("//c:TxDtls/c:CdtDbtInd", namespaces=C):
        node.text = "DBIT"
    assert [(o.kind, o.end_to_end_id) for o in read_camt054(root).outcomes] == [
        (OutcomeKind.PAID, "UXC06170000006PI00001EE00001"), (OutcomeKind.PAID, "UXC06170000006PI00001EE00002"),
        (OutcomeKind.PAID, "UXC06170000006PI00001EE00002")]


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_every_sample_through_either_reader_gives_a_report_or_a_refusal(name: str) -> None:
    for read in (read_pain002, read_camt054):
        try:
            assert isinstance(read(sample(name)), BankReport)
        except Refusal as refusal:
            assert refusal.code in NEW_CODES


# --- hostile: mutated documents ---------------------------------------------------------------------------------

xml_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\n "), max_size=40)
decimal_text = st.from_regex(r"[+]?[0-9]{0,22}(\.[0-9]{0,7})?", fullmatch=True)
date_text = st.from_regex(r"-?[0-9]{4,5}-[0-9]{2}-[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})?", fullmatch=True)
date_time_text = st.from_regex(r"-?[0-9]{4,5}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,12})?"
                               r"(Z|[+-][0-9]{2}:[0-9]{2})?", fullmatch=True)
code_text = st.sampled_from(sorted(TRANSACTION_OUTCOMES) + list(NO_NEWS) + ["BOOK", "PDNG", "INFO", "X"]) | \
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=4)
VALUES_BY_NAME = {
    "Amt": decimal_text, "InstdAmt": decimal_text, "CreDtTm": date_time_text, "DtTm": date_time_text,
    "Dt": date_text, "TxSts": code_text, "GrpSts": code_text, "PmtInfSts": code_text, "Cd": code_text,
    "CdtDbtInd": st.sampled_from(["CRDT", "DBIT", "BOTH", ""]), "RvslInd": st.sampled_from(["true", "false", "1", "0"]),
    "OrgnlEndToEndId": any_ids.map(lambda v: v or " "), "EndToEndId": any_ids.map(lambda v: v or " "),
    "Ccy": st.sampled_from(["TWD", "EUR", "twd"]),
}


@st.composite
def mutated(draw) -> tuple[etree._Element, str]:
    """A built pain.002 or camt.054 with a few random edits: a value of the element's own type (which often still
    validates), any text, an attribute, a removed or repeated element, or a comment inside a value."""
    if draw(st.booleans()):
        root = build_pain002(message_id="M", created_at=NOW, original_message_id=ORIGINAL, payment_info_id=BLOCK,
                             group_status=draw(group_codes), tx_statuses=draw(st.lists(tx_statuses, max_size=4)),
                             payment_statuses=draw(payment_statuses))
        xsd = PAIN_XSD
    else:
        root = build_camt054(message_id="M", created_at=NOW, account=ACCOUNT,
                             entries=draw(st.lists(bookings, min_size=1, max_size=3)))
        xsd = CAMT_XSD
    for _ in range(draw(st.integers(1, 4))):
        nodes = [n for n in root.iter() if isinstance(n.tag, str)]
        node = draw(st.sampled_from(nodes))
        name = etree.QName(node).localname
        action = draw(st.sampled_from(["typed", "typed", "text", "attribute", "remove", "repeat", "comment"]))
        if action == "typed" and name in VALUES_BY_NAME:
            node.text = draw(VALUES_BY_NAME[name])
        elif action == "text":
            node.text = draw(xml_text)
        elif action == "attribute":
            node.set("Ccy", draw(VALUES_BY_NAME["Ccy"]))
        elif action == "remove" and node.getparent() is not None:
            node.getparent().remove(node)
        elif action == "repeat" and node.getparent() is not None:
            node.addnext(copy.deepcopy(node))
        elif action == "comment" and len(node) == 0:
            node.insert(0, etree.Comment("c"))
    return reparsed(root), xsd


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_documents_give_a_report_or_a_refusal_never_anything_else(case) -> None:
    root, xsd = case
    event("schema-valid" if schema_problems(root, xsd) == [] else "schema-invalid")
    for read in (read_pain002, read_camt054):
        try:
            report = read(root)
        except Refusal as refusal:
            assert refusal.code in NEW_CODES
            event(f"refused {refusal.code}")
            continue
        assert isinstance(report, BankReport)
        assert all(isinstance(o.amount, (int, type(None))) for o in report.outcomes)


# --- size ---------------------------------------------------------------------------------------------------------

def test_a_report_on_a_full_transfer_message_reads_in_linear_time() -> None:
    """A pain.002 answering a transfer message of 5,000 payments (the most one message carries) takes about ten
    times one of 500, whatever the machine's speed: the ratio (best of three each, so a busy machine's pauses
    do not count) catches an accidentally quadratic reader, which would take a hundred times."""
    def report_of(count: int) -> etree._Element:
        statuses = [(end_to_end_id("379000000A", 115, "000123", 1 + n // 9999, 1 + n % 9999), "ACSC", None, None,
                     1000 + n, f"FB{n:08d}") for n in range(count)]
        return pain(group_status="ACSC", tx_statuses=statuses)

    def best(root: etree._Element) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            read_pain002(root)
            times.append(time.perf_counter() - started)
        return min(times)

    small, full = report_of(500), report_of(5000)
    assert len(read_pain002(full).outcomes) == 5001
    assert best(full) / best(small) < 30
