"""A statement as ISO 20022 camt.053.001.08 (BankToCustomerStatement), the agency's view of the treasury
account its payments leave from, validated against the official XSD (``schemas/camt.053.001.08.xsd``)
before it is returned.

Pure: a :class:`~gateway.statements.lines.Statement` in, bytes out. The mapping (XSD paths under
``Document/BkToCstmrStmt``):

- ``GrpHdr/MsgId`` and ``Stmt/Id``: the statement id (``STMT`` + agency + start + end); ``CreDtTm`` Taipei time.
- ``Stmt/FrToDt``: the period's first moment and last second, Taipei time.
- ``Stmt/Acct``: the treasury account (gateway/bank/pain001.py ``TAIPEI_TREASURY``), TWD, serviced by its FISC branch.
- ``Stmt/Bal``: ``OPBD`` on the first day and ``CLBD`` on the last, the statement's opening and closing
  totals (money paid out, net of returns) as a DBIT balance (CRDT only if negative).
- ``Stmt/Ntry``, one per entry, amounts TWD without decimals:
  ``payment`` DBIT, ``Sts`` BOOK, BkTxCd PMNT/ICDT/DMCT; ``return`` (退匯 after payment) CRDT, BOOK,
  PMNT/ICDT/RRTN with ``TxDtls/RtrInf`` (a new credit, not a reversal: ``RvslInd`` is not set);
  ``refused`` (returned before settlement, the money never left) DBIT, ``INFO``, with ``RtrInf``;
  ``open`` (pending or accepted at the bank) DBIT, ``PDNG``.
  ``NtryDtls/TxDtls``: ``Refs`` (MsgId of our pain.001, the bank's reference, EndToEndId), the payee as
  ``RltdPties/Cdtr`` and ``CdtrAcct``, its bank and branch as ``RltdAgts/CdtrAgt`` (FISC member id), and
  ``AddtlTxInf`` naming voucher, revision and line.
"""

from __future__ import annotations

import copy
import datetime

from lxml import etree

from gateway.bank.iso_codes import describe_reason
from gateway.bank.pain001 import CLEARING_SYSTEM, CURRENCY, TAIPEI_TREASURY, TreasuryAccount
from gateway.business_time import TAIPEI
from gateway.statements.lines import Entry, EntryKind, Statement
from gateway.xmlsec.validation import schema_problems
from gateway.xmlsec.writing import child_writer

MESSAGE_TYPE = "camt.053.001.08"
NS = "urn:iso:std:iso:20022:tech:xsd:" + MESSAGE_TYPE
SCHEMA = MESSAGE_TYPE + ".xsd"

_sub = child_writer(NS)

# entry kind -> (CdtDbtInd, Sts/Cd, bank transaction sub-family)
_ENTRY = {
    EntryKind.PAYMENT: ("DBIT", "BOOK", "DMCT"),
    EntryKind.RETURN: ("CRDT", "BOOK", "RRTN"),
    EntryKind.REFUSED: ("DBIT", "INFO", "DMCT"),
    EntryKind.OPEN: ("DBIT", "PDNG", "DMCT"),
}


def _time(value: datetime.datetime) -> str:
    return value.astimezone(TAIPEI).isoformat(timespec="seconds")


def _amount(parent: etree._Element, name: str, amount: int) -> None:
    _sub(parent, name, str(amount)).set("Ccy", CURRENCY)


def _fisc_agent(parent: etree._Element, name: str, member: str) -> None:
    found = _sub(_sub(_sub(parent, name), "FinInstnId"), "ClrSysMmbId")
    _sub(_sub(found, "ClrSysId"), "Prtry", CLEARING_SYSTEM)
    _sub(found, "MmbId", member)


def _account_id(parent: etree._Element, number: str) -> None:
    _sub(_sub(_sub(parent, "Id"), "Othr"), "Id", number)


def _balance(stmt: etree._Element, code: str, amount: int, day: datetime.date) -> None:
    bal = _sub(stmt, "Bal")
    _sub(_sub(_sub(bal, "Tp"), "CdOrPrtry"), "Cd", code)
    _amount(bal, "Amt", abs(amount))
    _sub(bal, "CdtDbtInd", "DBIT" if amount >= 0 else "CRDT")
    _sub(_sub(bal, "Dt"), "Dt", day.isoformat())


