"""Writing the bank's side of the exchange: pain.002 status reports and camt.054 booking notifications.

The gateway never sends these; the bank does. They live in the core anyway, as a small SDK, because the bank
simulator (and any test) must produce exactly what :mod:`gateway.bank.reports` reads: one writer next to
the reader keeps both honest, and the round-trip tests (build → official XSD → read) pin them together.
Only what the treasury exchange uses is written — NT$ amounts, one booking per transaction — and every
document validates against the official schemas (``schemas/pain.002.001.10.xsd``,
``schemas/camt.054.001.08.xsd``). Pure: times are passed in.

Inputs are plain tuples so a simulator can write them inline; :class:`TxStatus` and :class:`Booking` name
their fields. A programming mistake (a negative amount, a naive time, an unknown debit/credit side) raises
ValueError: this is our own code talking, not a peer to refuse.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from lxml import etree

from gateway.bank.reports import CAMT054_NS, CURRENCY, PAIN002_NS
from gateway.xmlsec.writing import child_writer

ORIGINAL_MESSAGE_NAME = "pain.001.001.09"
"""The message a pain.002 answers (OrgnlMsgNmId): our transfer messages."""
MAX_INFO = 105  # Max105Text: one AddtlInf line


class TxStatus(NamedTuple):
    """One ``TxInfAndSts``: the payment's status as the bank reports it."""

    end_to_end_id: str | None  # None writes no OrgnlEndToEndId
    status: str  # TxSts, e.g. ACCP, ACSC, RJCT
    reason_code: str | None = None  # ExternalStatusReason1Code, e.g. AC01
    reason_text: str | None = None
    amount: int | None = None  # whole NT$: OrgnlTxRef/Amt/InstdAmt
    bank_reference: str | None = None  # AcctSvcrRef
    payment_info_id: str | None = None  # the OrgnlPmtInfId block it goes into (else build_pain002's)


class Booking(NamedTuple):
    """One camt.054 booked entry with its one transaction."""

    end_to_end_id: str | None  # None writes no EndToEndId
    amount: int  # whole NT$
    credit_debit: str  # "DBIT" (our transfer paid) | "CRDT" (money in; a return when return_reason is set)
    booked_on: datetime.date
    bank_reference: str | None = None  # AcctSvcrRef of the entry and of the transaction
    return_reason: str | None = None  # ExternalReturnReason1Code: writes RtrInf
    return_text: str | None = None
    message_id: str | None = None  # Refs/MsgId: the transfer message the payment was sent in
    payment_info_id: str | None = None  # Refs/PmtInfId: its payment block


def _iso_time(at: datetime.datetime) -> str:
    if not isinstance(at, datetime.datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a report time must be timezone-aware, not {at!r}")
    return at.isoformat(timespec="seconds")


def _whole_amount(amount: int) -> str:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError(f"an amount is a positive whole NT$ amount, not {amount!r}")
    return str(amount)


def info_lines(text: str | None) -> list[str]:
    """``text`` as ``AddtlInf`` lines of at most 105 characters, broken at spaces (whitespace collapsed first),
    so that the reader's joining them with single spaces gives the text back. A word longer than a line is cut."""
    words = (text or "").split()
    lines: list[str] = []
    current = ""
    for word in words:
        while len(word) > MAX_INFO:
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:MAX_INFO])
            word = word[MAX_INFO:]
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= MAX_INFO:
            current = f"{current} {word}"
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def _status_reason(sub, parent: etree._Element, code: str | None, text: str | None, *, block: str = "StsRsnInf"
                   ) -> None:
    lines = info_lines(text)
    if code is None and not lines:
        return
    info = sub(parent, block)
    if code is not None:
        sub(sub(info, "Rsn"), "Cd", code)
    for line in lines:
        sub(info, "AddtlInf", line)


