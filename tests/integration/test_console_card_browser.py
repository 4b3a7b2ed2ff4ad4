"""The console in a real headless Chromium with the citizen card: four people of one agency, each with their
own SoftHSM2 card behind `vgw signer serve` on their "own PC" (one agent at a time on the port the console
names), each signs in with their card and approves one voucher at their stage; the treasury checks it and the
simulated bank pays it. Another voucher is sent back (退件) with a reason, corrected and approved to paid. The
same person signing two stages of a third is refused, and the page says so. Everything over real mTLS, the
page's own script talking to the real agent; `vgw sim serve` (SQLite, the bank in process) behind it."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w
from cryptography.x509 import NameOID
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.pki.layout import init_pki, load_cert, load_key
from simulators.served_gateway import ServedGateway
from simulators.voucher_factory import VoucherFactory

from ..conftest import AGENCY_A, NOW
from .softhsm import MODULE, softhsm  # noqa: F401  (a fixture)
from .test_console_browser import POLICIES, browser, shown
from .test_https_intake import VGW, call
from .test_signer_agent import Agent

STAGES = ("reviewer", "accountant", "head", "releaser")
FISCAL_YEAR = NOW.year - 1911


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]



@pytest.fixture(scope="module")
def world(softhsm, tmp_path_factory):
    base = tmp_path_factory.mktemp("card-browser")
    init_pki(base / "pki", agencies=1, now=NOW)
    for role in STAGES:
        softhsm.enroll(base / "pki", AGENCY_A, role, f"browser-{role}")
    registry_path = base / "pki" / "registry.toml"  # the releaser also holds head (separation of duties decides)
    registry = tomllib.loads(registry_path.read_text(encoding="utf-8"))
    releaser = next(g for g in registry["grant"] if g["agency"] == AGENCY_A and g["role"] == "releaser")
    registry["grant"].append({**releaser, "role": "head"})
    registry_path.write_text(tomli_w.dumps(registry), encoding="utf-8")
    factory = VoucherFactory(BankDirectory.shipped(), seed=31)
    vouchers = [factory.voucher(AGENCY_A, today=NOW.date(), voucher_number=f"CARDWEB{n:03d}") for n in (1, 2, 3)]
    store = f"sqlite:///{base / 'store.sqlite3'}"
    allotments = base / "allotments.csv"
    allotments.write_text("agency,fiscal_year,budget_subject,amount\n" + "".join(
        f"{AGENCY_A},{FISCAL_YEAR},{s},1000000000\n" for s in sorted({v.budget_subject for v in vouchers})),
        encoding="utf-8")
    assert subprocess.run([VGW, "budget", "load", "--store", store, str(allotments)], capture_output=True,
                          timeout=60).returncode == 0
    agent_port = free_port()
    served = ServedGateway(base / "pki", store, base / "gateway.log", command=("sim", "serve"),
                           extra=("--return-rate", "0"),
                           env={"VGW_CONSOLE_SIGNER_URL": f"http://127.0.0.1:{agent_port}",
                                "VGW_BANK_BATCH_SECONDS": "0.5", "VGW_BANK_RELAY_SECONDS": "0.5",
                                "VGW_BANK_SWEEP_SECONDS": "1"})
    served.pki_dir = base / "pki"
    origin = f"https://127.0.0.1:{served.port}"
    POLICIES.mkdir(parents=True, exist_ok=True)
    policy = POLICIES / f"vgw-card-test-{served.port}.json"
    policy.write_text(json.dumps({"AutoSelectCertificateForUrls": [json.dumps(
        {"pattern": origin, "filter": {}})]}), encoding="utf-8")
    manifest = json.loads((base / "pki/manifest.json").read_text(encoding="utf-8"))
    try:
        yield served, origin, agent_port, manifest, vouchers, base
    finally:
        policy.unlink()
        served.stop()


def submit(served, manifest, voucher) -> None:
    person = manifest["agencies"][AGENCY_A]["people"]["preparer"]
    data = sign_document(voucher_to_xml(voucher), load_key(Path(person["key"])), load_cert(Path(person["cert"])), NOW)
    status, _, body = call(served, "POST", "/v1/vouchers", data)
    assert status in (200, 202), body


def status_of(served, voucher_id: str) -> str:
    return json.loads(call(served, "GET", f"/v1/vouchers/{voucher_id}")[2])["status"]


def wait_for_status(served, voucher_id: str, wanted: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while status_of(served, voucher_id) != wanted:
        assert time.monotonic() < deadline, f"{voucher_id} not {wanted} within {timeout} s: {status_of(served, voucher_id)}"
        time.sleep(0.2)  # polling the gateway's status route, with a deadline


class Person:
    """One person at their PC: their card behind their own agent, signed in to the console in the browser."""

    def __init__(self, world, driver, role: str, softhsm) -> None:
        self.served, self.origin, port, manifest, _, base = world
        self.driver = driver
        cert = load_cert(Path(manifest["agencies"][AGENCY_A]["people"][role]["cert"]))
        self.name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        self.agent = Agent(softhsm, f"browser-{role}", base / f"agent-{role}.log", pin_file=softhsm.pin_file,
                           origin=self.origin, port=port)

    def __enter__(self) -> Person:
        self.driver.get(f"{self.origin}/console/sign-in")
        shown(self.driver, By.ID, "sign-in-with-card").click()
        person = WebDriverWait(self.driver, 30).until(EC.presence_of_element_located((By.ID, "person")))
        assert person.text == self.name
        return self

    def decide(self, voucher_id: str, button: str, *, reason: str | None = None, text: str | None = None) -> str:
        """Click ``button`` on the voucher's page; the page's answer (it reloads on success)."""
        self.driver.get(f"{self.origin}/console/vouchers/{voucher_id}")
        clicked = shown(self.driver, By.ID, button)
        if reason is not None:
            Select(self.driver.find_element(By.ID, "reason_code")).select_by_value(reason)
        if text is not None:
            self.driver.find_element(By.ID, "reason_text").send_keys(text)
        self.driver.execute_script("window.vgwBeforeClick = true;")  # gone once the page reloads
        clicked.click()

        def answered(d):
            """'reloaded' once the page was reloaded (accepted), the status line's words once it shows an error."""
            return d.execute_script(
                "if (window.vgwBeforeClick !== true) return 'reloaded';"
                "const line = document.getElementById('signer-status');"
                "return line && line.className === 'error' ? line.textContent : null;")
        # a navigation under way answers the script with an error of its own: asked again, it answers
        outcome = WebDriverWait(self.driver, 30, ignored_exceptions=[WebDriverException]).until(answered)
        return "" if outcome == "reloaded" else outcome

    def __exit__(self, *exc) -> None:
        try:
            self.driver.get(f"{self.origin}/console/sign-in")
            shown(self.driver, By.ID, "sign-out").click()
            shown(self.driver, By.ID, "signed-out")
        finally:
            self.agent.stop()


