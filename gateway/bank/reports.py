"""Reading the bank's reports: a pain.002 status report or a camt.054 booking notification into outcomes.

The input is a ``Document`` element that has already passed the official XSD and the signature check; this
module only decides what the report *means* for our payment lines. Pure: no I/O, no clock (a report's own
times are read, never compared with now).

What counts as news, and why:

- pain.002 ``TxSts`` / ``PmtInfSts`` / ``GrpSts``: ``ACSC`` and ``ACCC`` (settled) are PAID; ``ACCP``,
  ``ACSP``, ``ACTC``, ``ACWC``, ``ACFC``, ``ACIS``, ``ACPD`` and ``ACWP`` (taken for execution, at some step)
  are ACCEPTED; ``RJCT`` is REJECTED. Everything else carries no outcome and is skipped on purpose:
  ``RCVD`` and ``PDNG`` say nothing has been decided; ``PART`` (group level only) says "some accepted", not
  which; the Verification-of-Payee statuses (``RCVC``, ``RVMC``, ``RVNM``, ``RVNA``, ``RVNC``, ``RVCM``) are
  name checks the payer answers, and our transfers are not held for them; ``ACFW``, ``BLCK``, ``CANC``,
  ``CPUC``, ``PATC``, ``PRES`` and codes newer than our copy have no meaning for a treasury credit transfer.
  A line left without news stays open and is flagged as unconfirmed after the configured time.
- camt.054 entries with status ``BOOK`` only (``PDNG`` and ``INFO`` are not bookings). On the treasury
  account a debit (``DBIT``) with the payment's EndToEndId is our transfer settled: PAID. A credit
  (``CRDT``) with return information (``RtrInf``) is a payment coming back after settlement (退匯): RETURNED.
  A credit without ``RtrInf`` (money paid *to* the city), a debit with it, a reversal (``RvslInd``) and any
  booking without a usable EndToEndId (absent or ``NOTPROVIDED``) name no outcome: they are listed in the
  report's ``unmatched`` for reconciliation and an operator, never dropped and never guessed. The
  ``reason_code`` of a RETURNED outcome is a return reason (ExternalReturnReason1Code, read it with
  :func:`gateway.bank.iso_codes.return_reason_name`), not a status reason.

Scope and order: a pain.002 status on the group header applies to every payment of the original message, one
on a payment-information block to every payment of that block, one on a transaction to that payment. The
outcomes come out most specific first — every transaction detail, then payment-block statuses, then the
message status — so that a consumer applying them in order (gateway/bank/settlement.py) lets a transaction's
own detail win: its line has moved already when the broader statement reaches it, and the per-line reducer
(gateway/bank/outcomes.py) treats the broader statement as a repeat, a late report, or a contradiction.

References: this module reads what a report says it is about — a pain.002's ``OrgnlMsgId``, ``OrgnlMsgNmId``,
``OrgnlCreDtTm``, counts and control sums (:class:`~gateway.bank.payments.OriginalMessage`), each transaction's
``OrgnlPmtInfId`` and ``OrgnlInstrId``, a camt.054 transaction's ``Refs`` (``MsgId``, ``PmtInfId``, ``InstrId``) —
and does not judge them: whether they match what was sent is gateway/bank/binding.py's question, asked with
the stored lines in hand.

Money: amounts are whole New Taiwan dollars. A report amount in another currency, with a fraction, or not
above zero is refused (``bank-amount-invalid``) rather than rounded: the treasury account is an NT$ account,
so such an amount means the report is not about it. Times without a UTC offset are Taipei time.

Every problem is a :class:`Refusal` with a stable code; nothing else escapes, whatever a (valid) report holds.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from lxml import etree

from gateway.bank.payments import BankOutcome, BankReport, OriginalBlock, OriginalMessage, OutcomeKind, UnmatchedItem
from gateway.business_time import TAIPEI
from gateway.errors import Refusal
from gateway.xmlsec.parsing import tree_path

PAIN002 = "pain.002.001.10"
CAMT054 = "camt.054.001.08"
PAIN002_NS = f"urn:iso:std:iso:20022:tech:xsd:{PAIN002}"
CAMT054_NS = f"urn:iso:std:iso:20022:tech:xsd:{CAMT054}"
CURRENCY = "TWD"
NOT_PROVIDED = "NOTPROVIDED"
"""What banks write into a mandatory EndToEndId when the payer gave none."""
MAX_REASON_TEXT = 500
"""Longest reason text kept on an outcome (the bank's ``AddtlInf`` lines, joined). The signed report itself is
stored whole; this is what a line and an agency's status page carry."""

_K = OutcomeKind
TRANSACTION_OUTCOMES: Mapping[str, OutcomeKind] = MappingProxyType({
    "ACSC": _K.PAID, "ACCC": _K.PAID,
    "ACCP": _K.ACCEPTED, "ACSP": _K.ACCEPTED, "ACTC": _K.ACCEPTED, "ACWC": _K.ACCEPTED, "ACFC": _K.ACCEPTED,
    "ACIS": _K.ACCEPTED, "ACPD": _K.ACCEPTED, "ACWP": _K.ACCEPTED,
    "RJCT": _K.REJECTED,
})
"""pain.002 ``TxSts`` with an outcome; every other status is no news (module docstring)."""
GROUP_OUTCOMES: Mapping[str, OutcomeKind] = MappingProxyType({
    "ACSC": _K.PAID, "ACCC": _K.PAID,
    "ACCP": _K.ACCEPTED, "ACSP": _K.ACCEPTED, "ACTC": _K.ACCEPTED, "ACWC": _K.ACCEPTED,
    "RJCT": _K.REJECTED,
})
"""pain.002 ``GrpSts`` / ``PmtInfSts`` with an outcome for every payment in scope (``PART`` has none)."""
del _K

_DATE_TIME = re.compile(r"(-?)([0-9]{4,})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
                        r"(Z|[+-][0-9]{2}:[0-9]{2})?")
_DATE = re.compile(r"(-?)([0-9]{4,})-([0-9]{2})-([0-9]{2})(?:Z|[+-][0-9]{2}:[0-9]{2})?")
_DECIMAL = re.compile(r"\+?([0-9]*)(?:\.([0-9]*))?")
_MAX_AMOUNT_DIGITS = 18  # ActiveOrHistoricCurrencyAndAmount: totalDigits 18


# --- reading values ---------------------------------------------------------------------------------------------
#
# Lookups go through a one-pass index of an element's children (:class:`_Kids`) rather than ``find()``: lxml
# parses a path on every ``find`` call, and a report on a full transfer message asks some twenty questions of
# each of its 5,000 transactions. The first child of a name counts, as with ``find``.

def _invalid(message: str, node: etree._Element | None = None) -> Refusal:
    return Refusal("bank-report-invalid", message, line=_line(node), path=None if node is None else tree_path(node))


def _line(node: etree._Element | None) -> int | None:
    return None if node is None else node.sourceline


def _text_of(node: etree._Element) -> str:
    """An element's text, whitespace-trimmed. A comment splits text in two (and is a child); itertext joins it."""
    if len(node) == 0:
        text = node.text
        return text.strip() if text else ""
    return "".join(node.itertext()).strip()


class _Kids:
    """The children of one element by local name (the first of each name), in the report's namespace."""

    __slots__ = ("node", "_ns", "_first")

    def __init__(self, node: etree._Element, ns: str) -> None:
        self.node = node
        self._ns = ns
        first: dict = {}
        for child in node:
            first.setdefault(child.tag, child)
        self._first = first

    def get(self, name: str) -> etree._Element | None:
        return self._first.get(self._ns + name)

    def under(self, name: str) -> _Kids | None:
        node = self._first.get(self._ns + name)
        return None if node is None else _Kids(node, self._ns)

    def text(self, name: str) -> str | None:
        """Trimmed text of the child ``name``; None when absent or empty."""
        node = self._first.get(self._ns + name)
        return None if node is None else (_text_of(node) or None)

    def all(self, name: str):
        return self.node.iterchildren(self._ns + name)

    def required(self, name: str) -> etree._Element:
        node = self._first.get(self._ns + name)
        if node is None:
            raise _invalid(f"{tree_path(self.node)} has no {name}", self.node)
        return node

    def required_text(self, name: str) -> str:
        value = _text_of(self.required(name))
        if not value:
            raise _invalid(f"{tree_path(self.node)}/{name} is empty", self.node)
        return value


def _path(kids: _Kids | None, *names: str) -> etree._Element | None:
    """The element at ``names`` below ``kids`` (first child of each name), or None."""
    for name in names[:-1]:
        if kids is None:
            return None
        kids = kids.under(name)
    return None if kids is None else kids.get(names[-1])


def _date_time(node: etree._Element) -> datetime.datetime:
    """An ISODateTime as an aware datetime; without an offset it is Taipei time (the bank is in Taipei)."""
    text = _text_of(node)
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise _invalid(f"{text[:40]!r} is not a date and time", node)
    minus, year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        if minus or len(year) > 4:
            raise ValueError("year out of range")
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        extra_day = hour == "24" and minute == second == "00" and not (fraction or "").strip("0")
        value = datetime.datetime(int(year), int(month), int(day), 0 if extra_day else int(hour), int(minute),
                                  int(second), micro)
        if extra_day:
            value += datetime.timedelta(days=1)
        if zone is None:
            return value.replace(tzinfo=TAIPEI)
        if zone == "Z":
            return value.replace(tzinfo=datetime.timezone.utc)
        if int(zone[4:6]) > 59:
            raise ValueError("offset minutes out of range")
        offset = datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        return value.replace(tzinfo=datetime.timezone(-offset if zone[0] == "-" else offset))
    except (ValueError, OverflowError) as error:
        raise _invalid(f"{text[:40]!r} is not a date and time we can represent ({error})", node) from None


def _date(node: etree._Element) -> datetime.date:
    """An ISODate (any offset on it is dropped: a booking date is the bank's calendar day)."""
    text = _text_of(node)
    match = _DATE.fullmatch(text)
    try:
        if match is None or match[1] or len(match[2]) > 4:
            raise ValueError("not a date of years 1 to 9999")
        return datetime.date(int(match[2]), int(match[3]), int(match[4]))
    except ValueError as error:
        raise _invalid(f"{text[:40]!r} is not a date we can represent ({error})", node) from None


def _amount(node: etree._Element) -> int:
    """A whole NT$ amount above zero from an ``ActiveOrHistoricCurrencyAndAmount`` element, or a Refusal."""
    currency = node.get("Ccy")
    if currency != CURRENCY:
        raise Refusal("bank-amount-invalid", f"an amount is in {currency!r}, not New Taiwan dollars ({CURRENCY}): "
                      "the report is not about the treasury's NT$ account", line=_line(node), path=tree_path(node))
    text = _text_of(node)
    match = _DECIMAL.fullmatch(text)
    if match is None or not (match[1] or match[2]) or len(match[1].lstrip("0")) > _MAX_AMOUNT_DIGITS:
        raise Refusal("bank-amount-invalid", f"{text[:40]!r} is not an amount", line=_line(node),
                      path=tree_path(node))
    if (match[2] or "").strip("0"):
        raise Refusal("bank-amount-invalid", f"NT$ {text[:40]} is not a whole dollar amount", line=_line(node),
                      path=tree_path(node))
    value = int(match[1] or "0")
    if value <= 0:
        raise Refusal("bank-amount-invalid", f"the amount {text[:40]} is not above zero", line=_line(node),
                      path=tree_path(node))
    return value


def _control_sum(node: etree._Element | None) -> int | None:
    """A ``CtrlSum`` (a DecimalNumber, no currency: the sum of NT$ amounts) as whole dollars; None when absent."""
    if node is None:
        return None
    text = _text_of(node)
    match = _DECIMAL.fullmatch(text)
    if match is None or not (match[1] or match[2]) or (match[2] or "").strip("0") \
            or len(match[1].lstrip("0")) > _MAX_AMOUNT_DIGITS:
        raise Refusal("bank-amount-invalid", f"the control sum {text[:40]!r} is not a whole NT$ amount",
                      line=_line(node), path=tree_path(node))
    return int(match[1] or "0")


def _count(node: etree._Element | None) -> int | None:
    """A ``NbOfTxs`` (Max15NumericText) as an int; None when absent."""
    if node is None:
        return None
    text = _text_of(node)
    if not text.isascii() or not text.isdigit():
        raise _invalid(f"the number of transactions {text[:20]!r} is not a number", node)
    return int(text)


def _reason(infos: Iterable[etree._Element], ns: str) -> tuple[str | None, str | None]:
    """(code, text) of status-reason or return-reason blocks (``Rsn/Cd|Prtry`` and ``AddtlInf`` lines).

    The first ISO code is the code. The text joins, in document order, any further codes, proprietary
    reasons and every ``AddtlInf`` line with single spaces (banks break one sentence over 105-character
    lines), whitespace collapsed and cut at :data:`MAX_REASON_TEXT`."""
    code: str | None = None
    parts: list[str] = []
    for info in infos:
        reason = _Kids(info, ns).under("Rsn")
        if reason is not None:
            value = reason.text("Cd")
            if value and code is None:
                code = value
            elif value:
                parts.append(value)
            proprietary = reason.text("Prtry")
            if proprietary:
                parts.append(proprietary)
        parts.extend(_text_of(line) for line in info.iterchildren(ns + "AddtlInf"))
    if not parts:
        return code, None
    text = " ".join(" ".join(parts).split())
    if len(text) > MAX_REASON_TEXT:
        text = text[:MAX_REASON_TEXT - 1] + "…"
    return code, text or None


def _document(root: etree._Element, namespace: str, message: str) -> _Kids:
    """The message element under ``Document``, or a Refusal when ``root`` is some other document."""
    if not isinstance(root, etree._Element) or not isinstance(root.tag, str):
        raise Refusal("bank-report-invalid", "not an XML element")
    expected = f"{{{namespace}}}Document"
    if root.tag != expected:
        raise _invalid(f"the document is {root.tag[:120]}, not {expected}", root)
    body = _Kids(root, f"{{{namespace}}}").get(message)
    if body is None:
        raise _invalid(f"the document holds no {message}", root)
    return _Kids(body, f"{{{namespace}}}")


def _end_to_end(value: str | None) -> str | None:
    """A usable EndToEndId, or None for an absent one and the ``NOTPROVIDED`` placeholder."""
    return None if value is None or value == NOT_PROVIDED else value


# --- pain.002 ---------------------------------------------------------------------------------------------------

_P = f"{{{PAIN002_NS}}}"


def read_pain002(root: etree._Element) -> BankReport:
    """The outcomes of a pain.002.001.10 customer payment status report (see the module docstring)."""
    report = _document(root, PAIN002_NS, "CstmrPmtStsRpt")
    header = _Kids(report.required("GrpHdr"), _P)
    message_id = header.required_text("MsgId")
    created_at = _date_time(header.required("CreDtTm"))
    group = _Kids(report.required("OrgnlGrpInfAndSts"), _P)
    original = group.required_text("OrgnlMsgId")
    created = group.get("OrgnlCreDtTm")

    details: list[BankOutcome] = []
    blocks: list[BankOutcome] = []
    unmatched: list[UnmatchedItem] = []
    originals: list[OriginalBlock] = []
    for block_node in report.all("OrgnlPmtInfAndSts"):
        block = _Kids(block_node, _P)
        block_id = block.required_text("OrgnlPmtInfId")
        originals.append(OriginalBlock(block_id, _count(block.get("OrgnlNbOfTxs")),
                                       _control_sum(block.get("OrgnlCtrlSum"))))
        for tx_node in block.all("TxInfAndSts"):
            tx = _Kids(tx_node, _P)
            kind = TRANSACTION_OUTCOMES.get(tx.text("TxSts") or "")
            if kind is None:
                continue
            code, text = (None, None) if tx.get("StsRsnInf") is None else _reason(tx.all("StsRsnInf"), _P)
            amount_node = _path(tx.under("OrgnlTxRef"), "Amt", "InstdAmt")
            amount = None if amount_node is None else _amount(amount_node)
            bank_reference = tx.text("AcctSvcrRef")
            raw_id = tx.text("OrgnlEndToEndId")
            e2e = _end_to_end(raw_id)
            if e2e is None:
                unmatched.append(UnmatchedItem("no-end-to-end-id", raw_id, kind, amount, None, code, bank_reference))
                continue
            details.append(BankOutcome(kind, original, block_id, e2e, amount, code, text, bank_reference,
                                       instruction_id=tx.text("OrgnlInstrId")))
        kind = GROUP_OUTCOMES.get(block.text("PmtInfSts") or "")
        if kind is not None:
            code, text = _reason(block.all("StsRsnInf"), _P)
            blocks.append(BankOutcome(kind, original, block_id, reason_code=code, reason_text=text))
    whole: list[BankOutcome] = []
    kind = GROUP_OUTCOMES.get(group.text("GrpSts") or "")
    if kind is not None:
        code, text = _reason(group.all("StsRsnInf"), _P)
        whole.append(BankOutcome(kind, original, reason_code=code, reason_text=text))
    answered = OriginalMessage(original, group.required_text("OrgnlMsgNmId"),
                               None if created is None else _date_time(created), _count(group.get("OrgnlNbOfTxs")),
                               _control_sum(group.get("OrgnlCtrlSum")), tuple(originals))
    return BankReport(message_id, PAIN002, created_at, tuple(details + blocks + whole), tuple(unmatched), answered)


# --- camt.054 ---------------------------------------------------------------------------------------------------

_C = f"{{{CAMT054_NS}}}"


def _credit_debit(node: etree._Element) -> str:
    value = _text_of(node)
    if value not in ("CRDT", "DBIT"):
        raise _invalid(f"credit/debit indicator {value[:10]!r} is neither CRDT nor DBIT", node)
    return value


def _booking_date(entry: _Kids) -> datetime.date | None:
    booking = entry.under("BookgDt")
    if booking is None:
        return None
    day = booking.get("Dt")
    if day is not None:
        return _date(day)
    moment = booking.get("DtTm")
    return None if moment is None else _date_time(moment).astimezone(TAIPEI).date()


def _account_id(account: _Kids) -> str | None:
    ids = account.under("Id")
    if ids is None:
        return None
    other = ids.under("Othr")
    return ids.text("IBAN") or (None if other is None else other.text("Id"))


def read_camt054(root: etree._Element, *, treasury_account: str | None = None) -> BankReport:
    """The outcomes of a camt.054.001.08 debit/credit notification (see the module docstring).

    With ``treasury_account`` (the account id as the bank writes it in ``Acct/Id``), a notification about any
    other account is refused (``bank-account-unexpected``): its bookings are not our payments' settlement."""
    notice = _document(root, CAMT054_NS, "BkToCstmrDbtCdtNtfctn")
    header = _Kids(notice.required("GrpHdr"), _C)
    message_id = header.required_text("MsgId")
    created_at = _date_time(header.required("CreDtTm"))
    outcomes: list[BankOutcome] = []
    unmatched: list[UnmatchedItem] = []
    for notification_node in notice.all("Ntfctn"):
        notification = _Kids(notification_node, _C)
        account_node = notification.required("Acct")
        account = _Kids(account_node, _C)
        account_id = _account_id(account)
        if treasury_account is not None and account_id != treasury_account:
            raise Refusal("bank-account-unexpected", f"the notification is about account {account_id!r}, not the "
                          f"treasury account", line=_line(account_node), path=tree_path(account_node))
        currency = account.text("Ccy")
        if currency is not None and currency != CURRENCY:
            raise Refusal("bank-amount-invalid", f"the account is kept in {currency[:10]!r}, not New Taiwan dollars",
                          line=_line(account_node), path=tree_path(account_node))
        for entry_node in notification.all("Ntry"):
            entry = _Kids(entry_node, _C)
            status = entry.under("Sts")
            if status is None or status.text("Cd") != "BOOK":
                continue
            _read_entry(entry, outcomes, unmatched)
    return BankReport(message_id, CAMT054, created_at, tuple(outcomes), tuple(unmatched))


def _read_entry(entry: _Kids, outcomes: list[BankOutcome], unmatched: list[UnmatchedItem]) -> None:
    """One booked entry: each of its transactions (or the entry itself, when it details none) as an outcome or
    an unmatched item."""
    entry_amount = _amount(entry.required("Amt"))
    entry_side = _credit_debit(entry.required("CdtDbtInd"))
    reversal = (entry.text("RvslInd") or "").lower() in ("true", "1")
    booked_on = _booking_date(entry)
    entry_reference = entry.text("AcctSvcrRef")
    transactions = [_Kids(tx, _C) for details in entry.all("NtryDtls") for tx in details.iterchildren(_C + "TxDtls")]
    if not transactions:
        unmatched.append(UnmatchedItem("reversal" if reversal else "no-end-to-end-id", None, None, entry_amount,
                                       entry_side, None, entry_reference, booked_on))
        return
    for tx in transactions:
        side_node = tx.get("CdtDbtInd")
        side = entry_side if side_node is None else _credit_debit(side_node)
        amount = _transaction_amount(tx, entry_amount if len(transactions) == 1 else None)
        refs = tx.under("Refs")
        reference = (None if refs is None else refs.text("AcctSvcrRef")) or entry_reference
        raw_id = None if refs is None else refs.text("EndToEndId")
        returned = tx.get("RtrInf")
        code, text = (None, None) if returned is None else _reason((returned,), _C)
        kind: OutcomeKind | None = None
        why: str | None = None
        if reversal:
            why = "reversal"
        elif side == "DBIT":
            kind, why = (OutcomeKind.PAID, None) if returned is None else (None, "debit-with-return")
        else:
            kind, why = (OutcomeKind.RETURNED, None) if returned is not None else (None, "credit-without-return")
        e2e = _end_to_end(raw_id)
        if why is None and e2e is None:
            why = "no-end-to-end-id"
        if why is not None:
            unmatched.append(UnmatchedItem(why, raw_id, kind, amount, side, code, reference, booked_on))
            continue
        outcomes.append(BankOutcome(kind, None if refs is None else refs.text("MsgId"),
                                    None if refs is None else refs.text("PmtInfId"), e2e, amount, code, text,
                                    reference, booked_on, None if refs is None else refs.text("InstrId")))


def _transaction_amount(tx: _Kids, entry_amount: int | None) -> int | None:
    """The transaction's own amount, else its amount details (transaction, then instructed amount), else the
    entry's amount when the entry books this one transaction alone."""
    node = tx.get("Amt")
    if node is None:
        details = tx.under("AmtDtls")
        node = _path(details, "TxAmt", "Amt")
        if node is None:
            node = _path(details, "InstdAmt", "Amt")
    return entry_amount if node is None else _amount(node)
