"""What simulated agencies pay, and how their people handle it: the business mix of ``vgw sim agency``.

Pure and seeded: a :class:`Plan` says which voucher an agency's accounting system prepares (a vendor payment
of 1–5 lines, a subsidy, or the monthly payroll of 100–800 lines paying the same people each month), whether
it is urgent, whether the agency's deputy reviews it instead of the reviewer, and whether one of the four
stages sends it back (退件) with a reason, to be corrected as the next revision. The corrections themselves
(after a 退件, and the re-remittance of lines the bank returned) are made here too, so the runner in
:mod:`simulators.agency` only talks to the gateway.

Each plan draws from its own RNG seeded by (seed, index), so a run is reproducible whatever the order the
concurrent workers take plans in.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass, replace

from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.model import PayeeLine, Urgency, Voucher
from gateway.vouchers.rules import roc_year
from gateway.workflow.actions import Reason, ReasonCode
from gateway.workflow.transitions import Actor
from simulators.voucher_factory import VoucherFactory

STAGES = (Actor.REVIEWER, Actor.ACCOUNTANT, Actor.HEAD, Actor.RELEASER)
"""The four signed stages inside the agency; the fifth, the treasury's, is the gateway's own check."""

SUBJECTS = ("5101010100", "5102020200", "5103030300")
"""Every simulated agency's budget subjects (歲出科目): personnel, operations, subsidies."""
PAYROLL_SUBJECT, OPERATIONS_SUBJECT, SUBSIDY_SUBJECT = SUBJECTS
ALLOTTED = 50_000_000_000
"""What each (agency, subject) is allotted: ample, so the treasury check passes and the day is about payment."""

SEND_BACK_REASONS = (
    (ReasonCode.AMOUNT_WRONG, "第 1 行金額與契約不符"),
    (ReasonCode.PAYEE_WRONG, "第 1 行受款帳號與存摺影本不符"),
    (ReasonCode.SUPPORTING_DOCUMENTS_MISSING, "缺發票正本"),
)


@dataclass(frozen=True)
class Mix:
    """Shares of the day's vouchers; the rest are vendor payments of 1–5 lines."""

    payroll: float = 0.01
    subsidy: float = 0.10
    urgent: float = 0.10
    deputy: float = 0.10
    send_back: float = 0.05
    payroll_first: bool = False  # the run's first voucher is a payroll (a demo day always shows one)
    payroll_lines: tuple[int, int] = (100, 800)
    subsidy_lines: tuple[int, int] = (5, 30)


@dataclass(frozen=True)
class SendBack:
    stage: Actor
    reason: Reason


@dataclass(frozen=True)
class Plan:
    index: int
    agency: str
    kind: str  # "vendor", "subsidy" or "payroll"
    voucher: Voucher
    deputy_reviews: bool
    send_back: SendBack | None


