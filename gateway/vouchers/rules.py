"""The rules of a payment voucher that a schema cannot say.

Each rule returns problems rather than raising, so one report can list everything wrong with a voucher
(an agency fixing a 500-line payroll wants all the bad lines at once). Codes are stable; messages name
the line. ``today`` is passed in: the core never reads the clock.
"""

from __future__ import annotations

import datetime

from gateway.errors import Problem
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.identifiers import is_valid_business_id, is_valid_national_id, is_valid_resident_id
from gateway.vouchers.model import PayeeIdType, PaymentMethodKind, Voucher

MAX_FISCAL_YEAR_LAG = 1  # a voucher may still settle last fiscal year's accounts (保留款)
MAX_FISCAL_YEAR_LEAD = 1  # or be prepared in December for next January


def roc_year(day: datetime.date) -> int:
    """ROC (民國) year of a Gregorian date: 2026 -> 115."""
    return day.year - 1911


def _line_path(number: int, field: str) -> str:
    return f"/Voucher/Payees/Line[@number={number}]/{field}"


def voucher_problems(v: Voucher, *, today: datetime.date, banks: BankDirectory) -> list[Problem]:
    """Every business-rule problem of ``v`` (empty when the voucher is sound)."""
    problems: list[Problem] = []
    if v.line_count != len(v.lines):
        problems.append(Problem("line-count-mismatch",
                                f"Control says {v.line_count} lines but the voucher has {len(v.lines)}",
                                path="/Voucher/Control/LineCount"))
    total = sum(line.amount for line in v.lines)
    if v.total_amount != total:
        problems.append(Problem("control-total-mismatch",
                                f"Control says NT${v.total_amount:,} but the lines add up to NT${total:,}",
                                path="/Voucher/Control/TotalAmount"))
    numbers = [line.number for line in v.lines]
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(Problem("line-number-sequence", "lines must be numbered 1, 2, 3, ... in order",
                                path="/Voucher/Payees"))
    this_year = roc_year(today)
    if not this_year - MAX_FISCAL_YEAR_LAG <= v.fiscal_year <= this_year + MAX_FISCAL_YEAR_LEAD:
        problems.append(Problem("fiscal-year-out-of-range",
                                f"fiscal year {v.fiscal_year} is not within one year of {this_year}",
                                path="/Voucher/Header/FiscalYear"))
    if v.prepared_on > today:
        problems.append(Problem("prepared-in-future", f"prepared on {v.prepared_on}, after today ({today})",
                                path="/Voucher/Header/PreparedOn"))
    problems += _revision_problems(v)
    problems += _line_problems(v, today, banks)
    return problems


def _line_problems(v: Voucher, today: datetime.date, banks: BankDirectory) -> list[Problem]:
    """Per-line rules. Written as one tight loop (hundreds of lines per payroll voucher); the messages are
    only built for the lines that fail."""
    problems: list[Problem] = []
    deposit = v.payment_method.kind is not PaymentMethodKind.TREASURY_CHEQUE
    national, resident, business = PayeeIdType.NATIONAL_ID, PayeeIdType.RESIDENT_ID, PayeeIdType.BUSINESS_ID
    has_branch, reachable = banks.has_branch, banks.is_remittance_bank
    for line in v.lines:
        id_type = line.payee_id_type
        if id_type is national:
            id_ok = is_valid_national_id(line.payee_id)
        elif id_type is resident:
            id_ok = is_valid_resident_id(line.payee_id)
        else:
            id_ok = id_type is business and is_valid_business_id(line.payee_id, on=today)
        branch_ok = has_branch(line.bank_code, line.branch_code)
        if id_ok and branch_ok and line.amount > 0 and (not deposit or reachable(line.bank_code)):
            continue
        if line.amount <= 0:
            problems.append(Problem("amount-not-positive", f"line {line.number}: amount must be above zero",
                                    path=_line_path(line.number, "Amount")))
        if not id_ok:
            problems.append(Problem("payee-id-invalid",
                                    f"line {line.number}: {line.payee_id} is not a valid {id_type.value}",
                                    path=_line_path(line.number, "PayeeId")))
        if not branch_ok:
            problems.append(Problem("bank-branch-unknown",
                                    f"line {line.number}: bank {line.bank_code} branch {line.branch_code} is not "
                                    "in the FISC list", path=_line_path(line.number, "BranchCode")))
        elif deposit and not reachable(line.bank_code):
            problems.append(Problem("bank-not-reachable",
                                    f"line {line.number}: bank {line.bank_code} takes no interbank remittances",
                                    path=_line_path(line.number, "BankCode")))
    return problems


def _revision_problems(v: Voucher) -> list[Problem]:
    path = "/Voucher/Header/Corrects"
    if v.revision == 1 and v.corrects is None:
        return []
    if v.corrects is None:
        return [Problem("correction-reference-missing",
                        f"revision {v.revision} must name the voucher revision it corrects", path=path)]
    ref = v.corrects
    if ref.agency_code != v.agency_code:
        return [Problem("correction-reference-invalid", "a correction must come from the same agency", path=path)]
    if ref.voucher_id == v.voucher_id and ref.revision >= v.revision:
        return [Problem("correction-reference-invalid",
                        f"revision {v.revision} cannot correct revision {ref.revision} of the same voucher", path=path)]
    return []
