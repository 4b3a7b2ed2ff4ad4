"""Signed actions over AMQP and queue events out of it, through real `vgw serve --amqp` processes and a real
RabbitMQ (VGW_TEST_AMQP_URL; ``scripts/with-test-services`` sets it).

An agency's system here does what docs/api.md describes: publishes vouchers (``voucher.submit``) and
actions (``action.submit``, signed with `vgw action sign`) to ``vgw.vouchers`` and reads the answers from its
reply queue; its work-queue listener binds a queue of its own to ``vgw.events`` with ``queue.AGENCY.#``.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pika
import pytest

from adapters.amqp.event_publisher import EVENTS_EXCHANGE
from adapters.amqp.intake import AmqpTopology
from gateway.intake.receipts import verify_receipt
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.pki.layout import init_pki, load_cert, load_key

from ..conftest import AGENCY_A, AGENCY_B, NOW
from .test_https_approvals import person, sign_action
from .test_https_intake import VGW, call, https_port, wait_until_ready

TOPOLOGY = AmqpTopology()  # what vgw serve declares
STAGES = ("reviewer", "accountant", "head", "releaser")
_numbers = itertools.count(1)


def amqp_url() -> str:
    url = os.environ.get("VGW_TEST_AMQP_URL")
    if not url:
        pytest.fail("VGW_TEST_AMQP_URL is not set: run under scripts/with-test-services (make test)", pytrace=False)
    return url


class AmqpGateway:
    """`vgw serve --amqp` (with ``--workers N`` when asked), the broker user ``guest`` mapped to agency A;
    ``port`` and ``pki_dir`` as :func:`.test_https_intake.call` wants them."""

    def __init__(self, base: Path, url: str, workers: int = 1) -> None:
        self.pki_dir, self.log = base / "pki", base / "serve.log"
        self.url = url
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [VGW, "serve", "--pki", str(self.pki_dir), "--listen", "127.0.0.1:0", "--store",
                 f"sqlite:///{base / 'store.sqlite3'}", "--amqp", url, "--revocation-max-age", "0",
                 "--workers", str(workers)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "VGW_AMQP_USERS": f"guest={AGENCY_A}"})
        self.port = https_port(wait_until_ready(self.process, self.log, timeout=90))

    def log_events(self, name: str) -> list[dict]:
        """The structured log lines of one event (Twisted's JSON, one per line after a record separator)."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            line = line.lstrip("\x1e")
            if line.startswith("{") and f'"{name}"' in line:
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                assert self.process.wait(timeout=60) == 0
            finally:
                if self.process.poll() is None:
                    self.process.kill()


class AgencySystem:
    """An agency's system on one broker connection: requests with confirms, an exclusive reply queue, and
    an exclusive event queue bound to ``vgw.events`` with ``bindings``."""

    def __init__(self, url: str, bindings: tuple[str, ...] = (), exchange: str = EVENTS_EXCHANGE) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.replies = self.channel.queue_declare("", exclusive=True).method.queue
        self.events = self.channel.queue_declare("", exclusive=True).method.queue
        for key in bindings:
            self.channel.queue_bind(self.events, exchange, routing_key=key)

    def ask(self, body: bytes, routing_key: str, *, exchange: str = TOPOLOGY.exchange,
            timeout: float = 30.0) -> tuple[pika.BasicProperties, bytes]:
        correlation_id = uuid.uuid4().hex
        self.channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(
            content_type="application/xml", correlation_id=correlation_id, user_id="guest", reply_to=self.replies,
            delivery_mode=pika.DeliveryMode.Persistent), mandatory=True)
        [(properties, reply)] = self._take(self.replies, 1, timeout)
        assert properties.correlation_id == correlation_id
        return properties, reply

    def next_events(self, count: int, *, about: set[str], timeout: float = 30.0) -> list[tuple[tuple, dict]]:
        """The next ``count`` events about the vouchers in ``about`` (others' are passed over), each as
        ((properties, routing key), body as JSON)."""
        taken = []
        deadline = time.monotonic() + timeout
        while len(taken) < count:
            (properties, routing_key), body = self._take(self.events, 1, deadline - time.monotonic(),
                                                         with_key=True)[0]
            document = json.loads(body)
            if document["voucher_id"] in about:
                taken.append(((properties, routing_key), document))
        return taken

    def _take(self, queue: str, count: int, timeout: float, *, with_key: bool = False) -> list:
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            assert time.monotonic() < deadline, f"not within {timeout:.1f} s: {len(got)} of {count} messages on {queue}"
            method, properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                self.connection.sleep(0.02)  # polling the queue with a deadline; keeps the connection serviced
                continue
            got.append(((properties, method.routing_key), body) if with_key else (properties, body))
        return got

    def close(self) -> None:
        self.connection.close()


