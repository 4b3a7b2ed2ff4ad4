"""What ``vgw demo`` found: the expected-versus-got outcomes of its probes, the business day's summary from
the agency simulator, the bank simulator's tally, and the store's reconciliation and audit chain. ``ok`` is
the demo's exit status: every probe as expected, every voucher of the day final, the money reconciled, no
EndToEndId booked twice by the bank, the audit chain whole."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outcome:
    name: str
    expected: str  # "accepted" or an error code
    got: str
    detail: str = ""
    part: str = "in-process"  # or "gateway": probes of refusals through the running gateway

    @property
    def ok(self) -> bool:
        return self.expected == self.got


@dataclass
class DemoReport:
    pki_dir: str
    ocsp_url: str
    mode: str = "embedded"  # "embedded" (SQLite + in-process queues) or "amqp" (RabbitMQ + the given store)
    outcomes: list[Outcome] = field(default_factory=list)
    day: dict = field(default_factory=dict)  # simulators.agency.AgencyReport.as_dict()
    bank: dict = field(default_factory=dict)  # the bank's counts, bookings, and EndToEndIds booked twice
    reconcile: dict = field(default_factory=dict)  # `vgw audit reconcile --json`
    audit: dict = field(default_factory=dict)  # `vgw audit verify --json`
    open_vouchers: dict = field(default_factory=dict)  # status -> revisions not final in the whole store
    evidence: str | None = None
    problems: list[str] = field(default_factory=list)  # what stopped the demo (a process that did not start)
    seconds: float = 0.0

    @property
    def final(self) -> bool:
        """Every voucher of the day ended paid or returned (after re-remittance), none unfinished."""
        outcomes = self.day.get("outcomes", {})
        return bool(outcomes) and set(outcomes) <= {"paid", "returned"}

    @property
    def ok(self) -> bool:
        return (not self.problems and bool(self.outcomes) and all(o.ok for o in self.outcomes)
                and bool(self.day.get("ok")) and self.final and bool(self.reconcile.get("ok"))
                and self.bank.get("booked_twice") == 0 and self.bank.get("paid_lines") == self.bank.get("booked")
                and bool(self.audit.get("ok")) and not self.open_vouchers)

    def as_dict(self) -> dict:
        signed = [o for o in self.outcomes if o.part == "in-process"]
        return {
            "ok": self.ok, "mode": self.mode, "pki_dir": self.pki_dir, "ocsp_url": self.ocsp_url,
            "seconds": round(self.seconds, 2), "final": self.final, "problems": self.problems,
            "accepted": sum(1 for o in signed if o.got == "accepted"),
            "refused": sum(1 for o in signed if o.got != "accepted"),
            "outcomes": [{"name": o.name, "expected": o.expected, "got": o.got, "ok": o.ok, "detail": o.detail,
                          "part": o.part} for o in self.outcomes],
            "day": self.day, "bank": self.bank, "open_vouchers": self.open_vouchers, "reconcile": self.reconcile, "audit": self.audit,
            "evidence": self.evidence,
        }
