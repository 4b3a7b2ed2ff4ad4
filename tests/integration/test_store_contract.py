"""The storage contract: the SAME tests against SQLite (a file in tmp_path) and a real PostgreSQL server.

PostgreSQL comes from VGW_TEST_PG_DSN (``scripts/with-test-services`` sets it); this module creates a fresh
database for itself and a fresh schema per test, and drops them afterwards. Without the variable the
PostgreSQL tests fail, on purpose: a storage suite that silently skips one backend proves nothing about it.
"""

from __future__ import annotations

import datetime
import hashlib
import multiprocessing
import os
import sqlite3
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from adapters.storage import migrations
from adapters.storage.factory import open_store, sqlite_path
from adapters.storage.migrations import SchemaTooNew
from gateway.audit import verify_chain
from gateway.errors import Refusal
from gateway.store import AlreadyStored, AuditEvent, IntakeRecord, VoucherStore

UTC = datetime.timezone.utc
T0 = datetime.datetime(2026, 3, 2, 1, 0, 0, 250000, tzinfo=UTC)
AGENCY_A, AGENCY_B = "379000001A", "379000002A"
ACTOR = "cert:OU=內政部憑證管理中心,O=行政院,C=TW#3A5F"


# --- records ---------------------------------------------------------------------------------------------


def make_record(number: int, revision: int = 0, *, agency: str = AGENCY_A, at: datetime.datetime = T0,
                status: str = "received", body: bytes | None = None) -> IntakeRecord:
    voucher_id = f"{agency}-115-{number:06d}"
    # Bytes no text round trip would keep: a BOM, CRLF, a NUL and a byte that is not UTF-8.
    body = body if body is not None else (
        f"\ufeff<Voucher id='{voucher_id}' rev='{revision}'>\r\n".encode() + b"\x00\xff</Voucher>\n")
    return IntakeRecord(
        voucher_id=voucher_id, revision=revision, agency=agency,
        received_sha256=hashlib.sha256(body).hexdigest(), received_bytes=body, received_at=at, status=status,
        receipt_id=f"R-{voucher_id}-{revision}-{hashlib.sha256(body).hexdigest()[:8]}",
        receipt_xml=f"<Receipt voucher='{voucher_id}'/>".encode(),
        summary={"control_total": 1_234_567 + number, "line_count": 2, "amounts": [1_000_000, 234_567 + number],
                 "signer": {"serial": "3A5F", "issuer": "OU=MOICA", "role": "preparer"},
                 "corrects": None if revision == 0 else {"voucher_id": voucher_id, "revision": revision - 1}})


def intake_event(record: IntakeRecord, actor: str = ACTOR) -> AuditEvent:
    return AuditEvent(record.received_at, actor, "voucher.received", record.subject, record.received_sha256,
                      {"status": record.status, "receipt_id": record.receipt_id})


def plain_event(n: int) -> AuditEvent:
    return AuditEvent(T0 + datetime.timedelta(seconds=n), "gateway", "gateway.checkpoint", f"n{n}", None, {"n": n})


# --- backends --------------------------------------------------------------------------------------------


@dataclass
class Backend:
    """A fresh, empty store location and a raw connection to it that bypasses the store (to tamper)."""

    name: str
    url: str

    def open(self) -> VoucherStore:
        return open_store(self.url)

    def execute(self, statement: str) -> list:
        if self.name == "sqlite":
            conn = sqlite3.connect(sqlite_path(self.url))
            try:
                rows = conn.execute(statement).fetchall()
                conn.commit()
                return rows
            finally:
                conn.close()
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []


def _with_dbname(dsn: str, dbname: str, **query) -> str:
    parts = urlsplit(dsn)
    query_text = urlencode(query, quote_via=quote) if query else parts.query  # %20, not +: libpq wants it
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", query_text, ""))


