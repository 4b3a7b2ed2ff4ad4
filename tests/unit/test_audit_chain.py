"""The audit hash chain, pure: any sequence of events chains and verifies; any change to any stored field
of any entry is reported at that entry."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit import entry_hash, next_entry, verify_chain
from gateway.store import GENESIS_HASH, AuditEntry, AuditEvent, IntakeRecord, check_intake_pair

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)


def event(n: int = 0, **changes) -> AuditEvent:
    base = AuditEvent(T0 + datetime.timedelta(seconds=n), "cert:CN=MOICA#1A2B", "voucher.received",
                      f"379000001A-115-{n:06d}#0", "ab" * 32, {"status": "received", "n": n})
    return dataclasses.replace(base, **changes)


def chain(events) -> list[AuditEntry]:
    entries, seq, head = [], 0, GENESIS_HASH
    for ev in events:
        entry = next_entry(seq, head, ev)
        entries.append(entry)
        seq, head = entry.seq, entry.hash
    return entries


def test_the_hashed_document_is_the_documented_canonical_json():
    # Changing this form would make every stored chain fail verification: it is spelled out here on purpose.
    canonical = ('{"action":"voucher.received","actor":"cert:CN=MOICA#1A2B","at":"2026-03-01T09:30:00.123456Z",'
                 '"detail":{"n":0,"status":"received"},"document_sha256":"' + "ab" * 32 + '",'
                 '"prev_hash":"' + "0" * 64 + '","seq":1,"subject":"379000001A-115-000000#0"}')
    assert entry_hash(GENESIS_HASH, 1, event()) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_the_same_instant_in_another_offset_hashes_the_same():
    taipei = datetime.timezone(datetime.timedelta(hours=8))
    assert entry_hash(GENESIS_HASH, 1, event(at=T0.astimezone(taipei))) == entry_hash(GENESIS_HASH, 1, event())


def test_first_entry_follows_genesis_and_each_next_its_predecessor():
    entries = chain(event(n) for n in range(3))
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].hash and entries[2].prev_hash == entries[1].hash


def test_an_empty_chain_verifies():
    report = verify_chain([])
    assert report.ok and report.checked == 0 and report.head_seq == 0 and report.head_hash == GENESIS_HASH


def test_a_missing_entry_is_a_gap_at_its_seq():
    entries = chain(event(n) for n in range(5))
    report = verify_chain(entries[:2] + entries[3:])
    assert not report.ok
    assert report.broken_seq == 3 and report.reason.startswith("gap in seq")
    assert report.head_seq == 2 and report.checked == 2


def test_a_chain_not_starting_at_one_is_a_gap():
    entries = chain(event(n) for n in range(3))
    assert verify_chain(entries[1:]).broken_seq == 1


def test_an_entry_relinked_to_another_predecessor_is_a_prev_mismatch():
    entries = chain(event(n) for n in range(4))
    relinked = next_entry(2, entries[0].hash, entries[2].event)  # consistent hash, wrong predecessor
    report = verify_chain([*entries[:2], relinked, entries[3]])
    assert report.broken_seq == 3 and report.reason.startswith("prev mismatch")


def test_events_refuse_naive_times_bad_digests_and_non_json_detail():
    with pytest.raises(ValueError, match="aware"):
        event(at=datetime.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="64 lowercase hex"):
        event(document_sha256="AB" * 32)
    with pytest.raises(ValueError, match="JSON"):
        event(detail={"x": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        event(detail={"x": object()})


# --- properties ------------------------------------------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=20) \
    | st.floats(allow_nan=False, allow_infinity=False)
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_offsets = st.integers(-12 * 60, 14 * 60).map(lambda m: datetime.timezone(datetime.timedelta(minutes=m)))
_events = st.builds(
    AuditEvent,
    at=st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1),
                    timezones=_offsets),
    actor=st.text(min_size=1, max_size=30),
    action=st.sampled_from(["voucher.received", "voucher.rejected", "stage.approved", "gateway.started"]),
    subject=st.text(min_size=1, max_size=30),
    document_sha256=st.none() | st.binary(min_size=32, max_size=32).map(bytes.hex),
    detail=st.dictionaries(st.text(max_size=8), _json, max_size=4),
)


@given(st.lists(_events, max_size=25))
def test_any_sequence_of_events_chains_and_verifies(events):
    entries = chain(events)
    report = verify_chain(entries)
    assert report.ok and report.checked == len(events) == report.head_seq
    assert report.head_hash == (entries[-1].hash if entries else GENESIS_HASH)


FIELDS = ["seq", "prev_hash", "hash", "at", "actor", "action", "subject", "document_sha256", "detail"]


def _flipped(entry: AuditEntry, name: str) -> AuditEntry:
    """``entry`` with one stored field changed to a different valid value."""
    ev = entry.event
    if name == "seq":
        return dataclasses.replace(entry, seq=entry.seq + 1000)
    if name in ("prev_hash", "hash"):
        old = getattr(entry, name)
        return dataclasses.replace(entry, **{name: ("1" if old[0] != "1" else "2") + old[1:]})
    if name == "at":
        changed = dataclasses.replace(ev, at=ev.at + datetime.timedelta(microseconds=1))
    elif name == "document_sha256":
        changed = dataclasses.replace(ev, document_sha256=None if ev.document_sha256 else "0" * 64)
    elif name == "detail":
        changed = dataclasses.replace(ev, detail={**ev.detail, "tampered": True})
    else:
        changed = dataclasses.replace(ev, **{name: getattr(ev, name) + "x"})
    return dataclasses.replace(entry, event=changed)


@given(st.lists(_events, min_size=1, max_size=12), st.data())
def test_flipping_any_field_of_any_entry_is_reported_at_that_entry(events, data):
    entries = chain(events)
    k = data.draw(st.integers(0, len(entries) - 1), label="entry")
    name = data.draw(st.sampled_from(FIELDS), label="field")
    tampered = [*entries[:k], _flipped(entries[k], name), *entries[k + 1:]]
    report = verify_chain(tampered)
    assert not report.ok
    assert report.broken_seq == entries[k].seq
    assert report.checked in (k, k + 1) and report.head_seq == k


def test_a_store_write_refuses_a_digest_that_does_not_name_the_bytes():
    body = b"<Voucher/>"
    digest = hashlib.sha256(b"other bytes").hexdigest()
    record = IntakeRecord("379000001A-115-1", 1, "379000001A", digest, body,
                          datetime.datetime(2026, 11, 27, tzinfo=datetime.timezone.utc), "received", "R-1", b"<r/>")
    event = AuditEvent(record.received_at, "gateway", "voucher.received", record.subject, digest)
    with pytest.raises(ValueError, match="does not match the received bytes"):
        check_intake_pair(record, event)
