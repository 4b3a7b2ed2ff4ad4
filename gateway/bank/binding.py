"""What binds a bank report to exactly what was sent: the message it answers, and each line's message and block.

A report the bank really signed can still be about something else: a status report about transfer message A
that lists a payment of message B, a booking whose references name another block, a report repeating counts
or a creation time that are not those of the message it names. Each is a mistake (or a replay) a real agent
bank's systems can make, and each would move money on the wrong line. So before a report changes anything,
everything it says about *what* it answers is compared with what the gateway stored when it sent it; a
report that fails any comparison changes nothing and is dead-lettered (gateway/bank/settlement.py).

The envelope's own binding (sender, receiver, MessageId = the document's MsgId) is checked earlier, on
opening (gateway/bank/envelope.py step 8). Here, with the stored message and lines in hand:

- a pain.002's ``OrgnlMsgId`` names an outbound transfer message we stored (sent, or confirmed and not yet
  marked: a bank may answer before the relay records the confirm); its ``OrgnlMsgNmId`` is that message's
  ISO type; ``OrgnlCreDtTm``, ``OrgnlNbOfTxs`` and ``OrgnlCtrlSum``, when the bank repeats them, are the
  message's; every ``OrgnlPmtInfId`` is one of its blocks, with that block's count and control sum when
  repeated (``bank-reference-unknown`` for a message or block we never sent, ``bank-original-mismatch`` for
  facts that disagree);
- a payment's outcome (pain.002 ``TxInfAndSts``, camt.054 ``TxDtls``) is applied to a line only if that line
  was sent in the message and block the outcome names (pain.002: always named; camt.054: ``Refs/MsgId`` and
  ``Refs/PmtInfId`` when the bank gives them) and, when an instruction id is given, under that InstrId
  (ours is the EndToEndId): else ``bank-reference-unknown``.

Pure: values in, problems out.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.bank.payments import BankOutcome, OriginalMessage
from gateway.bank.store import PaymentRow, SentMessage

REFERENCE_UNKNOWN = "bank-reference-unknown"
ORIGINAL_MISMATCH = "bank-original-mismatch"


@dataclass(frozen=True)
class Unapplied:
    """Something a report says that cannot be applied: why (a stable code) and about what."""

    code: str
    reference: str
    message: str


def original_problems(original: OriginalMessage | None, sent: SentMessage | None) -> list[Unapplied]:
    """Every way a pain.002's account of the message it answers (``original``) disagrees with the message as
    sent (``sent``: None when no outbound message has that id). A camt.054 has no ``original``: []."""
    if original is None:
        return []
    ref = original.message_id
    if sent is None:
        return [Unapplied(REFERENCE_UNKNOWN, ref, f"no transfer message {ref!r} was sent to the bank")]
    problems: list[Unapplied] = []

    def differs(what: str, said, stored) -> None:
        if said is not None and said != stored:
            problems.append(Unapplied(ORIGINAL_MISMATCH, ref, f"the report says message {ref} has {what} "
                                      f"{said}, but it was sent with {stored}"))

    differs("type", original.message_name, sent.message_type)
    created = sent.created_at.replace(microsecond=0)  # CreDtTm is written to the second
    if original.created_at is not None and original.created_at != created:
        differs("creation time", original.created_at.isoformat(), created.isoformat())
    differs("transaction count", original.count, sent.payment_count)
    differs("control sum NT$", original.control_sum, sent.control_sum)
    for block in original.blocks:
        stored = sent.blocks.get(block.payment_info_id)
        if stored is None:
            problems.append(Unapplied(REFERENCE_UNKNOWN, block.payment_info_id, f"message {ref} was sent with no "
                                      f"payment block {block.payment_info_id!r}"))
            continue
        differs(f"in block {block.payment_info_id} a transaction count", block.count, stored[0])
        differs(f"in block {block.payment_info_id} a control sum NT$", block.control_sum, stored[1])
    return problems


def line_problem(outcome: BankOutcome, row: PaymentRow) -> Unapplied | None:
    """Why ``outcome`` (about one payment) must not be applied to ``row``, the stored line of its EndToEndId:
    the line was sent under another message, block or instruction id than the outcome names. None when bound."""
    named = ((outcome.original_message_id, row.message_id, "message"),
             (outcome.original_payment_info_id, row.payment_info_id, "payment block"),
             (outcome.instruction_id, row.end_to_end_id, "instruction id"))
    for said, sent, what in named:
        if said is not None and said != sent:
            return Unapplied(REFERENCE_UNKNOWN, row.end_to_end_id,
                             f"payment {row.end_to_end_id} was not sent under {what} {said!r} (it went in message "
                             f"{row.message_id}, block {row.payment_info_id})")
    return None
