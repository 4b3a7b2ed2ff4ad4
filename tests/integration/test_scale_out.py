"""Scale-out: two ``vgw serve --bank-exchange`` processes on one PostgreSQL and one RabbitMQ, the agencies' load
split across both, and one of them killed with SIGKILL while vouchers are in the approval stages and in the
bank exchange. The agencies fail over to the survivor (a repeated voucher or action gets its original
receipt), the survivor's bank exchange takes over what the dead one left (the outbox relay's turn, which the
dead one held, with its unconfirmed transfer messages; the bank's reports it had not acknowledged: competing
consumers on the same quorum queues), and at the end
nothing is lost and nothing is paid twice: every voucher is final, the bank booked every EndToEndId once and
exactly the lines the gateway calls paid, the audit chain holds and the money reconciles."""

from __future__ import annotations

import datetime
import os
import threading
import time
import uuid

import pika
import psycopg

from adapters.bank.transport import BankTopology
from adapters.storage.factory import open_store
from adapters.storage.relay_turn import RELAY_LOCK
from simulators.agency import AgencySimulator
from simulators.agency_plans import Mix, allotments
from simulators.bench.transport import delete_topology
from simulators.demo.run import (
    BANK_TIMING,
    NOT_FINAL,
    BankProcess,
    _free_port,
    audit_json,
    last_json_line,
    ledger_tally,
    load_allotments,
    ocsp_responder,
    open_vouchers,
)
from simulators.pki.layout import init_pki
from simulators.served_gateway import ServedGateway

from .fresh_postgres import fresh_database

VOUCHERS = 240
AGENCIES = 4
IN_APPROVAL = ("received", "reviewed", "accountant-approved", "head-approved", "released")


def wait_for_work_in_flight(store_url: str, deadline: float) -> dict[str, int]:
    """Poll the store until some vouchers are in the approval stages and some are batched (with the bank);
    the counts then."""
    store = open_store(store_url)
    try:
        while True:
            counts = {s: n for s, (n, _) in store.queue_counts(list(NOT_FINAL),
                                                                overdue_before=datetime.date.min).items() if n}
            if sum(counts.get(s, 0) for s in IN_APPROVAL) and counts.get("batched"):
                return counts
            assert time.monotonic() < deadline, f"no vouchers both in approval and at the bank: {counts}"
            time.sleep(0.2)  # polling the store, with a deadline
    finally:
        store.close()


def relay_turn_taken(store_url: str, deadline: float) -> None:
    """Wait until some process holds the store's outbox relay turn (adapters/storage/relay_turn.py)."""
    with psycopg.connect(store_url, autocommit=True) as conn:
        while not conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND "
                               "granted", (RELAY_LOCK,)).fetchone()[0]:
            assert time.monotonic() < deadline, "no relay took the turn"
            time.sleep(0.1)  # polling the lock table, with a deadline


def test_two_gateways_one_killed_mid_run_nothing_lost_nothing_paid_twice(tmp_path):
    amqp = os.environ["VGW_TEST_AMQP_URL"]
    prefix = f"scale-{uuid.uuid4().hex[:8]}."
    now = datetime.datetime.now(datetime.timezone.utc)
    port = _free_port()
    manifest = init_pki(tmp_path / "pki", agencies=AGENCIES, now=now, ocsp_url=f"http://127.0.0.1:{port}/ocsp")
    pki = tmp_path / "pki"
    agencies = sorted(manifest["agencies"])
    today = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date()
    ledger = tmp_path / "bank-ledger.txt"
    env = {**BANK_TIMING, "VGW_BANK_RESEND_SECONDS": "6", "VGW_BANK_TOPOLOGY_PREFIX": prefix}
    gateway_flags = ("--ocsp", "--bank-exchange", "--bank-amqp", amqp)
    with fresh_database("vgw_scale") as store, ocsp_responder(pki, port):
        try:
            assert load_allotments(tmp_path, store, allotments(agencies, today)) is None
            bank = BankProcess(["--amqp", amqp, "--topology-prefix", prefix, "--pki", str(pki), "--ledger",
                                str(ledger), "--return-rate", "0.05", "--settlement-delay", "0.3", "--seed", "7"],
                               tmp_path / "bank.log")
            doomed = ServedGateway(pki, store, tmp_path / "gateway-1.log", threads=8, extra=gateway_flags, env=env)
            relay_turn_taken(store, time.monotonic() + 30)  # the doomed one's relay publishes until it dies
            survivor = ServedGateway(pki, store, tmp_path / "gateway-2.log", threads=8, extra=gateway_flags, env=env)
            try:
                sim = AgencySimulator(pki, "127.0.0.1", doomed.port, more_gateways=(("127.0.0.1", survivor.port),),
                                      agencies=agencies, seed=5, concurrency=8, poll_seconds=0.5,
                                      mix=Mix(payroll=0.01, payroll_first=True))
                result: dict = {}
                day = threading.Thread(target=lambda: result.update(
                    report=sim.run(vouchers=VOUCHERS, settle_timeout=120)))
                day.start()
                in_flight = wait_for_work_in_flight(store, time.monotonic() + 60)
                doomed.process.kill()  # SIGKILL: no graceful stop, whatever it held in hand is abandoned
                doomed.process.wait(timeout=10)
                day.join(timeout=200)
                assert not day.is_alive(), "the agencies did not finish"
                relay_turn_taken(store, time.monotonic() + 5)  # by the survivor: the dead one's went with it
            finally:
                for gateway in (doomed, survivor):
                    gateway.stop()
                bank.stop()
            report = result["report"].as_dict()
            tally = last_json_line(tmp_path / "bank.log").get("bank", {})
            books = ledger_tally(ledger)
            still_open = open_vouchers(store)
            reconcile = audit_json("reconcile", store)
            audit = audit_json("verify", store)
        finally:
            delete_topology(pika.URLParameters(amqp), BankTopology().prefixed(prefix))

    print(f"scale-out: killed at {in_flight}; {report['failovers']} failovers; day {report['outcomes']}, "
          f"payments {report['payments']}; bank {tally}; ledger {books}")
    assert doomed.process.returncode == -9 and survivor.process.returncode == 0, survivor.log_tail()
    assert in_flight.get("batched") and sum(in_flight.get(s, 0) for s in IN_APPROVAL), in_flight
    # the agencies: every voucher final, their books match the gateway's and their statements
    assert report["ok"], {k: report[k] for k in ("outcomes", "unexpected", "reconciliation_mismatches",
                                                 "statement_mismatches")}
    assert report["vouchers"] == report["finished"] == VOUCHERS
    assert report["failovers"] >= 1  # the dead gateway's agencies went on with the survivor
    assert report["statements"] == AGENCIES and report["statement_mismatches"] == []
    assert still_open == {}
    # the bank: nothing booked twice, and exactly the lines the gateway says are paid
    assert books["booked_twice"] == 0
    assert books["booked"] == report["payments"]["paid"] == reconcile["by_state"]["paid"]["count"], (books, reconcile)
    assert tally.get("duplicate_payments", 0) == 0, tally  # no EndToEndId in two different transfer messages
    assert reconcile["ok"] and reconcile["discrepancy"] is None, reconcile
    assert audit["ok"] and audit["checked"] > 0, audit