class AgencyMix:
    """Plans for ``agencies`` from ``seed``; ``run_tag`` (1–5 of [0-9A-Z]) keeps this run's voucher numbers
    apart from another run's on the same gateway."""

    def __init__(self, agencies: list[str], *, seed: int, run_tag: str, mix: Mix = Mix(),
                 banks: BankDirectory | None = None) -> None:
        if not agencies:
            raise ValueError("no agencies")
        if not (1 <= len(run_tag) <= 5 and run_tag.isalnum() and run_tag.upper() == run_tag):
            raise ValueError(f"run tag must be 1 to 5 of [0-9A-Z], got {run_tag!r}")
        self.agencies = list(agencies)
        self.seed = seed
        self.run_tag = run_tag
        self.mix = mix
        self.factory = VoucherFactory(banks or BankDirectory.shipped(), seed=seed)
        self._rosters: dict[str, tuple[PayeeLine, ...]] = {}

    def roster(self, agency: str) -> tuple[PayeeLine, ...]:
        """The agency's staff: the same payees (and accounts) on every payroll, as in life."""
        if agency not in self._rosters:
            low, high = self.mix.payroll_lines
            self.factory.rng = random.Random(f"{self.seed}:roster:{agency}")
            size = self.factory.rng.randint(low, high)
            self._rosters[agency] = tuple(self.factory.payee(i + 1, company=False, amount=1) for i in range(size))
        return self._rosters[agency]

    def plan(self, index: int, today: datetime.date) -> Plan:
        """The ``index``-th voucher of the run (agencies in turn), reproducible from the seed alone."""
        rng = random.Random(f"{self.seed}:plan:{index}")
        agency = self.agencies[index % len(self.agencies)]
        number = f"{self.run_tag}{index:06d}".rjust(12, "0") if index < 10**6 else None
        if number is None:
            raise ValueError("a run has at most 1,000,000 vouchers")
        draw = rng.random()
        m = self.mix
        self.factory.rng = rng
        if draw < m.payroll or (index == 0 and m.payroll_first):
            kind = "payroll"
            staff = self.roster(agency)
            self.factory.rng = rng
            lines = tuple(p._replace(amount=rng.randrange(28_000, 120_000)) for p in staff)
            base = self.factory.voucher(agency, today=today, lines=1, voucher_number=number, payroll=True)
            voucher = replace(base, lines=lines, line_count=len(lines), total_amount=sum(p.amount for p in lines),
                              budget_subject=PAYROLL_SUBJECT)
        elif draw < m.payroll + m.subsidy:
            kind = "subsidy"
            voucher = replace(self.factory.voucher(agency, today=today, lines=rng.randint(*m.subsidy_lines),
                                                   voucher_number=number),
                              purpose="活動補助款", budget_subject=SUBSIDY_SUBJECT)
        else:
            kind = "vendor"
            voucher = replace(self.factory.voucher(agency, today=today, voucher_number=number),
                              budget_subject=OPERATIONS_SUBJECT)
        voucher = replace(voucher, urgency=Urgency.URGENT if rng.random() < m.urgent else Urgency.ORDINARY)
        deputy = rng.random() < m.deputy
        send_back = None
        if rng.random() < m.send_back:
            code, text = rng.choice(SEND_BACK_REASONS)
            send_back = SendBack(rng.choice(STAGES), Reason(code, text))
        return Plan(index, agency, kind, voucher, deputy, send_back)


def corrected(voucher: Voucher, reason: Reason) -> Voucher:
    """The next revision after a 退件 for ``reason``: the preparer fixes what the stage pointed at."""
    first = voucher.lines[0]
    if reason.code is ReasonCode.AMOUNT_WRONG:
        fixed = first._replace(amount=max(1, first.amount - 100))
    elif reason.code is ReasonCode.PAYEE_WRONG:
        fixed = first._replace(account_number=_other_account(first.account_number, voucher.revision))
    else:
        fixed = first  # the missing documents are attached on paper; the voucher is signed again
    lines = (fixed,) + voucher.lines[1:]
    return replace(voucher, revision=voucher.revision + 1, corrects=voucher.ref, lines=lines,
                   total_amount=sum(p.amount for p in lines))


def re_remittance(voucher: Voucher, returned_lines: list[int]) -> Voucher:
    """The next revision after a 退匯: only the returned lines, renumbered, each with the account the payee
    gave again (a new number); the paid lines are not paid twice."""
    wanted = set(returned_lines)
    lines = tuple(p._replace(number=i + 1, account_number=_other_account(p.account_number, voucher.revision))
                  for i, p in enumerate(p for p in voucher.lines if p.number in wanted))
    if not lines:
        raise ValueError("nothing to re-remit")
    return replace(voucher, revision=voucher.revision + 1, corrects=voucher.ref, lines=lines, line_count=len(lines),
                   total_amount=sum(p.amount for p in lines))


def _other_account(account: str, salt: int) -> str:
    """Another plausible account number of the same length (6–16 digits)."""
    digits = len(account)
    changed = (int(account) * 7 + 1_000_003 * (salt + 1)) % 10**digits
    return f"{changed:0{digits}d}" if changed != int(account) else f"{(changed + 1) % 10**digits:0{digits}d}"


def allotments(agencies: list[str], today: datetime.date) -> list[tuple[str, int, str, int]]:
    """(agency, fiscal year, subject, amount) rows for ``vgw budget load``: what the city allots each simulated
    agency before its day starts."""
    year = roc_year(today)
    return [(agency, year, subject, ALLOTTED) for agency in agencies for subject in SUBJECTS]


def allotments_csv(agencies: list[str], today: datetime.date) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("agency", "fiscal_year", "budget_subject", "amount"))
    writer.writerows(allotments(agencies, today))
    return out.getvalue()
