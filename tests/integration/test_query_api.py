"""`vgw serve` over real mTLS: the query API, /metrics, the per-request log line, the per-agency rate limit
and /openapi.json. Records the workflow will write later (rejections) are put straight into the store."""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.http.site import GatewayHttpApi
from adapters.storage.factory import open_store
from gateway.store import AuditEvent, IntakeRecord
from simulators.pki.layout import init_pki

from ..conftest import AGENCY_A, AGENCY_B, NOW
from .test_https_intake import Gateway, client_context, signed_voucher

UTC = datetime.timezone.utc


def request(gateway: Gateway, method: str, path: str, body: bytes | None = None, agency: str = AGENCY_A):
    """(status, headers, body) of one request over its own mTLS connection."""
    conn = http.client.HTTPSConnection("127.0.0.1", gateway.port, context=client_context(gateway.pki_dir, agency),
                                       timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/xml"} if body else {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def get_json(gateway, path, agency=AGENCY_A, expect=200):
    status, headers, body = request(gateway, "GET", path, agency=agency)
    assert status == expect, body
    return json.loads(body)


def _start(base, env: dict[str, str]) -> Gateway:
    """A gateway whose limits come from ``env`` (the VGW_LIMITS_* variables), not from the command line."""
    init_pki(base / "pki", agencies=2, now=NOW)
    gateway = Gateway(base / "pki", f"sqlite:///{base / 'store.sqlite3'}", base / "serve.log", rate_limit=None)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # the child inherits the environment at Popen time
    try:
        gateway.start()
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
    return gateway


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    gateway = _start(tmp_path_factory.mktemp("query"), {"VGW_LIMITS_RATE": "0"})
    store = open_store(gateway.store_url)
    gateway.store = store
    yield gateway
    store.close()
    gateway.stop()


def put(store, agency: str, voucher_id: str, revision: int, status: str, at: datetime.datetime) -> IntakeRecord:
    """A record as the workflow (or intake) would leave it, written to the server's own store."""
    body = f"<v>{voucher_id}#{revision}#{status}</v>".encode()
    sha = hashlib.sha256(body).hexdigest()
    record = IntakeRecord(voucher_id=voucher_id, revision=revision, agency=agency, received_sha256=sha,
                          received_bytes=body, received_at=at, status=status, receipt_id=f"R-{sha[:32]}",
                          receipt_xml=b"<Receipt/>", summary={"control_total": 100 * revision, "line_count": 1})
    store.record_intake(record, AuditEvent(at=at, actor="gateway", action="test.put", subject=record.subject,
                                           document_sha256=sha))
    return record


def window(year: int) -> tuple[datetime.datetime, str]:
    """A start instant and its query suffix; each test uses its own year so tests sharing the store stay apart."""
    start = datetime.datetime(year, 1, 1, tzinfo=UTC)
    return start, f"from={year}-01-01T00:00:00Z&to={year + 1}-01-01T00:00:00Z"


def test_the_list_pages_through_the_callers_vouchers_only(served):
    start, span = window(2001)
    mine = [put(served.store, AGENCY_A, f"{AGENCY_A}-090-P{i:07d}", 1, "received", start + datetime.timedelta(hours=i))
            for i in range(5)]
    put(served.store, AGENCY_B, f"{AGENCY_B}-090-P0000001", 1, "received", start + datetime.timedelta(minutes=30))
    seen, cursor, pages = [], None, 0
    while True:
        page = get_json(served, f"/v1/vouchers?{span}&limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert len(page["items"]) <= 2
        seen += [(item["voucher_id"], item["revision"], item["control_total"]) for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [(r.voucher_id, 1, 100) for r in mine] and pages == 3
    others = get_json(served, f"/v1/vouchers?{span}", agency=AGENCY_B)["items"]
    assert [item["voucher_id"] for item in others] == [f"{AGENCY_B}-090-P0000001"]


def test_status_and_the_time_window_filter_with_from_inclusive_and_to_exclusive(served):
    start, _ = window(2002)
    for hour, status in [(0, "received"), (1, "rejected"), (2, "received"), (3, "received")]:
        put(served.store, AGENCY_A, f"{AGENCY_A}-091-W{hour:07d}", 1, status, start + datetime.timedelta(hours=hour))
    # 09:00+08:00 is 01:00Z (inclusive), 11:00+08:00 is 03:00Z (exclusive); %2B is "+" in a query string.
    page = get_json(served, "/v1/vouchers?from=2002-01-01T09:00:00%2B08:00&to=2002-01-01T11:00:00%2B08:00")
    assert [item["voucher_id"][-8:] for item in page["items"]] == ["W0000001", "W0000002"]
    page = get_json(served, "/v1/vouchers?status=rejected&from=2002-01-01T00:00:00Z&to=2003-01-01T00:00:00Z")
    assert [(item["voucher_id"][-8:], item["status"]) for item in page["items"]] == [("W0000001", "rejected")]


def test_rejections_list_only_vouchers_whose_latest_revision_is_rejected(served):
    start, span = window(2003)
    at = lambda minutes: start + datetime.timedelta(minutes=minutes)  # noqa: E731
    put(served.store, AGENCY_A, f"{AGENCY_A}-092-R0000001", 1, "rejected", at(1))   # awaiting correction
    put(served.store, AGENCY_A, f"{AGENCY_A}-092-R0000002", 1, "rejected", at(2))   # corrected since:
    put(served.store, AGENCY_A, f"{AGENCY_A}-092-R0000002", 2, "received", at(3))
    put(served.store, AGENCY_A, f"{AGENCY_A}-092-R0000003", 1, "received", at(4))   # never rejected
    put(served.store, AGENCY_B, f"{AGENCY_B}-092-R0000004", 1, "rejected", at(5))   # another agency's
    page = get_json(served, f"/v1/rejections?{span}")
    assert [(i["voucher_id"], i["revision"], i["status"]) for i in page["items"]] == [
        (f"{AGENCY_A}-092-R0000001", 1, "rejected")]
    assert page["next_cursor"] is None
    assert [i["voucher_id"] for i in get_json(served, f"/v1/rejections?{span}", agency=AGENCY_B)["items"]] == [
        f"{AGENCY_B}-092-R0000004"]


def test_a_voucher_posted_over_https_shows_in_the_list(served, factory):
    voucher, data = signed_voucher(served, factory)
    before = datetime.datetime.now(UTC) - datetime.timedelta(minutes=1)
    assert request(served, "POST", "/v1/vouchers", data)[0] == 202
    span = f"from={before.strftime('%Y-%m-%dT%H:%M:%SZ')}&status=received"
    items = get_json(served, f"/v1/vouchers?{span}")["items"]
    assert [(i["voucher_id"], i["control_total"]) for i in items] == [(voucher.voucher_id, voucher.total_amount)]


@pytest.mark.parametrize("query, code", [
    ("status=Not%20a%20status", "query-invalid"),
    ("from=2026-01-01T00:00:00", "query-invalid"),            # no offset: whose midnight?
    ("from=yesterday", "query-invalid"),
    ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "query-invalid"),
    ("stauts=received", "query-invalid"),                      # a typo must not list everything
    ("status=received&status=rejected", "query-invalid"),
    ("limit=0", "limit-invalid"),
    ("limit=1001", "limit-invalid"),
    ("limit=ten", "limit-invalid"),
    ("cursor=not*base64", "cursor-invalid"),
    ("cursor=eyJub3QiOiJvdXJzIn0", "cursor-invalid"),         # base64 JSON, but not a cursor we issued
])
def test_bad_query_parameters_are_400_problems_with_stable_codes(served, query, code):
    for path in ("/v1/vouchers", "/v1/rejections"):
        if path == "/v1/rejections" and "status" in query:
            continue
        status, headers, body = request(served, "GET", f"{path}?{query}")
        document = json.loads(body)
        assert (status, headers["content-type"], document["code"], document["status"]) == (
            400, "application/problem+json", code, 400), body


def test_status_is_not_a_parameter_of_rejections(served):
    status, _, body = request(served, "GET", "/v1/rejections?status=received")
    assert status == 400 and json.loads(body)["code"] == "query-invalid"


def metric_values(gateway) -> dict[tuple[str, tuple], float]:
    status, headers, body = request(gateway, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def test_metrics_count_acceptances_refusals_by_code_and_latency_per_route(served, factory):
    before = metric_values(served)
    _, data = signed_voucher(served, factory)
    assert request(served, "POST", "/v1/vouchers", data)[0] == 202
    assert request(served, "POST", "/v1/vouchers", b"not xml")[0] == 422
    assert request(served, "GET", "/v1/vouchers/nobody-000-0000000")[0] == 404
    after = metric_values(served)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("vgw_vouchers_accepted_total") == 1
    assert delta("vgw_refusals_total", code="xml-malformed") == 1
    assert delta("vgw_refusals_total", code="not-found") == 1
    assert delta("vgw_http_request_duration_seconds_count", route="/v1/vouchers", method="POST") == 2
    assert delta("vgw_http_request_duration_seconds_count", route="/v1/vouchers/<string:voucher_id>",
                 method="GET") == 1
    assert delta("vgw_http_requests_total", route="/v1/vouchers", method="POST", status="202") == 1
    # the /metrics request itself is in flight while it is answered, and no voucher id is a label
    assert after[("vgw_http_requests_in_flight", ())] == 1
    assert not any("nobody-000" in str(labels) for _, labels in after)


def log_lines(gateway) -> list[dict]:
    lines = []
    for line in gateway.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            event = json.loads(line.lstrip("\x1e"))
            if event.get("event") == "http.request":
                lines.append(event)
    return lines


def test_one_json_log_line_per_request_with_agency_voucher_outcome_and_latency(served, factory):
    voucher, data = signed_voucher(served, factory)
    assert request(served, "POST", "/v1/vouchers", data)[0] == 202
    assert request(served, "POST", "/v1/vouchers", data)[0] == 200
    assert request(served, "POST", "/v1/vouchers", b"<SECRET-BODY-MARKER>")[0] == 422
    assert request(served, "GET", f"/v1/vouchers/{voucher.voucher_id}")[0] == 200
    mine = [e for e in log_lines(served) if e.get("voucher_id") == voucher.voucher_id]
    assert [(e["method"], e["path"], e["status"], e["outcome"]) for e in mine] == [
        ("POST", "/v1/vouchers", 202, "accepted"), ("POST", "/v1/vouchers", 200, "duplicate"),
        ("GET", f"/v1/vouchers/{voucher.voucher_id}", 200, "ok")]
    assert all(e["agency"] == AGENCY_A and isinstance(e["latency_ms"], (int, float)) for e in mine)
    refused = [e for e in log_lines(served) if e["outcome"] == "xml-malformed"]
    assert refused and refused[-1]["status"] == 422 and refused[-1]["voucher_id"] is None
    text = served.log.read_text(errors="replace")
    assert "SECRET-BODY-MARKER" not in text and "BEGIN" not in text  # no bodies, no keys or certificates


def _rules() -> set[tuple[str, str]]:
    out = set()
    for rule in GatewayHttpApi.app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        out |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return out


def test_openapi_describes_exactly_the_routes_served(served):
    document = get_json(served, "/openapi.json")
    assert document["openapi"].startswith("3.1")
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert described == _rules()
    assert ("/v1/rejections", "get") in described and ("/v1/vouchers", "get") in described

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from [value] if key == "$ref" else refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(document):  # every reference resolves inside the document
        target = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
    for path, item in document["paths"].items():  # every path parameter is declared
        for name in re.findall(r"{([^}]+)}", path):
            assert all(any(p["name"] == name and p["in"] == "path" for p in op.get("parameters", []))
                       for op in item.values()), (path, name)


@pytest.fixture(scope="module")
def throttled(tmp_path_factory):
    # one token per 100 s: however slow the machine, no token comes back between the test's requests
    gateway = _start(tmp_path_factory.mktemp("throttled"), {"VGW_LIMITS_RATE": "0.01", "VGW_LIMITS_BURST": "2"})
    yield gateway
    gateway.stop()


def test_an_agency_over_its_rate_gets_429_with_retry_after_and_others_do_not(throttled):
    assert [request(throttled, "GET", "/v1/vouchers")[0] for _ in range(2)] == [200, 200]
    status, headers, body = request(throttled, "GET", "/v1/vouchers")
    document = json.loads(body)
    assert (status, document["code"], document["status"]) == (429, "rate-limited", 429)
    assert headers["content-type"] == "application/problem+json"
    assert 1 <= int(headers["retry-after"]) <= 100
    assert request(throttled, "POST", "/v1/vouchers", b"<x/>")[0] == 429  # intake shares the bucket
    assert request(throttled, "GET", "/v1/vouchers", agency=AGENCY_B)[0] == 200
    assert request(throttled, "GET", "/healthz")[0] == 200  # probes are not limited
    assert metric_values(throttled)[("vgw_refusals_total", (("code", "rate-limited"),))] == 2
