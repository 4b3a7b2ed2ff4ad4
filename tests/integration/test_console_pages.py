"""The web console over real mTLS, without a browser: who may see what (agency A never sees agency B's
voucher, an agency sees none of the treasury pages and cannot replay), CSRF on every POST, hostile payee
names shown as text, the security headers, the language switch, and the preparation form's XML signed and
accepted by the same gateway."""

from __future__ import annotations

import dataclasses
import http.client
import re
import ssl
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.console.voucher_form import HEADER_FIELDS, LINE_FIELDS
from gateway.vouchers.xml_mapping import read_voucher, voucher_to_xml
from gateway.xmlsec.signing import sign_document
from gateway.xmlsec.validation import schema_problems
from simulators.pki.layout import init_pki, load_cert, load_key

from ..conftest import AGENCY_A, AGENCY_B, NOW
from .test_https_intake import Gateway, call

HOSTILE = '<script>alert("x")</script>&\'<b>'
TREASURY = "treasury"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("console")
    init_pki(base / "pki", agencies=2, now=NOW)
    gateway = Gateway(base / "pki", f"sqlite:///{base / 'store.sqlite3'}", base / "serve.log")
    gateway.start()
    yield gateway
    gateway.stop()


def context(gateway: Gateway, who: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(gateway.pki_dir / "root/cert.pem"))
    if who is not None:
        tls = gateway.pki_dir / ("treasury" if who == TREASURY else f"agencies/{who}") / "tls"
        ctx.load_cert_chain(str(tls / "cert.pem"), str(tls / "key.pem"))
    return ctx


def fetch(gateway: Gateway, path: str, who: str | None = AGENCY_A, *, form: dict | None = None,
          headers: dict | None = None):
    """(status, headers, body) of a GET, or of a POST of ``form`` (url-encoded), as ``who``."""
    conn = http.client.HTTPSConnection("127.0.0.1", gateway.port, context=context(gateway, who), timeout=30)
    try:
        body = urlencode(form).encode() if form is not None else None
        sent = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        conn.request("POST" if form is not None else "GET", path, body=body, headers={**sent, **(headers or {})})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def submit(gateway: Gateway, voucher, agency: str) -> None:
    person = gateway.pki_dir / "agencies" / agency / "people" / "preparer"
    data = sign_document(voucher_to_xml(voucher), load_key(person / "key.pem"), load_cert(person / "cert.pem"), NOW)
    status, _, body = call(gateway, "POST", "/v1/vouchers", data, agency=agency)
    assert status == 202, body


@pytest.fixture(scope="module")
def vouchers(served):
    from gateway.vouchers.bank_directory import BankDirectory
    from simulators.voucher_factory import VoucherFactory

    factory = VoucherFactory(BankDirectory.shipped(), seed=11)
    mine = factory.voucher(AGENCY_A, today=NOW.date(), voucher_number="CONSOLE0001")
    mine = dataclasses.replace(mine, lines=(mine.lines[0]._replace(payee_name=HOSTILE),) + mine.lines[1:])
    theirs = factory.voucher(AGENCY_B, today=NOW.date(), voucher_number="CONSOLE0002")
    submit(served, mine, AGENCY_A)
    submit(served, theirs, AGENCY_B)
    return mine, theirs


def csrf_of(gateway: Gateway, who: str) -> str:
    status, _, body = fetch(gateway, "/console/prepare", who)
    assert status == 200
    return re.search(rb'name="csrf" value="([0-9a-f]{64})"', body).group(1).decode()


def test_the_console_names_the_caller_and_answers_with_the_security_headers(served):
    status, headers, body = fetch(served, "/console/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert "CN=379000001A accounting system" in body.decode() and "機關人員" in body.decode()
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert b"<script" not in body and b"style=" not in body
    status, headers, body = fetch(served, "/console/", TREASURY)
    assert status == 200 and "財政局操作人員" in body.decode()
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):  # no certificate: no TLS session at all
        fetch(served, "/console/", None)