def problem_code(properties: pika.BasicProperties, body: bytes) -> str:
    assert properties.content_type == "application/problem+json", body
    document = json.loads(body)
    assert document["status"] == properties.headers["status"]
    return document["code"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("amqp-actions")
    init_pki(base / "pki", agencies=2, now=NOW)
    gateway = AmqpGateway(base, amqp_url())
    yield gateway
    gateway.stop()


@pytest.fixture
def agency_a(served):
    system = AgencySystem(served.url, bindings=(f"queue.{AGENCY_A}.#", f"status.{AGENCY_A}.#"))
    yield system
    system.close()


def signed_voucher(pki_dir: Path, factory, agency: str = AGENCY_A):
    voucher = factory.voucher(agency, today=NOW.date(), voucher_number=f"AE{next(_numbers):06d}")
    who = pki_dir / "agencies" / agency / "people" / "preparer"
    return voucher, sign_document(voucher_to_xml(voucher), load_key(who / "key.pem"), load_cert(who / "cert.pem"), NOW)


def submitted(gateway: AmqpGateway, system: AgencySystem, factory, tmp_path: Path):
    """A new voucher of agency A, submitted over AMQP; (voucher, its file for `vgw action sign`)."""
    voucher, data = signed_voucher(gateway.pki_dir, factory)
    properties, receipt = system.ask(data, TOPOLOGY.routing_key)
    assert properties.headers["status"] == 202, receipt
    path = tmp_path / f"{voucher.voucher_id}.xml"
    path.write_bytes(data)
    return voucher, path


def status_of(gateway: AmqpGateway, voucher_id: str) -> dict:
    status, _, body = call(gateway, "GET", f"/v1/vouchers/{voucher_id}")
    assert status == 200, body
    return json.loads(body)


# --- signed actions over AMQP -------------------------------------------------------------------------------


def test_an_action_over_amqp_gets_a_signed_receipt_and_the_same_action_the_same_receipt(served, agency_a, factory,
                                                                                      tmp_path):
    voucher, voucher_file = submitted(served, agency_a, factory, tmp_path)
    action = sign_action(tmp_path, served, signer=person(served, "reviewer"), stage="reviewer", voucher=voucher_file)
    properties, receipt = agency_a.ask(action.read_bytes(), TOPOLOGY.action_routing_key)
    assert properties.headers["status"] == 202 and properties.content_type == "application/xml", receipt
    assert properties.headers["Location"] == f"/v1/vouchers/{voucher.voucher_id}"
    read = verify_receipt(receipt, gateway_cert=load_cert(served.pki_dir / "gateway/cert.pem"),
                          now=datetime.datetime.now(datetime.timezone.utc))
    assert (read.voucher_id, read.revision, read.agency) == (voucher.voucher_id, voucher.revision, AGENCY_A)
    assert read.received_sha256 == hashlib.sha256(action.read_bytes()).hexdigest()
    assert (read.action.stage.value, read.action.decision, read.action.voucher_status) == \
        ("reviewer", "approve", "reviewed")
    again, same = agency_a.ask(action.read_bytes(), TOPOLOGY.action_routing_key)  # a retry: the original receipt
    assert again.headers["status"] == 200 and same == receipt
    state = status_of(served, voucher.voucher_id)
    assert state["status"] == "reviewed" and [i["role"] for i in state["history"]] == ["preparer", "reviewer"]


def test_refused_actions_over_amqp_are_the_problem_documents_https_sends(served, agency_a, factory, tmp_path):
    voucher, voucher_file = submitted(served, agency_a, factory, tmp_path)
    wrong = sign_action(tmp_path, served, signer=person(served, "head"), stage="reviewer", voucher=voucher_file)
    properties, reply = agency_a.ask(wrong.read_bytes(), TOPOLOGY.action_routing_key)
    assert (properties.headers["status"], problem_code(properties, reply)) == (403, "signer-not-authorised")
    early = sign_action(tmp_path, served, signer=person(served, "accountant"), stage="accountant",
                        voucher=voucher_file)
    properties, reply = agency_a.ask(early.read_bytes(), TOPOLOGY.action_routing_key)
    assert (properties.headers["status"], problem_code(properties, reply)) == (409, "action-out-of-order")
    # Agency B's voucher (sent by B over HTTPS), acted on through agency A's broker user: not found, as over
    # HTTPS; the voucher id comes from the signed action, so nothing else could name another agency's voucher.
    theirs, theirs_data = signed_voucher(served.pki_dir, factory, agency=AGENCY_B)
    assert call(served, "POST", "/v1/vouchers", theirs_data, agency=AGENCY_B)[0] == 202
    theirs_file = tmp_path / "theirs.xml"
    theirs_file.write_bytes(theirs_data)
    foreign = sign_action(tmp_path, served, signer=person(served, "reviewer", AGENCY_B), stage="reviewer",
                          voucher=theirs_file)
    properties, reply = agency_a.ask(foreign.read_bytes(), TOPOLOGY.action_routing_key)
    assert (properties.headers["status"], problem_code(properties, reply)) == (404, "not-found")
    assert status_of(served, voucher.voucher_id)["status"] == "received"


def test_a_message_by_another_routing_key_is_a_bad_request_and_is_not_kept(served, agency_a, factory):
    _, data = signed_voucher(served.pki_dir, factory)
    # The default exchange routes by queue name: the message reaches the intake queue with no use case named.
    properties, reply = agency_a.ask(data, TOPOLOGY.queue, exchange="")
    assert (properties.headers["status"], problem_code(properties, reply)) == (400, "bad-request")
    assert TOPOLOGY.routing_key in json.loads(reply)["detail"]
    watcher = pika.BlockingConnection(pika.URLParameters(served.url))
    try:
        declared = watcher.channel().queue_declare(TOPOLOGY.queue, passive=True).method
    finally:
        watcher.close()
    assert declared.message_count == 0, "the request was acknowledged, not requeued"


# --- queue events -------------------------------------------------------------------------------------------


def test_the_agency_hears_of_each_queue_its_voucher_enters_in_order(served, agency_a, factory, tmp_path):
    voucher, voucher_file = submitted(served, agency_a, factory, tmp_path)
    about = {voucher.voucher_id}
    [((properties, routing_key), event)] = agency_a.next_events(1, about=about)
    assert routing_key == f"queue.{AGENCY_A}.reviewer"
    due_on = status_of(served, voucher.voucher_id)["due_on"]
    expected = {"agency": AGENCY_A, "voucher_id": voucher.voucher_id, "revision": voucher.revision,
                "status": "received", "role": "reviewer", **({"due_on": due_on} if due_on else {})}
    assert {k: v for k, v in event.items() if k not in ("event_id", "at")} == expected
    assert properties.message_id == str(event["event_id"]) and properties.delivery_mode == 2
    assert properties.content_type == "application/json"
    ids = [event["event_id"]]

    previous = None
    expected_keys = {"reviewer": "accountant", "accountant": "head", "head": "releaser"}
    for stage in STAGES:
        previous = sign_action(tmp_path, served, signer=person(served, stage), stage=stage, previous=previous,
                               voucher=voucher_file if previous is None else voucher.voucher_id)
        properties, receipt = agency_a.ask(previous.read_bytes(), TOPOLOGY.action_routing_key)
        assert properties.headers["status"] == 202, receipt
        if stage in expected_keys:
            [((properties, routing_key), event)] = agency_a.next_events(1, about=about)
            assert (routing_key, event["role"]) == (f"queue.{AGENCY_A}.{expected_keys[stage]}", expected_keys[stage])
            ids.append(event["event_id"])
    # Released with no allotment for its budget subject: the treasury check sends it back to the preparer
    # (released itself publishes nothing: the check follows at once).
    [((properties, routing_key), event)] = agency_a.next_events(1, about=about)
    assert routing_key == f"queue.{AGENCY_A}.preparer"
    assert (event["status"], event["role"], event["reason_code"]) == ("rejected", "preparer", "budget-subject-wrong")
    ids.append(event["event_id"])
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == 5
