"""The payment voucher (付款憑單) as plain, frozen values.

These objects are what the rest of the gateway reasons about. They are only ever built from XML that the
signature verifier returned as signed (see :mod:`gateway.vouchers.check`) or by code that is about to sign
them, so a field here is never something an attacker slipped past the signature.
"""

from __future__ import annotations

import datetime
import enum
import re
from dataclasses import dataclass
from typing import NamedTuple


class DocumentType(enum.Enum):
    PAYMENT = "payment"  # 付款憑單
    TRANSFER = "transfer"  # 轉帳憑單
    EXPENDITURE_RECOVERY = "expenditure-recovery"  # 支出收回書
    CHEQUE_CANCELLATION = "cheque-cancellation"  # 支票註銷申請書


class PaymentMethodKind(enum.Enum):
    CREDIT_TRANSFER = "CreditTransfer"  # 電連存帳
    ENTRUSTED_TRANSFER = "EntrustedTransfer"  # 委託劃帳
    TREASURY_CHEQUE = "TreasuryCheque"  # 市庫支票


class Urgency(enum.Enum):
    URGENT = "urgent"
    ORDINARY = "ordinary"


class ObjectClass(enum.Enum):
    PERSONNEL = "personnel"  # 人事費
    OPERATIONS = "operations"  # 業務費
    GRANTS = "grants"  # 獎補助費
    DEBT = "debt"  # 債務費
    RESERVE = "reserve"  # 預備金
    CAPITAL = "capital"  # 設備及投資


class PayeeIdType(enum.Enum):
    NATIONAL_ID = "national-id"
    RESIDENT_ID = "resident-id"
    BUSINESS_ID = "business-id"


class NoticeChannel(enum.Enum):
    EMAIL = "Email"
    FAX = "Fax"
    POST = "Post"


@dataclass(frozen=True)
class PaymentMethod:
    kind: PaymentMethodKind
    cheque_delivery: str | None = None  # "collect" | "mail", cheques only
    cheque_reason: str | None = None  # why a cheque rather than a deposit, cheques only


class Notice(NamedTuple):
    """Where the payee's deposit notice (入戶通知) goes."""

    channel: NoticeChannel
    address: str  # e-mail address, fax number, or postal address text
    post_code: str | None = None  # postal channel only


class PayeeLine(NamedTuple):
    """One payee of a voucher. A NamedTuple rather than a frozen dataclass: a payroll voucher builds hundreds
    per check, and a frozen dataclass costs several times more to construct."""

    number: int
    payee_name: str
    payee_id_type: PayeeIdType
    payee_id: str
    bank_code: str
    branch_code: str
    account_number: str
    amount: int  # whole NT$
    notice: Notice | None = None
    memo: str | None = None


@dataclass(frozen=True, order=True)
class VoucherRef:
    """Identifies one revision of one voucher."""

    agency_code: str
    fiscal_year: int
    voucher_number: str
    revision: int

    @property
    def voucher_id(self) -> str:
        return voucher_id(self.agency_code, self.fiscal_year, self.voucher_number)


MAX_REVISION = 999  # schemas/voucher.xsd, RevisionType
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_revision(value: object) -> bool:
    """A voucher revision number: an int from 1 to 999."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_REVISION


def is_sha256_hex(value: object) -> bool:
    """How the gateway writes a SHA-256 digest everywhere: 64 lowercase hex digits."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def voucher_id(agency_code: str, fiscal_year: int, voucher_number: str) -> str:
    """The stable id of a voucher across its revisions: ``AGENCY-YEAR-NUMBER``, e.g. ``379000000A-115-000123``."""
    return f"{agency_code}-{fiscal_year:03d}-{voucher_number}"


@dataclass(frozen=True)
class Voucher:
    agency_code: str
    fiscal_year: int  # ROC year, 115 = 2026
    voucher_number: str
    revision: int
    document_type: DocumentType
    payment_method: PaymentMethod
    urgency: Urgency
    budget_subject: str  # 10 digits, 款項目節
    object_class: ObjectClass
    purpose: str
    prepared_on: datetime.date
    lines: tuple[PayeeLine, ...]
    line_count: int  # as declared in Control
    total_amount: int  # as declared in Control, whole NT$
    corrects: VoucherRef | None = None
    schema_version: str = "1.0"

    @property
    def voucher_id(self) -> str:
        return voucher_id(self.agency_code, self.fiscal_year, self.voucher_number)

    @property
    def ref(self) -> VoucherRef:
        return VoucherRef(self.agency_code, self.fiscal_year, self.voucher_number, self.revision)
