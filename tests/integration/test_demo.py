"""`vgw demo` (what `make demo` runs) as a real process, on the embedded default and on RabbitMQ + PostgreSQL,
with the bank's faults injected: the summary must say every voucher of the day is final, the money reconciles,
no EndToEndId was booked twice, and every probe got its expected answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pika

from adapters.bank.transport import BankTopology
from simulators.bench.transport import delete_topology

from .fresh_postgres import fresh_database

VGW = str(Path(sys.executable).parent / "vgw")
FAULTS = ["--duplicate-rate", "0.2", "--reorder-rate", "0.2", "--drop-rate", "0.15", "--delay-rate", "0.2",
          "--delay-seconds", "0.5", "--malformed-rate", "0.3", "--down-rate", "0.1", "--down-seconds", "1",
          "--reject-file-rate", "0.1", "--settlement-delay", "0.5", "--return-rate", "0.08", "--seed", "11"]
PROBES = {"accountant-before-reviewer": "action-out-of-order", "reviewer-withdraws-it": "rejected/withdrawn",
          "over-budget": "rejected/budget-exceeded"}


def run_demo(tmp_path: Path, *extra: str) -> dict:
    """The demo's day with at most 5 payments per transfer message: the faults are drawn per message, and how
    many messages a day makes must not depend on how many batch ticks the machine's speed gives it (at least
    one per 5 of the day's 150+ lines, so each fault kind is near-certain to show)."""
    done = subprocess.run([VGW, "demo", "--agencies", "2", "--vouchers", "40", "--dir", str(tmp_path / "work"),
                           "--settle-timeout", "150", "--json", *extra],
                          capture_output=True, text=True, timeout=280,
                          env={**os.environ, "VGW_BANK_MAX_PER_MESSAGE": "5"})
    assert done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert done.returncode == (0 if report["ok"] else 1)
    return report


def assert_a_good_day(report: dict) -> None:
    verdicts = {k: report[k] for k in ("final", "problems", "bank", "reconcile", "audit", "open_vouchers")}
    assert report["ok"] and report["final"] and not report["problems"], json.dumps(verdicts)[:4000]
    assert all(o["ok"] for o in report["outcomes"]), report["outcomes"]
    assert {o["name"]: o["got"] for o in report["outcomes"] if o["part"] == "gateway"} == PROBES
    signed = [o for o in report["outcomes"] if o["part"] == "in-process"]
    assert {o["got"] for o in signed} >= {"accepted", "signature-invalid", "certificate-revoked"}
    day = report["day"]
    assert day["vouchers"] == 40 and day["finished"] == 40
    assert set(day["outcomes"]) <= {"paid", "returned"} and sum(day["outcomes"].values()) == 40
    assert day["kinds"].get("payroll", 0) >= 1  # a day always has a payroll of 100-800 lines
    assert day["reconciliation_mismatches"] == [] and day["reconciled_vouchers"] >= 40
    assert day["statements"] == 2 and day["statement_mismatches"] == []  # each agency's 對帳單 ticks off
    assert day["send_backs"] >= 1 and day["api"]["approve"]["count"] >= 40 * 4
    assert report["open_vouchers"] == {}
    bank = report["bank"]
    assert bank["booked_twice"] == 0 and bank["booked"] == day["payments"]["paid"] > 0
    assert report["reconcile"]["ok"] and report["reconcile"]["discrepancy"] is None
    assert report["audit"]["ok"] and report["audit"]["checked"] > 0


def assert_faults_happened(bank: dict) -> None:
    injected = {k: bank.get(k, 0) for k in ("duplicated_reports", "reordered_messages", "dropped_answers",
                                             "delayed_messages", "malformed_reports", "rejected_files")}
    assert sum(1 for n in injected.values() if n) >= 4, injected
    assert bank["returned"] > 0  # bad accounts, and whole files rejected with AM10: all re-remitted


def test_the_demo_on_the_embedded_default_with_bank_faults(tmp_path):
    out = tmp_path / "evidence"
    report = run_demo(tmp_path, "--out", str(out), *FAULTS)
    assert_a_good_day(report)
    assert report["mode"] == "embedded"
    assert_faults_happened(report["bank"])
    # the evidence: every bank message as sent and received, the audit log, vouchers, actions and receipts
    sent, received = list((out / "bank/sent").glob("*.xml")), list((out / "bank/received").glob("*.xml"))
    assert len(sent) == report["bank"]["evidence"]["bank_sent"] > 0 and len(received) > len(sent) // 2
    assert all(b"pain.001.001.09" in p.read_bytes() for p in sent)
    audit = [json.loads(line) for line in (out / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(audit) == report["audit"]["checked"] and [e["seq"] for e in audit] == sorted(e["seq"] for e in audit)
    assert list((out / "vouchers").glob("*.receipt.xml")) and list((out / "vouchers").glob("*-releaser.xml"))
    statements = list((out / "vouchers").glob("statement-*.csv"))
    assert len(statements) == 2 and all(p.read_bytes().startswith("\ufeff".encode()) for p in statements)
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["ok"] is True


def test_the_demo_on_rabbitmq_and_postgresql_with_bank_faults(tmp_path):
    amqp = os.environ["VGW_TEST_AMQP_URL"]
    prefix = f"demo-{uuid.uuid4().hex[:8]}."
    with fresh_database("vgw_demo") as store:
        try:
            report = run_demo(tmp_path, "--amqp", amqp, "--store", store, "--topology-prefix", prefix, *FAULTS)
        finally:
            delete_topology(pika.URLParameters(amqp), BankTopology().prefixed(prefix))
    assert_a_good_day(report)
    assert report["mode"] == "amqp"
    assert_faults_happened(report["bank"])


def test_the_human_summary_says_what_happened(tmp_path):
    done = subprocess.run([VGW, "demo", "--agencies", "1", "--vouchers", "8", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout
    for words in ("1. signed vouchers verified", "2. a business day", "3. refusals through the running gateway",
                  "4. the bank:", "reconcile: OK", "audit chain: OK", "every voucher final"):
        assert words in text, text
    assert "BAD" not in text and "UNEXPECTED" not in text
