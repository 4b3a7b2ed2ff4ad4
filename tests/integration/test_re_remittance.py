"""退匯 and re-remittance through the real service: a voucher released over HTTPS is paid out by the bank
exchange, the bank returns a payment (wrong account), the agency corrects the account in the next revision,
which goes through the four signed stages and the treasury again (reserving the money again), and is paid.

The bank exchange runs in the test process on the served gateway's store; the bank is the simulator.
"""

from __future__ import annotations

import dataclasses
import datetime
import zlib
from pathlib import Path

from adapters.bank.exchange import BankBatcher, ReportIntake
from adapters.storage.factory import open_store
from gateway.bank.pain001 import TAIPEI_TREASURY
from gateway.bank.payments import LineState
from gateway.bank.settlement import SigningIdentity
from gateway.reconciliation import reconcile
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.bank import SimulatedBank
from simulators.pki.layout import load_cert, load_key
from simulators.voucher_factory import VoucherFactory

from ..conftest import AGENCY_A, NOW
from .test_https_approvals import AMPLE, budget, call, person, release, served, status_of, submitted  # noqa: F401


def pay_out(store, pki_dir: Path, *, return_rate: float = 0.0, returns=None) -> SimulatedBank:
    """Batch what is treasury-accepted, let the bank book it, apply its reports."""
    now = lambda: datetime.datetime.now(datetime.timezone.utc)  # noqa: E731
    gateway_cert, bank_cert = load_cert(pki_dir / "gateway/cert.pem"), load_cert(pki_dir / "bank/cert.pem")
    signer = SigningIdentity(load_key(pki_dir / "gateway/key.pem"), gateway_cert, TAIPEI_TREASURY)
    BankBatcher(store, signer, clock=now).batch_all()
    bank = SimulatedBank(gateway_cert, load_key(pki_dir / "bank/key.pem"), bank_cert, now, return_rate=return_rate)
    if returns is not None:
        bank.returns = returns
    intake = ReportIntake(store, bank_cert, treasury_account=TAIPEI_TREASURY.account_number, clock=now)
    for message in store.unsent_messages():
        for _, report in bank.receive(message.body):
            assert intake.handle(report) == "ack"
        store.mark_sent(message.message_id, now())
    return bank


def test_a_returned_payment_is_corrected_in_the_next_revision_and_paid(served, factory, tmp_path):
    voucher, voucher_file = submitted(served, factory, tmp_path)
    release(served, tmp_path, voucher, voucher_file)
    assert status_of(served, voucher.voucher_id)["status"] == "treasury-accepted"
    store = open_store(served.store)
    try:
        pay_out(store, served.pki_dir, return_rate=1.0)  # the bank returns every line: wrong accounts
        lines = store.payments_of(voucher.voucher_id, 1)
        assert {row.state for row in lines} == {LineState.RETURNED} and all(row.reason_code for row in lines)
        state = status_of(served, voucher.voucher_id)
        assert state["status"] == "returned"
        shown = state["payments"]  # the agency sees each line's 退匯 with its ISO reason in words
        assert [(p["line"], p["state"]) for p in shown] == [(row.line_number, "returned") for row in lines]
        assert all(p["reason"].startswith(p["reason_code"] + " ") and p["bank_reference"] for p in shown)
        assert budget(served, AMPLE)["reserved"] >= 0
        spent_before = budget(served, AMPLE)["consumed"]

        # the agency corrects the accounts and sends revision 2, which re-remits the returned lines
        corrected = factory.correction(voucher, lines=tuple(
            line._replace(account_number=str(int(line.account_number) + 1)) for line in voucher.lines))
        who = person(served, "preparer")
        data = sign_document(voucher_to_xml(corrected), load_key(who / "key.pem"), load_cert(who / "cert.pem"), NOW)
        assert call(served, "POST", "/v1/vouchers", data)[0] == 202
        corrected_file = tmp_path / "corrected.xml"
        corrected_file.write_bytes(data)
        release(served, tmp_path, corrected, corrected_file)
        state = status_of(served, voucher.voucher_id)
        assert (state["revision"], state["status"]) == (2, "treasury-accepted")
        assert store.get(voucher.voucher_id, 1).status == "returned"  # the returned revision stays as it was

        pay_out(store, served.pki_dir, return_rate=0.0)
        assert {row.state for row in store.payments_of(voucher.voucher_id, 2)} == {LineState.PAID}
        assert status_of(served, voucher.voucher_id)["status"] == "paid"
        assert budget(served, AMPLE)["consumed"] == spent_before + corrected.total_amount
        result = reconcile(store.reconciliation_facts())
        assert result.ok, result.discrepancy
    finally:
        store.close()


