"""A store opened while another process holds the write lock of a new SQLite file (the workers of `vgw serve
--workers N` on a fresh file: one applies the migrations as the other opens): the opener waits for the lock,
as it waits for any write, instead of failing at once with "database is locked" — which SQLite answers,
without waiting out the busy timeout, to a switch into WAL mode while another connection writes."""

from __future__ import annotations

import sqlite3
import threading
import time

from adapters.storage.sqlite import SqliteStore


def test_opening_a_new_store_waits_for_another_writer_instead_of_failing(tmp_path):
    path = tmp_path / "store.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # as the other worker's migration does, before the file is in WAL mode
    holder.execute("CREATE TABLE other_workers_migration (x)")
    released = threading.Timer(1.0, lambda: holder.execute("COMMIT"))
    started = time.monotonic()  # before the timer starts: the lock is held for at least 1 s from here
    released.start()
    store = SqliteStore(path)
    try:
        assert store.audit_entries(after_seq=0, limit=1) == []
        waited = time.monotonic() - started
        assert waited >= 1.0, "it opened while the other writer still held the lock"
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        released.join()
        store.close()
        holder.close()