def build_pain002(*, message_id: str, created_at: datetime.datetime, original_message_id: str,
                  group_status: str | None, tx_statuses: Iterable[TxStatus | tuple] = (),
                  group_reason: str | None = None, group_reason_text: str | None = None,
                  payment_info_id: str | None = None,
                  payment_statuses: Mapping[str, tuple[str | None, str | None, str | None]] | None = None
                  ) -> etree._Element:
    """A pain.002.001.10 answering transfer message ``original_message_id``.

    ``group_status`` (GrpSts, None for none) with ``group_reason`` / ``group_reason_text`` speaks for the whole
    message. ``tx_statuses`` are ``(end_to_end_id, status, reason_code, reason_text, amount, bank_reference
    [, payment_info_id])``; each goes into the ``OrgnlPmtInfAndSts`` block of its payment_info_id, else of
    ``payment_info_id``: the block it was sent in, which the gateway checks (gateway/bank/binding.py), so
    there is no default (ValueError). ``payment_statuses`` maps a block id to ``(PmtInfSts or None, reason
    code, reason text)``; such blocks are written even without transactions (a whole payment group
    rejected). Blocks appear in the order first named, payment_statuses first."""
    sub = child_writer(PAIN002_NS)
    root = etree.Element(f"{{{PAIN002_NS}}}Document", nsmap={None: PAIN002_NS})
    report = sub(root, "CstmrPmtStsRpt")
    header = sub(report, "GrpHdr")
    sub(header, "MsgId", message_id)
    sub(header, "CreDtTm", _iso_time(created_at))
    group = sub(report, "OrgnlGrpInfAndSts")
    sub(group, "OrgnlMsgId", original_message_id)
    sub(group, "OrgnlMsgNmId", ORIGINAL_MESSAGE_NAME)
    if group_status is not None:
        sub(group, "GrpSts", group_status)
    _status_reason(sub, group, group_reason, group_reason_text)

    statuses = dict(payment_statuses or {})
    blocks: dict[str, list[TxStatus]] = {block_id: [] for block_id in statuses}
    for item in tx_statuses:
        tx = item if isinstance(item, TxStatus) else TxStatus(*item)
        block_id = tx.payment_info_id or payment_info_id
        if block_id is None:
            raise ValueError(f"the status of {tx.end_to_end_id} names no payment block (OrgnlPmtInfId)")
        blocks.setdefault(block_id, []).append(tx)
    for block_id, transactions in blocks.items():
        block = sub(report, "OrgnlPmtInfAndSts")
        sub(block, "OrgnlPmtInfId", block_id)
        status, code, text = statuses.get(block_id, (None, None, None))
        if status is not None:
            sub(block, "PmtInfSts", status)
        _status_reason(sub, block, code, text)
        for tx in transactions:
            node = sub(block, "TxInfAndSts")
            if tx.end_to_end_id is not None:
                sub(node, "OrgnlEndToEndId", tx.end_to_end_id)
            sub(node, "TxSts", tx.status)
            _status_reason(sub, node, tx.reason_code, tx.reason_text)
            if tx.bank_reference is not None:
                sub(node, "AcctSvcrRef", tx.bank_reference)
            if tx.amount is not None:
                sub(sub(sub(node, "OrgnlTxRef"), "Amt"), "InstdAmt", _whole_amount(tx.amount)).set("Ccy", CURRENCY)
    return root


# Bank transaction codes (ISO ExternalBankTransactionDomain/Family/SubFamily): payments, issued credit
# transfers; a domestic credit transfer, or the reversal due to a payment return (退匯).
_TRANSFER_CODE = ("PMNT", "ICDT", "DMCT")
_RETURN_CODE = ("PMNT", "ICDT", "RRTN")


def build_camt054(*, message_id: str, created_at: datetime.datetime, account: str,
                  entries: Iterable[Booking | tuple]) -> etree._Element:
    """A camt.054.001.08 notification of bookings on the treasury ``account`` (its id as ``Acct/Id/Othr/Id``,
    kept in NT$), one ``Ntry`` with one ``TxDtls`` per entry ``(end_to_end_id, amount, credit_debit, booked_on,
    bank_reference, return_reason[, return_text, message_id, payment_info_id])``, all with status BOOK; the
    transaction's ``Refs`` name the transfer message and block when given."""
    sub = child_writer(CAMT054_NS)
    root = etree.Element(f"{{{CAMT054_NS}}}Document", nsmap={None: CAMT054_NS})
    notice = sub(root, "BkToCstmrDbtCdtNtfctn")
    header = sub(notice, "GrpHdr")
    sub(header, "MsgId", message_id)
    sub(header, "CreDtTm", _iso_time(created_at))
    notification = sub(notice, "Ntfctn")
    sub(notification, "Id", message_id)
    sub(notification, "CreDtTm", _iso_time(created_at))
    acct = sub(notification, "Acct")
    sub(sub(sub(acct, "Id"), "Othr"), "Id", account)
    sub(acct, "Ccy", CURRENCY)
    for item in entries:
        booking = item if isinstance(item, Booking) else Booking(*item)
        if booking.credit_debit not in ("CRDT", "DBIT"):
            raise ValueError(f"credit/debit is CRDT or DBIT, not {booking.credit_debit!r}")
        amount = _whole_amount(booking.amount)
        day = booking.booked_on.isoformat()
        entry = sub(notification, "Ntry")
        sub(entry, "Amt", amount).set("Ccy", CURRENCY)
        sub(entry, "CdtDbtInd", booking.credit_debit)
        sub(sub(entry, "Sts"), "Cd", "BOOK")
        sub(sub(entry, "BookgDt"), "Dt", day)
        sub(sub(entry, "ValDt"), "Dt", day)
        if booking.bank_reference is not None:
            sub(entry, "AcctSvcrRef", booking.bank_reference)
        is_return = booking.return_reason is not None or bool(info_lines(booking.return_text))
        _bank_transaction_code(sub, entry, _RETURN_CODE if is_return else _TRANSFER_CODE)
        tx = sub(sub(entry, "NtryDtls"), "TxDtls")
        references = (("MsgId", booking.message_id), ("AcctSvcrRef", booking.bank_reference),
                      ("PmtInfId", booking.payment_info_id), ("EndToEndId", booking.end_to_end_id))
        if any(value is not None for _, value in references):
            refs = sub(tx, "Refs")
            for name, value in references:  # in the schema's order (TransactionReferences6)
                if value is not None:
                    sub(refs, name, value)
        sub(tx, "Amt", amount).set("Ccy", CURRENCY)
        sub(tx, "CdtDbtInd", booking.credit_debit)
        if is_return:
            _status_reason(sub, tx, booking.return_reason, booking.return_text, block="RtrInf")
    return root


def _bank_transaction_code(sub, entry: etree._Element, code: tuple[str, str, str]) -> None:
    domain = sub(sub(entry, "BkTxCd"), "Domn")
    sub(domain, "Cd", code[0])
    family = sub(domain, "Fmly")
    sub(family, "Cd", code[1])
    sub(family, "SubFmlyCd", code[2])
