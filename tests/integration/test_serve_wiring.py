"""`vgw serve` wired end to end: HTTPS and AMQP intake into one store, and the plain-HTTP metrics port."""

from __future__ import annotations

import os
import subprocess
import urllib.request

import pika
import pytest

from adapters.amqp.intake import AmqpTopology
from adapters.storage.factory import open_store
from gateway.intake.receipts import verify_receipt
from simulators.pki.layout import init_pki, load_cert

from ..conftest import AGENCY_A, NOW
from .test_amqp_intake import Agency, signed_voucher
from .test_https_intake import VGW, Gateway, call, https_port, problem, wait_until_ready


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    url = os.environ.get("VGW_TEST_AMQP_URL")
    if not url:
        pytest.fail("VGW_TEST_AMQP_URL is not set: run under scripts/with-test-services (make test)", pytrace=False)
    base = tmp_path_factory.mktemp("wiring")
    init_pki(base / "pki", agencies=2, now=NOW)
    log = base / "serve.log"
    store_url = f"sqlite:///{base / 'store.sqlite3'}"
    process = subprocess.Popen(
        [VGW, "serve", "--pki", str(base / "pki"), "--listen", "127.0.0.1:0", "--store", store_url,
         "--amqp", url, "--metrics-listen", "127.0.0.1:0"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, env={**os.environ, "VGW_AMQP_USERS": f"guest={AGENCY_A}"})
    ready = wait_until_ready(process, log)
    fields = dict(part.split("=", 1) for part in ready.split()[4:])
    yield {"pki": base / "pki", "https_port": https_port(ready), "metrics": fields["metrics"], "store": store_url,
           "amqp": pika.URLParameters(url), "log": log}
    process.terminate()
    process.wait(timeout=30)


def test_both_transports_feed_one_store_and_the_metrics_count_them(gateway, factory):
    agency = Agency(gateway["amqp"], AmqpTopology())
    try:
        by_amqp, data = signed_voucher(gateway["pki"], factory)
        properties, receipt = agency.ask(data)
    finally:
        agency.close()
    assert properties.headers["status"] == 202
    gateway_cert = load_cert(gateway["pki"] / "gateway/cert.pem")
    assert verify_receipt(receipt, gateway_cert=gateway_cert, now=NOW).voucher_id == by_amqp.voucher_id

    https = Gateway(gateway["pki"], gateway["store"], gateway["log"])
    https.port = gateway["https_port"]
    by_https, data = signed_voucher(gateway["pki"], factory)
    assert call(https, "POST", "/v1/vouchers", data)[0] == 202
    status, _, body = call(https, "POST", "/v1/vouchers", b"garbage")
    assert status == 422 and problem(body)["code"] == "xml-malformed"

    store = open_store(gateway["store"])
    try:
        assert {r.voucher_id for r in store.list_for_agency(AGENCY_A)[0]} >= {by_amqp.voucher_id, by_https.voucher_id}
    finally:
        store.close()
    with urllib.request.urlopen(gateway["metrics"], timeout=10) as reply:
        text = reply.read().decode()
    assert "vgw_vouchers_accepted_total" in text and 'vgw_refusals_total{code="xml-malformed"} 1.0' in text
