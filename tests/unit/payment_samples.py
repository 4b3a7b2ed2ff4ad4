"""Payment lines for the bank-exchange tests: valid by construction, with Chinese names and every id kind."""

from __future__ import annotations

import datetime

from gateway.bank.payments import Payment, end_to_end_id
from gateway.vouchers.identifiers import make_business_id, make_national_id, make_resident_id
from gateway.vouchers.model import voucher_id

AGENCY = "379000001A"
YEAR = 115
EXECUTION_DATE = datetime.date(2026, 3, 12)
METHODS = ("CreditTransfer", "EntrustedTransfer", "TreasuryCheque")
SURNAMES = "陳林黃張李王吳劉蔡楊"
GIVEN = "志明淑芬美玲家豪怡君俊傑雅婷"


def payee_id(index: int) -> str:
    """A business id, a national id or a resident id, in turn."""
    digits = f"{index % 10**7:07d}"
    kind = index % 3
    if kind == 0:
        return make_business_id(digits)
    if kind == 1:
        return make_national_id("A", "1" if index % 2 else "2", digits)
    return make_resident_id("F", "8", digits)


def payment(index: int, *, amount: int | None = None, method: str = "CreditTransfer",
            execution_date: datetime.date = EXECUTION_DATE, voucher: int | None = None, line: int | None = None,
            name: str | None = None, remittance: str = "一一五年三月份薪資", agency: str = AGENCY) -> Payment:
    """Line ``index`` (voucher ``index // 5000 + 1`` unless given), deterministic in every field."""
    number = f"{(voucher if voucher is not None else index // 5000 + 1):010d}"
    line_number = line if line is not None else index % 5000 + 1
    return Payment(
        end_to_end_id=end_to_end_id(agency, YEAR, number, 1, line_number),
        voucher_id=voucher_id(agency, YEAR, number), revision=1, line_number=line_number, agency=agency,
        amount=amount if amount is not None else 1 + (index * 7919) % 2_000_000,
        payee_name=name if name is not None else SURNAMES[index % 10] + GIVEN[index % 12] + GIVEN[(index * 5) % 12],
        payee_id=payee_id(index), bank_code="012" if index % 2 else "700",
        branch_code="2009" if index % 2 else "0021",
        account_number=f"{10**11 + index * 37:012d}", method=method, execution_date=execution_date,
        remittance=remittance)


def payments(count: int, **kwargs) -> list[Payment]:
    return [payment(i, **kwargs) for i in range(count)]