def test_english_labels_on_request_and_kept_in_a_strict_cookie(served):
    status, headers, body = fetch(served, "/console/vouchers?lang=en")
    assert status == 200 and b"Voucher search" in body and "憑單查詢" not in body.decode()
    cookie = headers["set-cookie"]
    assert cookie.startswith("vgw_console_lang=en") and "Secure" in cookie and "SameSite=strict" in cookie
    status, _, body = fetch(served, "/console/vouchers", headers={"Cookie": "vgw_console_lang=en"})
    assert b"Voucher search" in body
    assert "憑單查詢" in fetch(served, "/console/vouchers")[2].decode()


def test_an_agency_finds_its_own_voucher_and_never_another_agencys(served, vouchers):
    mine, theirs = vouchers
    status, _, body = fetch(served, f"/console/vouchers?id={mine.voucher_id}")
    assert status == 200 and f"/console/vouchers/{mine.voucher_id}".encode() in body
    status, _, body = fetch(served, f"/console/vouchers?id={theirs.voucher_id}")
    assert status == 200 and theirs.voucher_id.encode() not in body.split(b"</form>", 1)[1]
    listed = fetch(served, "/console/vouchers?status=received")[2]
    assert mine.voucher_id.encode() in listed and theirs.voucher_id.encode() not in listed
    status, _, body = fetch(served, f"/console/vouchers/{theirs.voucher_id}")
    assert status == 404 and b"not-found" in body and theirs.lines[0].payee_name.encode() not in body
    status, _, body = fetch(served, f"/console/vouchers/{mine.voucher_id}/receipts/1", AGENCY_B)
    assert status == 404
    status, headers, body = fetch(served, f"/console/vouchers/{mine.voucher_id}/receipts/1")
    assert status == 200 and headers["content-type"] == "application/xml" and b"Receipt" in body
    assert fetch(served, f"/console/vouchers/{theirs.voucher_id}", TREASURY)[0] == 200  # the treasury sees all


def test_the_detail_shows_lines_history_and_signer_with_a_hostile_payee_as_text(served, vouchers):
    mine, _ = vouchers
    status, _, body = fetch(served, f"/console/vouchers/{mine.voucher_id}")
    assert status == 200
    text = body.decode()
    assert HOSTILE not in text and "<script>alert" not in text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&#39;&lt;b&gt;" in text
    assert "voucher.received" in text and "preparer" in text and f"{mine.total_amount:,}" in text
    assert 'id="signatures"' in text and 'id="bank-acks"' in text and 'id="receipts"' in text


def test_an_agency_sees_none_of_the_treasury_pages_and_cannot_replay(served):
    for path in ("/console/treasury", "/console/treasury/returns", "/console/treasury/unconfirmed",
                 "/console/treasury/dead-letters", "/console/treasury/budgets"):
        status, _, body = fetch(served, path)
        assert status == 403 and b"console-forbidden" in body, path
        assert fetch(served, path, TREASURY)[0] == 200, path
    token = csrf_of(served, AGENCY_A)
    status, _, body = fetch(served, "/console/treasury/dead-letters/replay",
                            form={"csrf": token, "message_id": "M1", "sha256": "0" * 64})
    assert status == 403 and b"console-forbidden" in body
    assert b"/console/treasury" not in fetch(served, "/console/")[2]  # not even linked


def prepared_form(vouchers_factory_line, agency_line_count: int = 1) -> dict:
    line = vouchers_factory_line
    return {"voucher_number": "FORM000001", "fiscal_year": str(NOW.year - 1911), "document_type": "payment",
            "payment_method": "CreditTransfer", "urgency": "ordinary", "budget_subject": "1010101010",
            "object_class": "operations", "purpose": "辦公用品 <採購>", "prepared_on": NOW.date().isoformat(),
            "line1_payee_name": line.payee_name, "line1_payee_id_type": line.payee_id_type.value,
            "line1_payee_id": line.payee_id, "line1_bank_code": line.bank_code,
            "line1_branch_code": line.branch_code, "line1_account_number": line.account_number,
            "line1_amount": "12,345", "line1_memo": ""}