def test_a_voucher_that_was_paid_cannot_be_corrected(served, factory, tmp_path):
    voucher, voucher_file = submitted(served, factory, tmp_path)
    release(served, tmp_path, voucher, voucher_file)
    store = open_store(served.store)
    try:
        pay_out(store, served.pki_dir, return_rate=0.0)
    finally:
        store.close()
    assert status_of(served, voucher.voucher_id)["status"] == "paid"
    again = dataclasses.replace(factory.correction(voucher))
    who = person(served, "preparer")
    data = sign_document(voucher_to_xml(again), load_key(who / "key.pem"), load_cert(who / "cert.pem"), NOW)
    status, _, body = call(served, "POST", "/v1/vouchers", data)
    assert status == 409 and b"revision-not-accepted" in body


def _returned_first_line(served, factory, tmp_path, store):
    """A two-line voucher released and paid out, the bank returning line 1 (wrong account) and paying line 2."""
    own = VoucherFactory(BankDirectory.shipped(), seed=zlib.crc32(tmp_path.name.encode()))  # payees of its own
    voucher, voucher_file = submitted(served, factory, tmp_path, like=own.voucher(AGENCY_A, today=NOW.date(), lines=2))
    release(served, tmp_path, voucher, voucher_file)
    pay_out(store, served.pki_dir, returns=lambda e2e: "AC01" if e2e.endswith("L0001") else None)
    assert status_of(served, voucher.voucher_id)["status"] == "returned"
    assert [r.state for r in store.payments_of(voucher.voucher_id, 1)] == [LineState.RETURNED, LineState.PAID]
    return voucher


def _send_revision_2(served, factory, tmp_path, voucher, lines):
    corrected = factory.correction(voucher, lines=lines, line_count=len(lines),
                                   total_amount=sum(line.amount for line in lines))
    who = person(served, "preparer")
    data = sign_document(voucher_to_xml(corrected), load_key(who / "key.pem"), load_cert(who / "cert.pem"), NOW)
    assert call(served, "POST", "/v1/vouchers", data)[0] == 202
    corrected_file = tmp_path / f"{voucher.voucher_id}-2.xml"
    corrected_file.write_bytes(data)
    release(served, tmp_path, corrected, corrected_file)
    return status_of(served, voucher.voucher_id)["status"]


def test_re_remitting_only_the_returned_line_is_not_taken_for_a_duplicate(served, factory, tmp_path):
    store = open_store(served.store)
    try:
        voucher = _returned_first_line(served, factory, tmp_path, store)
        # the same account again (e.g. a name/ID mismatch fixed at the bank): the returned line was not a payment
        assert _send_revision_2(served, factory, tmp_path, voucher, (voucher.lines[0],)) == "treasury-accepted"
    finally:
        store.close()


def test_re_remitting_a_line_that_was_paid_is_held_for_the_treasury(served, factory, tmp_path):
    store = open_store(served.store)
    try:
        voucher = _returned_first_line(served, factory, tmp_path, store)
        first, paid = voucher.lines
        lines = (first._replace(account_number=str(int(first.account_number) + 1)), paid)  # line 2 again: paid!
        assert _send_revision_2(served, factory, tmp_path, voucher, lines) == "held"
    finally:
        store.close()