@pytest.fixture(scope="module")
def pg_database():
    """A database of this module's own on the test server, dropped afterwards."""
    dsn = os.environ.get("VGW_TEST_PG_DSN")
    if not dsn:
        pytest.fail("VGW_TEST_PG_DSN is not set: the PostgreSQL store tests need a real server. Run them "
                    "under scripts/with-test-services (make test), or export VGW_TEST_PG_DSN.", pytrace=False)
    name = f"vgw_store_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_dbname(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'store.db'}")
        return
    database_url = request.getfixturevalue("pg_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    dbname = urlsplit(database_url).path.lstrip("/")
    yield Backend("postgresql", _with_dbname(database_url, dbname, options=f"-c search_path={schema}"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def store(backend):
    opened = backend.open()
    yield opened
    opened.close()


def all_entries(store: VoucherStore) -> list:
    return store.audit_entries(after_seq=0, limit=1000)


# --- intake ----------------------------------------------------------------------------------------------


def test_intake_round_trip_keeps_the_exact_bytes_and_every_field(store):
    record = make_record(1)
    assert store.record_intake(record, intake_event(record)) == record
    stored = store.get(record.voucher_id, 0)
    assert stored == record
    assert stored.received_bytes == record.received_bytes and stored.receipt_xml == record.receipt_xml
    assert stored.received_at == T0 and stored.received_at.tzinfo is not None
    assert stored.summary["amounts"] == [1_000_000, 234_568] and stored.summary["corrects"] is None
    [entry] = all_entries(store)
    assert (entry.seq, entry.event) == (1, intake_event(record))


def test_a_missing_voucher_is_none_and_has_no_revisions(store):
    assert store.get("379000001A-115-999999") is None
    assert store.get("379000001A-115-999999", 0) is None
    assert store.revisions("379000001A-115-999999") == []


def test_duplicate_revision_raises_with_the_original_and_changes_nothing(store):
    original = make_record(2)
    store.record_intake(original, intake_event(original))
    impostor = make_record(2, body=b"<Voucher>other bytes</Voucher>", at=T0 + datetime.timedelta(hours=1))
    with pytest.raises(AlreadyStored) as raised:
        store.record_intake(impostor, intake_event(impostor))
    assert raised.value.existing == original
    assert store.get(original.voucher_id) == original
    assert len(all_entries(store)) == 1
    assert store.list_for_agency(AGENCY_A)[0] == [original]


def test_an_event_for_other_bytes_is_refused_before_anything_is_written(store):
    record = make_record(3)
    with pytest.raises(ValueError, match="received_sha256"):
        store.record_intake(record, plain_event(1))
    assert store.get(record.voucher_id) is None and all_entries(store) == []


def test_revisions_come_lowest_first_and_get_without_revision_is_the_latest(store):
    for revision in (2, 0, 1):
        record = make_record(4, revision, at=T0 + datetime.timedelta(minutes=revision))
        store.record_intake(record, intake_event(record))
    assert [r.revision for r in store.revisions(make_record(4).voucher_id)] == [0, 1, 2]
    assert store.get(make_record(4).voucher_id).revision == 2
    assert store.get(make_record(4).voucher_id, 1).summary["corrects"]["revision"] == 0


# --- listing ---------------------------------------------------------------------------------------------


def _fill_two_agencies(store) -> list[IntakeRecord]:
    """23 records of agency A (several sharing a received_at, to exercise the tie-break) and 9 of B."""
    mine = []
    for n in range(23):
        at = T0 + datetime.timedelta(seconds=n // 3)  # three per second
        record = make_record(100 - n, at=at, status="received" if n % 2 else "rejected")
        store.record_intake(record, intake_event(record))
        mine.append(record)
    for n in range(9):
        other = make_record(n, agency=AGENCY_B, at=T0 + datetime.timedelta(seconds=n))
        store.record_intake(other, intake_event(other))
    return sorted(mine, key=lambda r: (r.received_at, r.voucher_id, r.revision))


def _all_pages(store, agency, **filters) -> tuple[list[IntakeRecord], int]:
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.list_for_agency(agency, after=cursor, limit=4, **filters)
        seen += page
        pages += 1
        if cursor is None:
            return seen, pages


def test_paging_covers_every_record_once_in_order_and_never_another_agencys(store):
    mine = _fill_two_agencies(store)
    seen, pages = _all_pages(store, AGENCY_A)
    assert seen == mine
    assert pages == 6  # 23 records by 4: the last page has 3 and no next cursor
    assert all(r.agency == AGENCY_A for r in seen)
    assert len(_all_pages(store, AGENCY_B)[0]) == 9


def test_filters_by_status_and_received_window(store):
    mine = _fill_two_agencies(store)
    rejected, _ = _all_pages(store, AGENCY_A, status="rejected")
    assert rejected == [r for r in mine if r.status == "rejected"] and len(rejected) == 12
    start, end = T0 + datetime.timedelta(seconds=2), T0 + datetime.timedelta(seconds=5)
    window, _ = _all_pages(store, AGENCY_A, received_from=start, received_to=end)
    assert window == [r for r in mine if start <= r.received_at < end] and len(window) == 9
    taipei = datetime.timezone(datetime.timedelta(hours=8))
    same, _ = _all_pages(store, AGENCY_A, received_from=start.astimezone(taipei), received_to=end.astimezone(taipei))
    assert same == window
    assert store.list_for_agency("379000009A") == ([], None)


def test_a_forged_cursor_or_page_size_is_a_refusal(store):
    _fill_two_agencies(store)
    for cursor in ("not-a-cursor", "W10", "eyJhIjoxfQ"):
        with pytest.raises(Refusal) as raised:
            store.list_for_agency(AGENCY_A, after=cursor)
        assert raised.value.code == "cursor-invalid"
    for limit in (0, -1, 1001):
        with pytest.raises(Refusal) as raised:
            store.list_for_agency(AGENCY_A, limit=limit)
        assert raised.value.code == "limit-invalid"


# --- audit chain -----------------------------------------------------------------------------------------


def test_the_chain_verifies_after_many_appends_and_pages_by_seq(store):
    for n in range(150):
        if n % 3 == 0:
            record = make_record(n)
            store.record_intake(record, intake_event(record))
        else:
            assert store.append_audit(plain_event(n)).event == plain_event(n)
    entries = all_entries(store)
    assert [e.seq for e in entries] == list(range(1, 151))
    report = verify_chain(entries)
    assert report.ok and report.checked == 150 and report.head_hash == entries[-1].hash
    assert store.audit_entries(after_seq=140, limit=5) == entries[140:145]


@pytest.mark.parametrize("statement, seq, reason", [
    ("UPDATE audit_log SET actor = 'cert:mallory#1' WHERE seq = 7", 7, "hash mismatch"),
    ("UPDATE audit_log SET detail = '{\"n\":99}' WHERE seq = 11", 11, "hash mismatch"),
    (f"UPDATE audit_log SET prev_hash = '{'f' * 64}' WHERE seq = 4", 4, "prev mismatch"),
    ("DELETE FROM audit_log WHERE seq = 12", 12, "gap in seq"),
])
def test_tampering_a_stored_row_is_reported_at_its_seq(backend, store, statement, seq, reason):
    for n in range(20):
        store.append_audit(plain_event(n))
    assert verify_chain(all_entries(store)).ok
    backend.execute(statement)
    report = verify_chain(all_entries(store))
    assert not report.ok
    assert (report.broken_seq, report.reason.split(":")[0]) == (seq, reason)
    assert report.head_seq == seq - 1


def test_eight_threads_never_fork_the_chain_nor_lose_a_record(store):
    shared = [make_record(900 + n) for n in range(5)]  # every thread tries these: exactly one wins each
    outcomes: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            barrier.wait()
            mine = [make_record(1000 * (t + 1) + n, at=T0 + datetime.timedelta(milliseconds=n)) for n in range(20)]
            for record in [*mine[:10], *shared, *mine[10:]]:
                try:
                    store.record_intake(record, intake_event(record, actor=f"cert:thread#{t}"))
                    outcomes.append(("stored", record.subject))
                except AlreadyStored as dup:
                    assert dup.existing == record
                    outcomes.append(("duplicate", record.subject))
        except BaseException as exc:  # surfaced below: an exception in a thread must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counts = Counter(kind for kind, _ in outcomes)
    assert counts == {"stored": 8 * 20 + 5, "duplicate": 7 * 5}
    entries = all_entries(store)
    assert verify_chain(entries).ok and len(entries) == 165
    stored = {s for kind, s in outcomes if kind == "stored"}
    assert {e.event.subject for e in entries} == stored
    assert all(store.get(s.split("#")[0]) is not None for s in stored)


def _process_worker(url: str, worker: int, barrier, results) -> None:
    """One gateway process: its own store, 60 own vouchers and 5 that the other process sends too.
    Both start writing together (barrier) so their transactions really interleave."""
    opened = open_store(url)
    stored = duplicates = 0
    try:
        records = [make_record(5000 + 100 * worker + n) for n in range(60)]
        records[20:20] = [make_record(7000 + n) for n in range(5)]
        barrier.wait(timeout=60)
        for record in records:
            try:
                opened.record_intake(record, intake_event(record, actor=f"cert:process#{worker}"))
                stored += 1
            except AlreadyStored:
                duplicates += 1
    except BaseException as exc:
        results.put((worker, "error", repr(exc)))
        raise
    finally:
        opened.close()
    results.put((worker, stored, duplicates))


def test_two_processes_never_fork_the_chain_nor_lose_a_record(backend, store):
    store.append_audit(plain_event(0))  # migrated and non-empty before the processes race
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    processes = [ctx.Process(target=_process_worker, args=(backend.url, w, barrier, results)) for w in (0, 1)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert all(isinstance(o[1], int) for o in outcomes), outcomes
    assert sum(o[1] for o in outcomes) == 125 and sum(o[2] for o in outcomes) == 5
    entries = all_entries(store)
    assert verify_chain(entries).ok and len(entries) == 126
    assert {e.event.actor for e in entries} == {"gateway", "cert:process#0", "cert:process#1"}
    assert len(store.list_for_agency(AGENCY_A, limit=1000)[0]) == 125


# --- restart and migrations ------------------------------------------------------------------------------


def test_reopening_the_store_keeps_everything_and_continues_the_chain(backend, store):
    records = [make_record(n, at=T0 + datetime.timedelta(seconds=n)) for n in range(5)]
    for record in records:
        store.record_intake(record, intake_event(record))
    before = all_entries(store)
    store.close()
    reopened = backend.open()
    try:
        assert [reopened.get(r.voucher_id) for r in records] == records
        assert all_entries(reopened) == before
        assert reopened.append_audit(plain_event(9)).prev_hash == before[-1].hash
        assert verify_chain(all_entries(reopened)).ok
    finally:
        reopened.close()


def test_migrations_apply_once_and_a_newer_schema_is_refused(backend, store):
    store.close()
    backend.open().close()
    assert backend.execute("SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in range(1, migrations.LATEST + 1)]
    backend.execute(f"INSERT INTO schema_version (version, description) VALUES ({migrations.LATEST + 1}, 'future')")
    with pytest.raises(SchemaTooNew, match="newer than this gateway knows"):
        backend.open()


def test_a_closed_store_refuses_use(store):
    from gateway.store import StoreError

    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("379000001A-115-000001")
