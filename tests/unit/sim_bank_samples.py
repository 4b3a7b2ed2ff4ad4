"""Transfer messages for the simulated bank's tests, and what its reports say, read as the gateway reads them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.bank.batching import plan_transfers
from gateway.bank.envelope import open_sealed, seal
from gateway.bank.pain001 import TAIPEI_TREASURY, build_pain001
from gateway.bank.payments import BankReport, Payment
from gateway.bank.reports import read_camt054, read_pain002
from gateway.bank.settlement import BANK_NAME, GATEWAY_NAME, TRANSFER_TYPE
from simulators.bank import SimulatedBank
from simulators.bank_faults import BankFaults
from simulators.pki.layout import load_cert, load_key

from ..conftest import NOW


def clock():
    return NOW


def make_bank(pki, **options) -> SimulatedBank:
    manifest = pki.manifest
    options.setdefault("faults", BankFaults())
    return SimulatedBank(load_cert(Path(manifest["gateway"]["cert"])), load_key(Path(manifest["bank"]["key"])),
                         load_cert(Path(manifest["bank"]["cert"])), clock, **options)


def transfer(pki, payments: Sequence[Payment], *, edit=None) -> tuple[str, bytes]:
    """(MsgId, sealed pain.001) of one transfer message carrying ``payments``, signed by the gateway; ``edit``
    may change the document before it is sealed."""
    plans = plan_transfers(payments, max_per_message=len(payments))
    assert len(plans) == 1
    document = build_pain001(plans[0], created_at=NOW)
    if edit is not None:
        edit(document)
    key, cert = (load_key(Path(pki.manifest["gateway"]["key"])), load_cert(Path(pki.manifest["gateway"]["cert"])))
    return plans[0].message_id, seal(document, message_id=plans[0].message_id, message_type=TRANSFER_TYPE,
                                     sender=GATEWAY_NAME, receiver=BANK_NAME, key=key, cert=cert, created_at=NOW)


def read(pki, report: bytes) -> BankReport:
    """A report as the gateway's intake reads it (pinned to the bank's certificate)."""
    sealed = open_sealed(report, signer_cert=load_cert(Path(pki.manifest["bank"]["cert"])),
                         allowed_types=frozenset({"pain.002.001.10", "camt.054.001.08"}), sender=BANK_NAME,
                         receiver=GATEWAY_NAME, now=NOW)
    if sealed.message_type == "camt.054.001.08":
        return read_camt054(sealed.document, treasury_account=TAIPEI_TREASURY.account_number)
    return read_pain002(sealed.document)


def statuses(pki, report: bytes) -> dict[str, tuple[str, str | None]]:
    """EndToEndId → (outcome kind, reason code) of a pain.002's transaction details."""
    return {o.end_to_end_id: (o.kind.value, o.reason_code) for o in read(pki, report).outcomes if o.end_to_end_id}
