"""`vgw audit verify` as operators run it: a real process against a SQLite store file."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.cli.audit import walk_chain
from adapters.storage.factory import open_store
from tests.integration.test_store_contract import intake_event, make_record, plain_event

VGW = shutil.which("vgw", path=str(Path(sys.executable).parent)) or "vgw"


def vgw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VGW, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> Path:
    """A store with 2,500 entries: more than two of the command's 1,000-entry pages. Built once; closing
    the last connection checkpoints the WAL, so the one file is the whole store."""
    path = tmp_path_factory.mktemp("audit-cli") / "gateway.db"
    store = open_store(f"sqlite:///{path}")
    try:
        for n in range(2500):
            if n % 10 == 0:
                record = make_record(n)
                store.record_intake(record, intake_event(record))
            else:
                store.append_audit(plain_event(n))
    finally:
        store.close()
    return path


@pytest.fixture
def store_file(good_store, tmp_path) -> Path:
    """A copy of the good store for one test to tamper with."""
    return Path(shutil.copy(good_store, tmp_path / "gateway.db"))


def tamper(path: Path, statement: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def test_a_good_chain_exits_0_with_the_count_and_head(store_file):
    done = vgw("audit", "verify", "--store", f"sqlite:///{store_file}")
    assert done.returncode == 0, done.stderr
    assert "audit chain OK: 2500 entries checked; head seq 2500" in done.stdout
    report = json.loads(vgw("audit", "verify", "--store", f"sqlite:///{store_file}", "--json").stdout)
    assert report["ok"] is True and report["checked"] == 2500 and report["broken_seq"] is None
    assert len(report["head_hash"]) == 64


def test_a_tampered_entry_in_a_later_page_exits_1_naming_its_seq(store_file):
    tamper(store_file, "UPDATE audit_log SET action = 'voucher.deleted' WHERE seq = 1733")
    done = vgw("audit", "verify", "--store", f"sqlite:///{store_file}")
    assert done.returncode == 1
    assert "audit chain BROKEN at seq 1733: hash mismatch" in done.stdout
    assert "Traceback" not in done.stderr
    report = json.loads(vgw("audit", "verify", "--store", f"sqlite:///{store_file}", "--json").stdout)
    assert (report["ok"], report["broken_seq"], report["head_seq"]) == (False, 1733, 1732)


def test_an_unreadable_row_is_a_broken_link_not_a_traceback(store_file):
    tamper(store_file, "UPDATE audit_log SET detail = 'not json' WHERE seq = 1200")
    done = vgw("audit", "verify", "--store", f"sqlite:///{store_file}")
    assert done.returncode == 1, done.stderr
    assert "BROKEN at seq 1200: unreadable entry" in done.stdout
    assert "Traceback" not in done.stderr


def test_an_earlier_break_is_reported_before_an_unreadable_row(store_file):
    tamper(store_file, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 1100")
    tamper(store_file, "UPDATE audit_log SET at = 'yesterday' WHERE seq = 1200")
    store = open_store(f"sqlite:///{store_file}")
    try:
        report = walk_chain(store, page=1000)
    finally:
        store.close()
    assert (report.broken_seq, report.reason.split(":")[0]) == (1100, "hash mismatch")


@pytest.mark.parametrize("url, message", [
    ("mysql://root@localhost/vgw", "unknown store URL scheme 'mysql'"),
    ("sqlite:///{missing}", "no SQLite store at"),
])
def test_a_bad_store_url_is_a_usage_error(tmp_path, url, message):
    done = vgw("audit", "verify", "--store", url.format(missing=tmp_path / "nope.db"))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "nope.db").exists()
