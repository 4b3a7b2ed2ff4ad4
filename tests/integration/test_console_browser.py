"""The web console in a real headless Chromium (selenium), against ``vgw serve --bank-exchange`` on the real
RabbitMQ: an agency's person logs in with the agency's TLS client certificate (the page says who they are),
finds a voucher by its id, opens it and downloads a statement; a treasury operator, with the Finance Bureau's
certificate, replays a message from the bank's dead-letter queue, which the gateway then handles again.

How Chromium presents a client certificate without a person clicking: on Linux it reads certificates from
the NSS database in ``$HOME/.pki/nssdb``, so each browser gets a HOME of its own holding one PKCS#12 (key and
certificate) and the test root trusted for servers (``certutil -A -t C,,``); the managed policy
``AutoSelectCertificateForUrls`` (a JSON file in /etc/chromium/policies/managed/, unique per run, removed
afterwards) has it pick that certificate for the gateway's origin instead of asking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pika
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from adapters.bank.transport import BankTopology
from adapters.console.dead_letters import DeadLetters
from adapters.storage.factory import open_store
from simulators.bench.transport import delete_topology
from simulators.pki.layout import init_pki, load_cert

from ..conftest import AGENCY_A, NOW
from .test_console_pages import submit
from .test_https_intake import call, https_port, wait_until_ready

VGW = str(Path(sys.executable).parent / "vgw")
POLICIES = Path("/etc/chromium/policies/managed")
P12_PASSWORD = b"console-test"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """``vgw serve`` with its bank exchange on the test RabbitMQ under a topology of its own."""
    url = os.environ.get("VGW_TEST_AMQP_URL")
    if not url:
        pytest.fail("VGW_TEST_AMQP_URL is not set: run under scripts/with-test-services (make test)", pytrace=False)
    base = tmp_path_factory.mktemp("console-browser")
    init_pki(base / "pki", agencies=2, now=NOW)
    prefix = f"console-{uuid.uuid4().hex[:8]}."
    log = base / "serve.log"
    store = f"sqlite:///{base / 'store.sqlite3'}"
    process = subprocess.Popen([VGW, "serve", "--pki", str(base / "pki"), "--listen", "127.0.0.1:0", "--store", store,
                                "--bank-exchange", "--bank-amqp", url],
                               env={**os.environ, "VGW_BANK_TOPOLOGY_PREFIX": prefix},
                               stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    gateway = type("Served", (), {})()
    gateway.pki_dir, gateway.store, gateway.process = base / "pki", store, process
    gateway.topology, gateway.parameters = BankTopology().prefixed(prefix), pika.URLParameters(url)
    try:
        gateway.port = https_port(wait_until_ready(process, log))
        yield gateway
    finally:
        process.terminate()
        process.wait(timeout=30)
        delete_topology(gateway.parameters, gateway.topology)


@pytest.fixture(scope="module")
def policy(gateway):
    """Auto-select the (only) client certificate for the gateway's origin."""
    POLICIES.mkdir(parents=True, exist_ok=True)
    path = POLICIES / f"vgw-console-test-{uuid.uuid4().hex[:8]}.json"
    rule = json.dumps({"pattern": f"https://127.0.0.1:{gateway.port}", "filter": {}})
    path.write_text(json.dumps({"AutoSelectCertificateForUrls": [rule]}), encoding="utf-8")
    yield path
    path.unlink()


def browser(gateway, who: Path, work: Path, downloads: Path | None = None) -> webdriver.Chrome:
    """Chromium whose NSS database holds the client certificate in ``who`` (a folder with cert.pem, key.pem)."""
    home = work / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    db = f"sql:{nssdb}"
    key = serialization.load_pem_private_key((who / "key.pem").read_bytes(), password=None)
    p12 = pkcs12.serialize_key_and_certificates(b"console-user", key, load_cert(who / "cert.pem"),
                                                [load_cert(gateway.pki_dir / "intermediate" / "cert.pem")],
                                                serialization.BestAvailableEncryption(P12_PASSWORD))
    (work / "user.p12").write_bytes(p12)
    for command in (["certutil", "-N", "--empty-password", "-d", db],
                    ["certutil", "-A", "-n", "test-root", "-t", "C,,", "-i", str(gateway.pki_dir / "root/cert.pem"),
                     "-d", db],
                    ["pk12util", "-i", str(work / "user.p12"), "-d", db, "-W", P12_PASSWORD.decode()]):
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,900", f"--user-data-dir={work / 'profile'}"):
        options.add_argument(argument)
    if downloads is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver",
                                              env={**os.environ, "HOME": str(home)}), options=options)
    driver.set_page_load_timeout(30)
    if downloads is not None:
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


