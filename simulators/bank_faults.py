"""What can go wrong between a bank and the gateway, as the simulated bank injects it on purpose.

A tester needs the gateway to meet, on demand, what a real bank link does on a bad day: a report delivered
twice, reports out of order, an answer lost, an answer late, garbage on the queue, the bank down for a while,
a whole file rejected. :class:`BankFaults` holds one rate per fault and decides each one with a seeded hash
of what it is about (the transfer message's MsgId and delivery attempt, or a report's id), never with a
shared random stream: the decisions then do not depend on the order in which concurrent deliveries happen to
be processed, so ``--seed`` makes a run reproducible, and a re-sent message (the next attempt) gets a fresh
draw — a lost answer usually gets through the second time, as on a real link.

The decider is pure; :class:`simulators.bank.SimulatedBank` acts on its answers and counts every fault it
injected in its ``BankCounts``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields

REORDER_HOLD_SECONDS = 1.0
"""Longest a reordered message's reports are held back waiting for the next message's: nothing is held for ever."""
MALFORMED_KINDS = ("truncated", "bad-signature")
"""A malformed report is cut short (not even XML), or a sealed report whose content was changed after signing
(well-formed and schema-valid, but its signature no longer matches): the two ways garbage looks on a queue."""


def _share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} is a share in [0, 1], not {value!r}")


@dataclass(frozen=True)
class BankFaults:
    """The rates of injected faults (each a share in [0, 1]; all 0: a well-behaved bank) and the seed that
    decides them."""

    seed: int = 0
    """Seeds every decision below (with the bank's ``--seed``): the same seed and messages, the same faults."""
    duplicate_rate: float = 0.0
    """Share of reports published twice: same message id, same bytes (a redelivery the gateway must absorb)."""
    reorder_rate: float = 0.0
    """Share of transfer-message deliveries whose reports are published in reverse order (a camt.054 before its
    pain.002) and after the next message's reports (held at most :data:`REORDER_HOLD_SECONDS`)."""
    drop_rate: float = 0.0
    """Share of deliveries whose reports are never sent although the transfer message is acknowledged (the
    bank processed it; the answer was lost). Decided per delivery attempt: a re-send usually gets through."""
    delay_rate: float = 0.0
    """Share of deliveries whose reports are published ``delay_seconds`` late."""
    delay_seconds: float = 1.0
    malformed_rate: float = 0.0
    """Share of deliveries answered, in addition to the real reports, by a malformed report under a fresh
    message id (see :data:`MALFORMED_KINDS`): the gateway must dead-letter it and apply nothing."""
    down_rate: float = 0.0
    """Share of deliveries upon which the bank goes down for ``down_seconds``: what arrives meanwhile is held
    (neither answered nor acknowledged) and processed in order once it is back up."""
    down_seconds: float = 1.0
    reject_file_rate: float = 0.0
    """Share of transfer messages rejected as a whole: pain.002 group status RJCT with reason AM10 (control sum
    invalid), nothing booked. Decided per MsgId, so a re-send of the same message is rejected again."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name.endswith("_rate"):
                _share(f.name, getattr(self, f.name))
        for name in ("delay_seconds", "down_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} is not negative, not {getattr(self, name)!r}")

    @property
    def any(self) -> bool:
        """Whether any fault can happen at all."""
        return any(getattr(self, f.name) > 0 for f in fields(self) if f.name.endswith("_rate"))

    def _hits(self, fault: str, rate: float, *about: object) -> bool:
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self._draw(fault, *about) < rate

    def _draw(self, fault: str, *about: object) -> float:
        """A uniform number in [0, 1) fixed by the seed, the fault's name and what it is about."""
        text = "\0".join((str(self.seed), fault, *(str(part) for part in about)))
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64

    # --- per transfer-message delivery: (MsgId, attempt), attempt counting from 1 ---

    def drops(self, message_id: str, attempt: int) -> bool:
        return self._hits("drop", self.drop_rate, message_id, attempt)

    def reorders(self, message_id: str, attempt: int) -> bool:
        return self._hits("reorder", self.reorder_rate, message_id, attempt)

    def delays(self, message_id: str, attempt: int) -> bool:
        return self._hits("delay", self.delay_rate, message_id, attempt)

    def goes_down(self, message_id: str, attempt: int) -> bool:
        return self._hits("down", self.down_rate, message_id, attempt)

    def malformed(self, message_id: str, attempt: int) -> str | None:
        """Which malformed report to add to this delivery's answer (one of :data:`MALFORMED_KINDS`), or None."""
        if not self._hits("malformed", self.malformed_rate, message_id, attempt):
            return None
        return MALFORMED_KINDS[int(self._draw("malformed-kind", message_id, attempt) * len(MALFORMED_KINDS))]

    # --- per transfer message, whatever the attempt ---

    def rejects_file(self, message_id: str) -> bool:
        return self._hits("reject-file", self.reject_file_rate, message_id)

    # --- per published report ---

    def duplicates(self, report_id: str, attempt: int) -> bool:
        return self._hits("duplicate", self.duplicate_rate, report_id, attempt)
