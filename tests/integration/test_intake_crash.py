"""kill -9 during a burst of posts: every voucher that got a receipt is in the store, with the exact bytes and
that very receipt, and nothing in the store lacks a receipt that verifies against the gateway certificate.

A real ``vgw serve`` over SQLite takes a burst of distinct vouchers from several keep-alive mTLS clients; a
watcher thread SIGKILLs it once a set number of receipts has come back, so requests are in flight (some
mid-commit) when it dies. Then the store is opened directly and compared with what the clients saw, and a
restarted gateway must answer every voucher consistently with what survived: the stored ones 200 with the
original receipt, the rest 202.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import signal
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from adapters.storage.factory import open_store
from gateway.intake.receipts import verify_receipt
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.pki.layout import init_pki, load_cert, load_key

from ..conftest import AGENCY_A, NOW
from .test_https_intake import VGW, Gateway, client_context

VOUCHERS = 60
CLIENTS = 6
CONNECTION_ERRORS = (OSError, ssl.SSLError, http.client.HTTPException)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("crash") / "pki"
    init_pki(directory, agencies=1, now=NOW)
    return directory


@pytest.fixture(scope="module")
def burst(pki_dir, banks) -> list[tuple[str, int, bytes]]:
    """(voucher id, revision, signed bytes) of distinct vouchers; each test uses a fresh store, so they are
    new to it."""
    from simulators.voucher_factory import VoucherFactory

    factory = VoucherFactory(banks, seed=20261127)
    person = pki_dir / "agencies" / AGENCY_A / "people" / "preparer"
    key, cert = load_key(person / "key.pem"), load_cert(person / "cert.pem")
    signed = []
    for n in range(VOUCHERS):
        voucher = factory.voucher(AGENCY_A, today=NOW.date(), voucher_number=f"KILL{n:06d}")
        signed.append((voucher.voucher_id, voucher.revision, sign_document(voucher_to_xml(voucher), key, cert, NOW)))
    return signed


class Client:
    """One keep-alive connection that reconnects after a failure; returns (status, body) or None when the
    request got no complete answer."""

    def __init__(self, gateway: Gateway) -> None:
        self.port = gateway.port
        self.context = client_context(gateway.pki_dir, AGENCY_A)
        self.conn: http.client.HTTPSConnection | None = None

    def post(self, body: bytes) -> tuple[int, bytes] | None:
        try:
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=30)
            self.conn.request("POST", "/v1/vouchers", body=body, headers={"Content-Type": "application/xml"})
            reply = self.conn.getresponse()
            return reply.status, reply.read()
        except CONNECTION_ERRORS:
            self.close()
            return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def post_burst(gateway: Gateway, bodies: list[bytes], kill_after: int) -> dict[int, tuple[int, bytes] | None]:
    """Post every body once from CLIENTS threads; SIGKILL the gateway as soon as ``kill_after`` receipts are in.
    Returns, per body index, the answer the client got (None: none)."""
    answers: dict[int, tuple[int, bytes] | None] = {}
    lock = threading.Lock()
    next_index = iter(range(len(bodies)))
    enough = threading.Event()

    def client() -> None:
        connection = Client(gateway)
        try:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                answer = connection.post(bodies[index])
                with lock:
                    answers[index] = answer
                    if sum(1 for a in answers.values() if a and a[0] in (200, 202)) >= kill_after:
                        enough.set()
        finally:
            connection.close()

    def killer() -> None:
        if enough.wait(timeout=60):
            gateway.process.send_signal(signal.SIGKILL)

    watcher = threading.Thread(target=killer)
    watcher.start()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    enough.set()  # all answered before the threshold (should not happen): kill anyway so the test goes on
    watcher.join()
    gateway.process.wait(timeout=30)
    assert gateway.process.returncode == -signal.SIGKILL
    return answers


@pytest.mark.parametrize("kill_after", [1, 20, 45])
def test_after_kill_9_every_receipt_is_backed_by_the_store_and_every_stored_voucher_by_a_receipt(
        tmp_path, pki_dir, burst, kill_after):
    store_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    gateway = Gateway(pki_dir, store_url, tmp_path / "serve.log")
    gateway.start()
    try:
        answers = post_burst(gateway, [data for _, _, data in burst], kill_after)
    finally:
        gateway.stop(signal.SIGKILL)  # no-op when the watcher already killed it
    receipted = {i: a[1] for i, a in answers.items() if a is not None}
    # Fresh vouchers, each posted once: any complete answer must be a new receipt (no 5xx, no refusal).
    assert {answers[i][0] for i in receipted} <= {202}, {i: answers[i][0] for i in receipted}
    assert kill_after <= len(receipted) < len(burst), "the kill must land in the middle of the burst"

    gateway_cert = load_cert(pki_dir / "gateway/cert.pem")
    now = datetime.datetime.now(datetime.timezone.utc)
    store = open_store(store_url)
    try:
        stored = {}
        for index, (voucher_id, revision, data) in enumerate(burst):
            record = store.get(voucher_id, revision)
            if record is not None:
                stored[index] = record
                assert record.received_bytes == data
                read = verify_receipt(record.receipt_xml, gateway_cert=gateway_cert, now=now)
                assert (read.voucher_id, read.revision) == (voucher_id, revision)
                assert read.received_sha256 == hashlib.sha256(data).hexdigest() == record.received_sha256
        for index, receipt in receipted.items():
            assert index in stored, f"a receipt was issued for {burst[index][0]}, which is not in the store"
            assert stored[index].receipt_xml == receipt
        # Nothing else was written: one audit entry per stored voucher, none half-done.
        entries = store.audit_entries(after_seq=0, limit=1000)
        assert [e.seq for e in entries] == list(range(1, len(stored) + 1))
        assert sorted(e.event.subject for e in entries) == sorted(f"{r.voucher_id}#{r.revision}" for r in stored.values())
    finally:
        store.close()

    gateway.start()
    client = Client(gateway)
    try:
        for index, (_, _, data) in enumerate(burst):
            answer = client.post(data)
            assert answer is not None
            if index in stored:
                assert answer == (200, stored[index].receipt_xml), index
            else:
                assert answer[0] == 202, (index, answer)
    finally:
        client.close()
        gateway.stop()
    audit = subprocess.run([VGW, "audit", "verify", "--store", store_url], capture_output=True, text=True,
                           timeout=60)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert f"{len(burst)} entries checked" in audit.stdout