def shown(driver, by: str, value: str):
    """The element once the page that has it is loaded (a click that navigates returns before it is)."""
    return WebDriverWait(driver, 30).until(EC.presence_of_element_located((by, value)))


def wait_for(what: str, condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling a file or the broker, with a deadline
    return result


def test_an_agency_person_logs_in_finds_a_voucher_and_downloads_a_statement(gateway, policy, tmp_path):
    from gateway.vouchers.bank_directory import BankDirectory
    from simulators.voucher_factory import VoucherFactory

    voucher = VoucherFactory(BankDirectory.shipped(), seed=23).voucher(AGENCY_A, today=NOW.date(),
                                                                      voucher_number="BROWSER001")
    submit(gateway, voucher, AGENCY_A)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = browser(gateway, gateway.pki_dir / "agencies" / AGENCY_A / "tls", tmp_path, downloads)
    origin = f"https://127.0.0.1:{gateway.port}"
    try:
        driver.get(f"{origin}/console/")
        assert f"OU={AGENCY_A}" in shown(driver, By.ID, "whoami").text
        shown(driver, By.LINK_TEXT, "憑單查詢").click()
        shown(driver, By.ID, "id").send_keys(voucher.voucher_id)
        search = shown(driver, By.ID, "search-button")
        search.click()
        # the search page already lists recent vouchers: wait for the results page, not a link on the old one
        WebDriverWait(driver, 30).until(EC.staleness_of(search))
        shown(driver, By.LINK_TEXT, voucher.voucher_id).click()
        WebDriverWait(driver, 30).until(EC.title_contains(voucher.voucher_id))
        lines = shown(driver, By.ID, "lines").text
        assert voucher.lines[0].payee_name in lines and f"{voucher.lines[0].amount:,}" in lines
        assert "voucher.received" in shown(driver, By.ID, "history").text
        shown(driver, By.LINK_TEXT, "對帳單").click()
        shown(driver, By.LINK_TEXT, "下載 CSV").click()
        done = wait_for("the statement's download", lambda: [p for p in downloads.iterdir() if p.suffix == ".csv"])
    finally:
        driver.quit()
    body = done[0].read_bytes()
    assert done[0].name.startswith(f"statement-{AGENCY_A}-") and body.startswith(b"\xef\xbb\xbf")
    assert "受款人 (payee_name)" in body.decode("utf-8-sig").splitlines()[0]


def test_a_treasury_operator_replays_a_dead_lettered_message(gateway, policy, tmp_path):
    message_id = f"DLQ-{uuid.uuid4().hex[:10]}"
    connection = pika.BlockingConnection(gateway.parameters)
    try:  # a report the gateway's bank worker cannot use: it dead-letters it
        connection.channel().basic_publish(gateway.topology.exchange, gateway.topology.reports_routing,
                                           b"<Document>not a signed report</Document>",
                                           pika.BasicProperties(message_id=message_id, delivery_mode=2))
    finally:
        connection.close()
    dead = DeadLetters(gateway.parameters, gateway.topology)

    def deaths() -> int:
        return next((letter.deaths for letter in dead.peek() if letter.message_id == message_id), 0)

    wait_for("the report in the dead-letter queue", lambda: deaths() == 1)
    driver = browser(gateway, gateway.pki_dir / "treasury" / "tls", tmp_path)
    try:
        driver.get(f"https://127.0.0.1:{gateway.port}/console/treasury/dead-letters?lang=en")
        assert "treasury console" in shown(driver, By.ID, "who").text
        row = shown(driver, By.ID, "dead-letters").text
        assert message_id in row and gateway.topology.reports_queue in row and "rejected" in row
        shown(driver, By.CSS_SELECTOR, f'button.replay[data-message-id="{message_id}"]').click()
        assert message_id in WebDriverWait(driver, 30).until(
            EC.presence_of_element_located((By.ID, "replayed"))).text
    finally:
        driver.quit()
    # back in the reports queue, the worker handled it again: it died a second time, counted on its x-death
    wait_for("the replayed report handled again", lambda: deaths() == 2)
    store = open_store(gateway.store)
    try:
        [entry] = store.history(message_id)
    finally:
        store.close()
    assert entry.event.action == "bank.dlq-replay" and entry.event.actor.startswith("console:379030000A:")
    assert entry.event.detail["queue"] == gateway.topology.reports_queue
    status, _, _ = call(gateway, "GET", "/console/treasury/dead-letters")  # an agency still may not look
    assert status == 403