def test_every_post_needs_this_certificates_csrf_token_and_no_foreign_origin(served, vouchers):
    form = prepared_form(vouchers[1].lines[0])
    status, _, body = fetch(served, "/console/prepare", form=form)
    assert status == 403 and b"csrf-invalid" in body
    status, _, body = fetch(served, "/console/prepare", form={**form, "csrf": csrf_of(served, AGENCY_B)})
    assert status == 403 and b"csrf-invalid" in body
    token = csrf_of(served, AGENCY_A)
    status, _, body = fetch(served, "/console/prepare", form={**form, "csrf": token},
                            headers={"Origin": "https://evil.example"})
    assert status == 403 and b"cross-site" in body
    status, _, body = fetch(served, "/console/prepare", form={**form, "csrf": token},
                            headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403 and b"cross-site" in body
    status, headers, _ = fetch(served, "/console/prepare", form={**form, "csrf": token},
                               headers={"Origin": f"https://127.0.0.1:{served.port}", "Sec-Fetch-Site": "same-origin"})
    assert status == 200 and headers["content-type"] == "application/xml"


def test_the_prepared_voucher_is_schema_valid_and_once_signed_the_gateway_accepts_it(served, vouchers):
    form = {**prepared_form(vouchers[1].lines[0]), "csrf": csrf_of(served, AGENCY_A)}
    status, headers, xml = fetch(served, "/console/prepare", form=form)
    assert status == 200, xml
    assert headers["content-disposition"] == f'attachment; filename="{AGENCY_A}-{NOW.year - 1911:03d}-FORM000001-r1.xml"'
    root = etree.fromstring(xml)
    assert schema_problems(root, "voucher.xsd") == []
    voucher = read_voucher(root)
    assert (voucher.agency_code, voucher.total_amount, voucher.purpose) == (AGENCY_A, 12345, "辦公用品 <採購>")
    person = Path(served.pki_dir) / "agencies" / AGENCY_A / "people" / "preparer"
    signed = sign_document(xml, load_key(person / "key.pem"), load_cert(person / "cert.pem"), NOW)
    assert call(served, "POST", "/v1/vouchers", signed)[0] == 202


def test_form_problems_are_shown_by_field_and_nothing_is_downloaded(served, vouchers):
    token = csrf_of(served, AGENCY_A)
    form = {**prepared_form(vouchers[1].lines[0]), "csrf": token, "line1_amount": "lots",
            "line2_payee_name": "第二位", "line2_payee_id_type": "national-id", "line2_payee_id": "A123456789",
            "line2_bank_code": "004", "line2_branch_code": "9999", "line2_account_number": "12345678901234",
            "line2_amount": "5"}
    status, headers, body = fetch(served, "/console/prepare", form=form)
    assert status == 422 and headers["content-type"].startswith("text/html")
    assert b'id="error-line1_amount"' in body
    form["line1_amount"] = "100"
    status, _, body = fetch(served, "/console/prepare", form=form)
    assert status == 422 and b'id="error-line2_branch_code"' in body and b"bank-branch-unknown" in body
    assert b'value="\xe7\xac\xac\xe4\xba\x8c\xe4\xbd\x8d"' in body  # what was typed is kept


def test_bad_queries_and_cursors_are_refused_with_a_code_not_a_traceback(served):
    for path in ("/console/vouchers?from=yesterday", "/console/vouchers?status=nonsense",
                 "/console/vouchers?cursor=bm9wZQ", "/console/queue?role=janitor"):
        status, _, body = fetch(served, path)
        assert status == 400 and (b"query-invalid" in body or b"cursor-invalid" in body), path
        assert b"Traceback" not in body


def test_queues_rejections_and_statement_links_follow_the_viewers_agency(served, vouchers):
    mine, theirs = vouchers
    status, _, body = fetch(served, "/console/queue?role=reviewer")
    assert status == 200 and mine.voucher_id.encode() in body and theirs.voucher_id.encode() not in body
    assert theirs.voucher_id.encode() in fetch(served, "/console/queue?role=reviewer", AGENCY_B)[2]
    assert fetch(served, "/console/queue?role=treasury")[0] == 400  # an agency has no treasury queue
    assert fetch(served, "/console/queue?role=treasury", TREASURY)[0] == 200
    status, _, body = fetch(served, "/console/rejections")
    assert status == 200 and b'id="results"' in body
    status, _, body = fetch(served, "/console/statements?from=2026-11-01&to=2026-11-27")
    links = re.findall(rb'href="(/v1/statements\?[^"]+)"', body)
    assert [link.replace(b"&amp;", b"&") for link in links] == [
        b"/v1/statements?format=" + f.encode() + b"&from=2026-11-01&to=2026-11-27" for f in ("csv", "camt053", "pdf")]
    status, content_type, _ = call(served, "GET", links[0].replace(b"&amp;", b"&").decode())
    assert status == 200 and content_type.startswith("text/csv")


def test_unknown_pages_and_methods_answer_with_the_console_headers_and_the_api_is_unchanged(served):
    status, headers, body = fetch(served, "/console/nowhere")
    assert status == 404 and b"not-found" in body and headers["x-frame-options"] == "DENY"
    status, headers, _ = fetch(served, "/console/vouchers", form={"csrf": "x"})
    assert status == 405 and headers["content-security-policy"].startswith("default-src 'self'")
    assert fetch(served, "/console")[0] == 200
    status, headers, _ = fetch(served, "/consoles")  # not the console: the API's problem document
    assert status == 404 and headers["content-type"] == "application/problem+json"


def test_console_pages_spend_the_agencys_rate_limit_tokens_with_the_api(tmp_path_factory):
    from .test_query_api import _start

    # one token per 100 s: however slow the machine, no token comes back between the test's requests
    gateway = _start(tmp_path_factory.mktemp("console-throttled"), {"VGW_LIMITS_RATE": "0.01", "VGW_LIMITS_BURST": "2"})
    try:
        assert [fetch(gateway, "/console/")[0] for _ in range(2)] == [200, 200]
        status, headers, body = fetch(gateway, "/console/vouchers")
        assert status == 429 and 1 <= int(headers["retry-after"]) <= 100 and b"rate-limited" in body
        assert call(gateway, "GET", "/v1/vouchers")[0] == 429  # one bucket per agency, console and API
        assert fetch(gateway, "/console/", AGENCY_B)[0] == 200
    finally:
        gateway.stop()


def test_the_reviewed_hostile_inputs_are_refused_by_code_not_answered_500(served, vouchers):
    for path, who in (("/console/vouchers?to=9999-12-31", AGENCY_A), ("/console/vouchers?from=0001-01-01", AGENCY_A),
                      ("/console/statements?to=9999-12-31", AGENCY_A), ("/console/treasury?day=9999-12-31", TREASURY),
                      ("/console/treasury?day=0001-01-01", TREASURY), ("/console/vouchers?id=a%00b", AGENCY_A),
                      ("/console/vouchers?payee=%01", AGENCY_A), ("/console/vouchers/a%00b", AGENCY_A)):
        status, _, body = fetch(served, path, who)
        assert status == 400 and b"query-invalid" in body, path
    form = {**prepared_form(vouchers[1].lines[0]), "csrf": csrf_of(served, AGENCY_A)}
    for name, value in (("line1_amount", "²"), ("fiscal_year", "١١٥"), ("purpose", "a\x01b"),
                        ("line1_memo", "\x7f")):
        status, _, body = fetch(served, "/console/prepare", form={**form, name: value})
        assert status == 422 and f'id="error-{name}"'.encode() in body, name


TEXT = st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12), st.dates().map(str),
                st.sampled_from(["²", "\x00", "a\x01", "-1", "9" * 20]))
PAGES = ("/console/vouchers", "/console/queue", "/console/rejections", "/console/statements", "/console/treasury",
         "/console/treasury/returns", "/console/treasury/budgets", "/console/prepare")
FIELDS = ("id", "payee", "from", "to", "status", "agency", "cursor", "role", "day", "out_cursor")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.sampled_from(PAGES), who=st.sampled_from([AGENCY_A, TREASURY]),
       query=st.dictionaries(st.sampled_from(FIELDS), TEXT, max_size=3), voucher_id=TEXT,
       form=st.dictionaries(st.sampled_from(HEADER_FIELDS + tuple(f"line1_{n}" for n in LINE_FIELDS)), TEXT,
                            max_size=4))
def test_no_text_in_a_query_path_or_form_field_makes_the_console_answer_500(served, vouchers, page, who,
                                                                           query, voucher_id, form):
    assert fetch(served, f"{page}?{urlencode(query)}", who)[0] < 500
    assert fetch(served, f"/console/vouchers/{quote(voucher_id, safe='')}", who)[0] < 500
    posted = {**prepared_form(vouchers[1].lines[0]), "csrf": csrf_of(served, AGENCY_A), **form}
    assert fetch(served, "/console/prepare", form=posted)[0] < 500