def test_four_people_take_a_voucher_to_paid_another_is_sent_back_and_corrected_and_a_second_stage_is_refused(
        world, softhsm, tmp_path):
    served, origin, _, manifest, (first, sent_back, third), _ = world
    for voucher in (first, sent_back, third):
        submit(served, manifest, voucher)
    driver = browser(served, served.pki_dir / "agencies" / AGENCY_A / "tls", tmp_path)
    try:
        for role in STAGES:
            with Person(world, driver, role, softhsm) as person:
                assert person.decide(first.voucher_id, "approve") == ""  # accepted: the page reloaded
        wait_for_status(served, first.voucher_id, "paid")

        with Person(world, driver, "reviewer", softhsm) as reviewer:
            reviewer.decide(sent_back.voucher_id, "reject", reason="amount-wrong", text="金額與發票不符")
        assert status_of(served, sent_back.voucher_id) == "rejected"
        corrected = dataclasses.replace(sent_back, revision=2, corrects=sent_back.ref)
        submit(served, manifest, corrected)
        for role in STAGES:
            with Person(world, driver, role, softhsm) as person:
                person.decide(corrected.voucher_id, "approve")
        wait_for_status(served, corrected.voucher_id, "paid")

        for role in ("reviewer", "accountant"):
            with Person(world, driver, role, softhsm) as person:
                person.decide(third.voucher_id, "approve")
        with Person(world, driver, "releaser", softhsm) as releaser:
            releaser.decide(third.voucher_id, "approve")  # as head: the voucher awaits the head
            assert status_of(served, third.voucher_id) == "head-approved"
            said = releaser.decide(third.voucher_id, "approve")  # and now as releaser of the same voucher
        assert "separation-of-duties" in said, said
        assert status_of(served, third.voucher_id) == "head-approved"
    finally:
        driver.quit()
