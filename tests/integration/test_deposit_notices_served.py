"""Deposit notices through the real gateway: ``vgw serve`` with ``notices.*`` set sends the notices of a voucher
the agency released over mTLS and the bank booked, to a real SMTP server on loopback (STARTTLS), and the
voucher's status page shows each line's notice and the history its outcomes; ``vgw notices letters`` and
``vgw notices list`` do the postal part and the operator's view."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time

import pypdf
import pytest

from adapters.storage.factory import open_store
from gateway.vouchers.model import Notice, NoticeChannel
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.pki.layout import init_pki, load_cert, load_key

from ..conftest import AGENCY_A, NOW
from .smtp_server import smtp_server
from .test_https_approvals import AMPLE, FISCAL_YEAR, person, release, status_of
from .test_https_intake import VGW, Gateway, call, https_port, wait_until_ready
from .test_re_remittance import pay_out

CHANNELS = {1: Notice(NoticeChannel.EMAIL, "first.payee@example.com.tw"), 2: Notice(NoticeChannel.FAX, "02-27208889"),
            3: Notice(NoticeChannel.POST, "臺北市信義區市府路1號", "110204"), 4: None}


class NoticeGateway(Gateway):
    """``vgw serve`` with the notice settings in its environment."""

    def __init__(self, *args, env: dict) -> None:
        super().__init__(*args)
        self.env = env

    def start(self) -> None:
        self.process = subprocess.Popen(
            [VGW, "serve", "--pki", str(self.pki_dir), "--listen", "127.0.0.1:0", "--store", self.store_url,
             "--revocation-max-age", "0"], stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
            env={**os.environ, **self.env})
        self.port = https_port(wait_until_ready(self.process, self.log))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("notices")
    init_pki(base / "pki", agencies=2, now=NOW)
    store = f"sqlite:///{base / 'store.sqlite3'}"
    with smtp_server(base) as (mailbox, port, ca):
        gateway = NoticeGateway(base / "pki", store, base / "serve.log", env={
            "VGW_NOTICES_SMTP_HOST": "127.0.0.1", "VGW_NOTICES_SMTP_PORT": str(port), "VGW_NOTICES_SMTP_CA": str(ca),
            "VGW_NOTICES_SMTP_REQUIRE_TLS": "true", "VGW_NOTICES_POLL_SECONDS": "0.3"})
        gateway.start()
        allotments = base / "allotments.csv"
        allotments.write_text(f"agency,fiscal_year,budget_subject,amount\n{AGENCY_A},{FISCAL_YEAR},{AMPLE},"
                              "1000000000\n", encoding="utf-8")
        loaded = subprocess.run([VGW, "budget", "load", "--store", store, str(allotments)], capture_output=True,
                                text=True, timeout=60)
        assert loaded.returncode == 0, loaded.stderr
        gateway.store = store
        gateway.mailbox = mailbox
        yield gateway
        gateway.stop()


def submit(gateway, factory, tmp_path):
    voucher = factory.voucher(AGENCY_A, today=NOW.date(), voucher_number="DN000001", lines=4)
    lines = tuple(line._replace(notice=CHANNELS[line.number]) for line in voucher.lines)
    voucher = dataclasses.replace(voucher, budget_subject=AMPLE, lines=lines)
    who = person(gateway, "preparer")
    data = sign_document(voucher_to_xml(voucher), load_key(who / "key.pem"), load_cert(who / "cert.pem"), NOW)
    assert call(gateway, "POST", "/v1/vouchers", data)[0] == 202
    path = tmp_path / "voucher.xml"
    path.write_bytes(data)
    return voucher, path


def test_a_booked_voucher_notifies_its_payees_and_shows_it_on_its_status_page(served, factory, tmp_path):
    voucher, voucher_file = submit(served, factory, tmp_path)
    release(served, tmp_path, voucher, voucher_file)
    assert status_of(served, voucher.voucher_id)["status"] == "treasury-accepted"
    waiting = {p["line"]: p["notice"] for p in status_of(served, voucher.voucher_id)["payments"]}
    assert waiting == {}  # not batched yet: no payment lines, no notices
    store = open_store(served.store)
    try:
        pay_out(store, served.pki_dir)
    finally:
        store.close()
    deadline = time.monotonic() + 60  # includes the first CJK font load and a fax page render
    while True:
        state = status_of(served, voucher.voucher_id)
        notices = {p["line"]: p["notice"] for p in state["payments"]}
        if notices[1]["state"] == notices[2]["state"] == "sent":
            break
        assert time.monotonic() < deadline, notices
        time.sleep(0.1)
    assert state["status"] == "paid"
    assert notices[3]["channel"] == "post" and notices[3]["state"] == "pending" and notices[4] is None
    assert notices[1]["attempts"] == 1 and notices[1]["sent_at"] and notices[1]["last_error"] is None
    sent = [item for item in state["history"] if item["event"] == "notice.sent"]
    assert sorted((i["line"], i["channel"], i["result"]) for i in sent) == [(1, "email", "sent"), (2, "fax", "sent")]
    [mail] = served.mailbox.to("first.payee@example.com.tw")
    [fax] = served.mailbox.to("0227208889@fax.gov.taipei")
    assert mail.tls and fax.tls
    assert f"新臺幣 {voucher.lines[0].amount:,} 元" in mail.message.get_body(("plain",)).get_content()

    letters = subprocess.run([VGW, "notices", "letters", "--store", served.store, "--out", str(tmp_path / "post")],
                             capture_output=True, text=True, timeout=60)
    assert letters.returncode == 0, letters.stderr
    written = json.loads(letters.stdout)
    assert written["letters"] == 1
    [page] = pypdf.PdfReader(written["file"]).pages
    assert voucher.lines[2].payee_name in page.extract_text() and "臺北市信義區市府路1號" in page.extract_text()
    listed = subprocess.run([VGW, "notices", "list", "--store", served.store, "--json"], capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert sorted((n["line"], n["channel"], n["state"]) for n in json.loads(listed.stdout)) == [
        (1, "email", "sent"), (2, "fax", "sent"), (3, "post", "sent")]
    assert {p["line"]: p["notice"]["state"] for p in status_of(served, voucher.voucher_id)["payments"]
            if p["notice"]} == {1: "sent", 2: "sent", 3: "sent"}


def test_bad_notice_settings_are_refused_before_the_gateway_starts(served):
    refused = subprocess.run([VGW, "serve", "--pki", str(served.pki_dir), "--listen", "127.0.0.1:0", "--store",
                              served.store], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "VGW_NOTICES_SMTP_HOST": "127.0.0.1", "VGW_NOTICES_FAX_MODE": "spool"})
    assert refused.returncode == 2
    assert "notices.fax_mode is spool but notices.fax_spool_dir is not set" in refused.stderr
