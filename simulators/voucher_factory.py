"""Realistic vouchers for tests, simulators and the demo, as an agency's accounting system would make them.

Payees get valid IDs and real bank branches from the FISC list, amounts are whole NT$, payroll vouchers
pay the same people every month. A seed makes every voucher reproducible.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import replace

from adapters.command_line import CliError
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.identifiers import make_business_id, make_national_id, make_resident_id
from gateway.vouchers.model import (
    DocumentType,
    Notice,
    NoticeChannel,
    ObjectClass,
    PayeeIdType,
    PayeeLine,
    PaymentMethod,
    PaymentMethodKind,
    Urgency,
    Voucher,
)
from gateway.vouchers.rules import roc_year
from simulators.names import ID_LETTERS, person_name

COMPANIES = ("大同資訊股份有限公司", "信義營造有限公司", "中山文具行", "北投清潔服務社", "士林印刷股份有限公司",
             "內湖科技股份有限公司", "萬華餐飲有限公司", "松山交通事業股份有限公司")
PURPOSES = ("辦公用品採購", "清潔服務費", "印刷費", "資訊設備維護費", "活動補助款", "員工薪資", "水電費")


class VoucherFactory:
    def __init__(self, banks: BankDirectory, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.banks = banks
        self._branches = [b for code in banks.remittance_banks() for b in banks.branches_of(code)]
        self._serial = 0

    def _person_id(self) -> tuple[PayeeIdType, str]:
        rng = self.rng
        if rng.random() < 0.05:
            return PayeeIdType.RESIDENT_ID, make_resident_id(rng.choice(ID_LETTERS), rng.choice("89"),
                                                             f"{rng.randrange(10**7):07d}")
        return PayeeIdType.NATIONAL_ID, make_national_id(rng.choice(ID_LETTERS), rng.choice("12"),
                                                         f"{rng.randrange(10**7):07d}")

    def payee(self, number: int, *, company: bool | None = None, amount: int | None = None) -> PayeeLine:
        rng = self.rng
        company = rng.random() < 0.3 if company is None else company
        if company:
            payee_name = rng.choice(COMPANIES)
            id_type, payee_id = PayeeIdType.BUSINESS_ID, make_business_id(f"{rng.randrange(10**7):07d}")
        else:
            payee_name = person_name(rng)
            id_type, payee_id = self._person_id()
        branch = rng.choice(self._branches)
        channel = rng.random()
        if channel < 0.6:
            notice = Notice(NoticeChannel.EMAIL, f"payee{rng.randrange(10**6)}@example.com.tw")
        elif channel < 0.7:
            notice = Notice(NoticeChannel.FAX, f"02-{rng.randrange(10**7, 10**8)}")
        elif channel < 0.8:
            notice = Notice(NoticeChannel.POST, "臺北市信義區市府路1號", post_code="110")
        else:
            notice = None
        return PayeeLine(
            number=number, payee_name=payee_name, payee_id_type=id_type, payee_id=payee_id,
            bank_code=branch.bank_code, branch_code=branch.branch_code,
            account_number=f"{rng.randrange(10**11, 10**14)}",
            amount=amount if amount is not None else rng.randrange(500, 500_000), notice=notice,
        )

    def voucher(self, agency_code: str, *, today: datetime.date, lines: int | None = None,
                voucher_number: str | None = None, payroll: bool = False) -> Voucher:
        rng = self.rng
        if lines is None:
            lines = rng.randint(1, 5)
        self._serial += 1
        number = voucher_number or f"{rng.randrange(10**4):04d}{self._serial:06d}"
        payees = tuple(self.payee(i + 1, company=False if payroll else None,
                                  amount=rng.randrange(28_000, 120_000) if payroll else None) for i in range(lines))
        method = PaymentMethod(PaymentMethodKind.ENTRUSTED_TRANSFER if payroll else PaymentMethodKind.CREDIT_TRANSFER)
        return Voucher(
            agency_code=agency_code, fiscal_year=roc_year(today), voucher_number=number, revision=1,
            document_type=DocumentType.PAYMENT, payment_method=method,
            urgency=Urgency.URGENT if rng.random() < 0.1 else Urgency.ORDINARY,
            budget_subject=f"{rng.randrange(10**10):010d}",
            object_class=ObjectClass.PERSONNEL if payroll else rng.choice(list(ObjectClass)),
            purpose="員工薪資" if payroll else rng.choice(PURPOSES), prepared_on=today,
            lines=payees, line_count=len(payees), total_amount=sum(p.amount for p in payees),
        )

    def correction(self, original: Voucher, **changes) -> Voucher:
        """The next revision of ``original`` (after a 退件), linking back to it."""
        return replace(original, revision=original.revision + 1, corrects=original.ref, **changes)


def _new(args) -> int:
    import sys
    from pathlib import Path

    from adapters.clock import taipei_today
    from adapters.pki_manifest import read_pki_manifest
    from gateway.vouchers.xml_mapping import voucher_to_xml

    try:
        agencies = read_pki_manifest(args.pki)["agencies"]
    except OSError:
        raise CliError(f"{args.pki} is not a PKI folder made by `vgw pki init` (no manifest.json)") from None
    if args.agency not in agencies:
        raise CliError(f"agency {args.agency} is not in {args.pki}; known: {', '.join(sorted(agencies))}")
    if args.lines is not None and not 1 <= args.lines <= 5000:
        raise CliError("--lines must be between 1 and 5000")
    factory = VoucherFactory(BankDirectory.shipped(), seed=args.seed)
    today = taipei_today()
    if args.count is None:
        sys.stdout.buffer.write(voucher_to_xml(factory.voucher(args.agency, today=today, lines=args.lines,
                                                               payroll=args.payroll)))
        return 0
    if not args.out_dir:
        raise CliError("--count needs --out-dir")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for _ in range(args.count):
        voucher = factory.voucher(args.agency, today=today, lines=args.lines, payroll=args.payroll)
        (out / f"{voucher.voucher_id}.xml").write_bytes(voucher_to_xml(voucher))
    print(f"wrote {args.count} vouchers to {out}")
    return 0


def register(registry) -> None:
    p = registry.command("voucher", "new", help="make a realistic unsigned voucher (simulated agency)",
                         handler=_new)
    p.add_argument("--pki", required=True, help="PKI folder (for the agency list)")
    p.add_argument("--agency", required=True, help="agency code, e.g. 379000001A")
    p.add_argument("--lines", type=int, help="payee lines (default: 1-5, random)")
    p.add_argument("--payroll", action="store_true", help="a payroll voucher (委託劃帳, personnel)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, help="make N distinct vouchers (needs --out-dir)")
    p.add_argument("--out-dir", help="folder for --count vouchers, one file each")