def _text(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else None


def _values(entry: Entry) -> dict[str, str | None]:
    """The texts of one entry's elements (None: the element is left out)."""
    line = entry.line
    reason = None
    if entry.kind in (EntryKind.RETURN, EntryKind.REFUSED):
        reason = _text(describe_reason(line.reason_code, line.reason_text, returned=entry.kind is EntryKind.RETURN),
                       105)
    member = None
    if line.payee_bank_code and line.payee_branch_code:
        member = line.payee_bank_code + line.payee_branch_code
    return {
        "e2e": line.end_to_end_id, "amount": str(line.amount),
        "day": entry.on.isoformat() if _ENTRY[entry.kind][1] == "BOOK" else None,
        "ref": line.bank_reference if line.bank_reference and len(line.bank_reference) <= 35 else None,
        "msg": line.message_id, "name": _text(line.payee_name, 140), "account": line.payee_account or None,
        "member": member,
        "code": line.reason_code if reason is not None and line.reason_code and len(line.reason_code) <= 4 else None,
        "reason": reason,
        "info": f"voucher {line.voucher_id} revision {line.revision} line {line.line_number}",
    }


def _write_entry(stmt: etree._Element, kind: EntryKind, v: dict[str, str | None]) -> etree._Element:
    indicator, status, sub_family = _ENTRY[kind]
    ntry = _sub(stmt, "Ntry")
    _sub(ntry, "NtryRef", v["e2e"])
    _sub(ntry, "Amt", v["amount"]).set("Ccy", CURRENCY)
    _sub(ntry, "CdtDbtInd", indicator)
    _sub(_sub(ntry, "Sts"), "Cd", status)
    if v["day"]:
        _sub(_sub(ntry, "BookgDt"), "Dt", v["day"])
    if v["ref"]:
        _sub(ntry, "AcctSvcrRef", v["ref"])
    _bank_code(ntry, sub_family)
    tx = _sub(_sub(ntry, "NtryDtls"), "TxDtls")
    refs = _sub(tx, "Refs")
    _sub(refs, "MsgId", v["msg"])
    if v["ref"]:
        _sub(refs, "AcctSvcrRef", v["ref"])
    _sub(refs, "EndToEndId", v["e2e"])
    _sub(tx, "Amt", v["amount"]).set("Ccy", CURRENCY)
    _sub(tx, "CdtDbtInd", indicator)
    if v["name"] or v["account"]:
        parties = _sub(tx, "RltdPties")
        if v["name"]:
            _sub(_sub(_sub(parties, "Cdtr"), "Pty"), "Nm", v["name"])
        if v["account"]:
            _account_id(_sub(parties, "CdtrAcct"), v["account"])
    if v["member"]:
        _fisc_agent(_sub(tx, "RltdAgts"), "CdtrAgt", v["member"])
    if v["code"] or v["reason"]:
        rtr = _sub(tx, "RtrInf")
        if v["code"]:
            _sub(_sub(rtr, "Rsn"), "Cd", v["code"])
        if v["reason"]:
            _sub(rtr, "AddtlInf", v["reason"])
    _sub(tx, "AddtlTxInf", v["info"])
    return ntry


class _Entries:
    """Writes entries by copying a template per shape (kind and which optional elements are present) and
    filling in its texts: ten thousand entries of some forty elements each would otherwise spend most of a
    statement's time creating elements. The template is written by :func:`_write_entry` itself, so the two
    cannot disagree."""

    def __init__(self) -> None:
        self._templates: dict[tuple, tuple[etree._Element, tuple[tuple[int, str], ...]]] = {}

    def write(self, stmt: etree._Element, entry: Entry) -> None:
        values = _values(entry)
        key = (entry.kind, *(name for name, text in values.items() if text))
        found = self._templates.get(key)
        if found is None:
            markers = {name: f"\ue000{name}\ue000" if text else None for name, text in values.items()}
            template = _write_entry(etree.Element("holder"), entry.kind, markers)
            slots = tuple((index, node.text[1:-1]) for index, node in enumerate(template.iter())
                          if node.text and node.text.startswith("\ue000"))
            found = self._templates[key] = (template, slots)
        template, slots = found
        ntry = copy.deepcopy(template)
        nodes = list(ntry.iter())
        for index, name in slots:
            nodes[index].text = values[name]
        stmt.append(ntry)


def _bank_code(parent: etree._Element, sub_family: str) -> None:
    domain = _sub(_sub(parent, "BkTxCd"), "Domn")
    _sub(domain, "Cd", "PMNT")
    family = _sub(domain, "Fmly")
    _sub(family, "Cd", "ICDT")
    _sub(family, "SubFmlyCd", sub_family)


def build_camt053(statement: Statement, *, account: TreasuryAccount = TAIPEI_TREASURY) -> etree._Element:
    """The camt.053 Document element of ``statement`` (not yet validated; :func:`camt053_bytes` validates)."""
    root = etree.Element(f"{{{NS}}}Document", nsmap={None: NS})
    report = _sub(root, "BkToCstmrStmt")
    header = _sub(report, "GrpHdr")
    _sub(header, "MsgId", statement.statement_id)
    _sub(header, "CreDtTm", _time(statement.created_at))
    stmt = _sub(report, "Stmt")
    _sub(stmt, "Id", statement.statement_id)
    _sub(stmt, "CreDtTm", _time(statement.created_at))
    period = _sub(stmt, "FrToDt")
    start = datetime.datetime.combine(statement.period.start, datetime.time(0, 0), TAIPEI)
    end = datetime.datetime.combine(statement.period.end, datetime.time(23, 59, 59), TAIPEI)
    _sub(period, "FrDtTm", _time(start))
    _sub(period, "ToDtTm", _time(end))
    acct = _sub(stmt, "Acct")
    _account_id(acct, account.account_number)
    _sub(acct, "Ccy", CURRENCY)
    _sub(acct, "Nm", account.name[:70])
    _fisc_agent(acct, "Svcr", account.fisc_code)
    _balance(stmt, "OPBD", statement.opening, statement.period.start)
    _balance(stmt, "CLBD", statement.closing, statement.period.end)
    entries = _Entries()
    for entry in statement.entries:
        entries.write(stmt, entry)
    return root


def camt053_bytes(statement: Statement, *, account: TreasuryAccount = TAIPEI_TREASURY) -> bytes:
    """The statement as camt.053 XML bytes, valid against the official XSD; ValueError (our bug) if not."""
    root = build_camt053(statement, account=account)
    problems = schema_problems(root, SCHEMA)
    if problems:
        raise ValueError(f"the camt.053 built for {statement.statement_id} is not schema-valid: {problems[0]}")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
