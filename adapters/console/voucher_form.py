"""The voucher preparation form (憑單編製), for agencies without an integrated accounting system: form fields
in, an unsigned voucher XML out, valid against schemas/voucher.xsd and the business rules, to be signed with
``vgw voucher sign`` and uploaded like any other.

The XML is written by the gateway's own writer (:func:`gateway.vouchers.xml_mapping.voucher_to_xml`) and checked by
the same schema and rules the intake applies, so the form cannot produce a voucher the gateway would refuse
for its content. Every problem is reported against the form field it concerns (``line2_amount``), or on the
whole form when it names none."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from lxml import etree

from gateway.errors import Problem
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.model import (
    DocumentType,
    ObjectClass,
    PayeeIdType,
    PayeeLine,
    PaymentMethod,
    PaymentMethodKind,
    Urgency,
    Voucher,
)
from gateway.vouchers.rules import voucher_problems
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.validation import schema_problems

FORM_LINES = 5
"""Payee rows on the form; rows left empty are skipped."""
HEADER_FIELDS = ("voucher_number", "fiscal_year", "document_type", "payment_method", "urgency", "budget_subject",
                 "object_class", "purpose", "prepared_on")
LINE_FIELDS = ("payee_name", "payee_id_type", "payee_id", "bank_code", "branch_code", "account_number", "amount",
               "memo")
CHOICES = {
    "document_type": [d.value for d in DocumentType],
    "payment_method": [PaymentMethodKind.CREDIT_TRANSFER.value, PaymentMethodKind.ENTRUSTED_TRANSFER.value],
    "urgency": [u.value for u in Urgency],
    "object_class": [o.value for o in ObjectClass],
    "payee_id_type": [p.value for p in PayeeIdType],
}
_ELEMENT_FIELD = {"VoucherNumber": "voucher_number", "FiscalYear": "fiscal_year", "DocumentType": "document_type",
                  "PaymentMethod": "payment_method", "Urgency": "urgency", "BudgetSubject": "budget_subject",
                  "ObjectClass": "object_class", "Purpose": "purpose", "PreparedOn": "prepared_on",
                  "PayeeName": "payee_name", "PayeeId": "payee_id", "BankCode": "bank_code",
                  "BranchCode": "branch_code", "AccountNumber": "account_number", "Amount": "amount", "Memo": "memo"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Characters XML 1.0 cannot hold (lxml refuses them): a problem of the field they were typed in."""
_LINE_STEP = re.compile(r"/Line(?:\[@number=(\d+)\]|\[(\d+)\])?(?:/|$)")


@dataclass
class FormResult:
    xml: bytes | None = None
    filename: str | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)
    """Form field name (or ``""`` for the whole form) → messages."""

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


def line_field(row: int, name: str) -> str:
    return f"line{row}_{name}"


def _int(values: dict[str, str], name: str, result: FormResult) -> int:
    text = values.get(name, "").strip().replace(",", "")
    if not (text.isascii() and text.isdigit()) or len(text) > 15:  # "²".isdigit(), but int("²") fails
        result.add(name, f"a whole number is needed, not {text!r}")
        return 0
    return int(text)


def _choice(values: dict[str, str], name: str, kind, result: FormResult, key: str | None = None):
    text = values.get(name, "").strip()
    if text not in CHOICES[key or name]:
        result.add(name, f"choose one of {', '.join(CHOICES[key or name])}")
        return None
    return kind(text)


def build_voucher(values: dict[str, str], *, agency: str, today: datetime.date,
                  banks: BankDirectory) -> FormResult:
    """Read the posted form into a voucher of ``agency`` and check it; ``xml`` only when there is no problem."""
    result = FormResult()
    for name, value in values.items():
        if _CONTROL.search(value):
            result.add(name, "remove the control character (not allowed in a voucher)")
    if result.errors:
        return result
    fiscal_year = _int(values, "fiscal_year", result)
    document_type = _choice(values, "document_type", DocumentType, result)
    method = _choice(values, "payment_method", PaymentMethodKind, result)
    urgency = _choice(values, "urgency", Urgency, result)
    object_class = _choice(values, "object_class", ObjectClass, result)
    try:
        prepared_on = datetime.date.fromisoformat(values.get("prepared_on", "").strip())
    except ValueError:
        result.add("prepared_on", "a date YYYY-MM-DD is needed")
        prepared_on = today
    rows: dict[int, int] = {}  # line number → form row
    lines = []
    for row in range(1, FORM_LINES + 1):
        if not any(values.get(line_field(row, name), "").strip() for name in LINE_FIELDS if name != "payee_id_type"):
            continue
        number = len(lines) + 1
        rows[number] = row
        id_type = _choice(values, line_field(row, "payee_id_type"), PayeeIdType, result, "payee_id_type")
        memo = values.get(line_field(row, "memo"), "").strip() or None
        lines.append(PayeeLine(number, values.get(line_field(row, "payee_name"), "").strip(),
                               id_type or PayeeIdType.NATIONAL_ID, values.get(line_field(row, "payee_id"), "").strip(),
                               values.get(line_field(row, "bank_code"), "").strip(),
                               values.get(line_field(row, "branch_code"), "").strip(),
                               values.get(line_field(row, "account_number"), "").strip(),
                               _int(values, line_field(row, "amount"), result), None, memo))
    if not lines:
        result.add(line_field(1, "payee_name"), "at least one payee line is needed")
    if result.errors:
        return result
    voucher = Voucher(agency, fiscal_year, values.get("voucher_number", "").strip(), 1, document_type,
                      PaymentMethod(method), urgency, values.get("budget_subject", "").strip(), object_class,
                      values.get("purpose", "").strip(), prepared_on, tuple(lines), len(lines),
                      sum(line.amount for line in lines))
    xml = voucher_to_xml(voucher)
    problems = schema_problems(etree.fromstring(xml), "voucher.xsd")
    if not problems:
        problems = voucher_problems(voucher, today=today, banks=banks)
    for problem in problems:
        result.add(_field_of(problem, rows), f"{problem.code}: {problem.message}")
    if not result.errors:
        result.xml = xml
        result.filename = f"{voucher.voucher_id}-r1.xml"
    return result


def _field_of(problem: Problem, rows: dict[int, int]) -> str:
    """The form field a problem's XML path names, or ``""``."""
    path = problem.path or ""
    leaf = re.sub(r"\[.*?\]", "", path.rstrip("/").rsplit("/", 1)[-1])
    name = _ELEMENT_FIELD.get(leaf)
    if name is None:
        return ""
    if name in LINE_FIELDS:
        step = _LINE_STEP.search(path)
        if step is None:
            return ""
        number = int(step.group(1) or step.group(2) or 1)
        return line_field(rows.get(number, number), name)
    return name
