"""Hypothesis against a running ``vgw serve``: hostile bodies never yield a 5xx and never change the store.

Bodies: random bytes, truncations, bit flips and splices of a signed voucher the gateway already holds,
oversized bodies (a valid voucher padded past the cap), the held voucher again and fresh valid vouchers,
each under a random Content-Type. The oracle, for every request:

- never a 5xx; a refusal is ``application/problem+json`` whose ``status`` matches and which has a ``code``;
- 200/202 only for bytes identical to a valid signed voucher: the held one (200, its original receipt) or a
  fresh one (202). A mutation that still verifies names the held voucher's id and revision with other
  bytes, so it must be a 409, never a receipt;
- the audit log grows by exactly one entry on a 202 and not at all otherwise.
"""

from __future__ import annotations

import http.client
import itertools
import json
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.storage.factory import open_store
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.pki.layout import init_pki, load_cert, load_key

from ..conftest import AGENCY_A, NOW
from .test_https_intake import MAX_BODY, Gateway, client_context

CONTENT_TYPES = [None, "application/xml", "text/xml", "text/plain", "application/json",
                 "application/octet-stream", "application/x-www-form-urlencoded", "application/xml; charset=latin-1",
                 "multipart/form-data; boundary=x", "", "\x7f/\x7f"]
_numbers = itertools.count(1)


class Served:
    def __init__(self, gateway: Gateway, store, held: bytes, receipt: bytes, sign) -> None:
        self.gateway, self.store, self.held, self.receipt, self.sign = gateway, store, held, receipt, sign
        self.context = client_context(gateway.pki_dir, AGENCY_A)

    def post(self, body: bytes, content_type: str | None) -> tuple[int, str | None, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.gateway.port, context=self.context, timeout=30)
        try:
            headers = {} if content_type is None else {"Content-Type": content_type}
            conn.request("POST", "/v1/vouchers", body=body, headers=headers)
            reply = conn.getresponse()
            return reply.status, reply.getheader("Content-Type"), reply.read()
        finally:
            conn.close()

    def audit_head(self) -> int:
        seq = 0
        while page := self.store.audit_entries(after_seq=seq, limit=1000):
            seq = page[-1].seq
        return seq


@pytest.fixture(scope="module")
def served(tmp_path_factory, banks):
    from simulators.voucher_factory import VoucherFactory

    base = tmp_path_factory.mktemp("fuzz")
    init_pki(base / "pki", agencies=1, now=NOW)
    person = base / "pki" / "agencies" / AGENCY_A / "people" / "preparer"
    key, cert = load_key(person / "key.pem"), load_cert(person / "cert.pem")
    factory = VoucherFactory(banks, seed=99)

    def sign_new() -> bytes:
        voucher = factory.voucher(AGENCY_A, today=NOW.date(), voucher_number=f"FZ{next(_numbers):06d}")
        return sign_document(voucher_to_xml(voucher), key, cert, NOW)

    store_url = f"sqlite:///{base / 'store.sqlite3'}"
    gateway = Gateway(base / "pki", store_url, base / "serve.log")
    gateway.start()
    store = open_store(store_url)
    try:
        held = sign_new()
        status, _, receipt = Served(gateway, store, held, b"", sign_new).post(held, "application/xml")
        assert status == 202, receipt
        yield Served(gateway, store, held, receipt, sign_new)
    finally:
        store.close()
        gateway.stop()


def _flip(data: bytes, bits: list[int]) -> bytes:
    out = bytearray(data)
    for bit in bits:
        out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def bodies(held_length: int):
    """(kind, how to make the body from the held voucher): the held voucher is only known at run time."""
    return st.one_of(
        st.tuples(st.just("random"), st.binary(max_size=4096)),
        st.tuples(st.just("truncated"), st.integers(0, held_length - 1)),
        st.tuples(st.just("bit-flips"), st.lists(st.integers(0, held_length * 8 - 1), min_size=1, max_size=4)),
        st.tuples(st.just("splice"), st.tuples(st.integers(0, held_length), st.integers(0, 64),
                                               st.binary(max_size=64))),
        st.tuples(st.just("oversized"), st.integers(1, 20_000)),
        st.tuples(st.just("held"), st.none()),
        st.tuples(st.just("fresh"), st.none()),
    )


def make_body(served: Served, kind: str, arg) -> bytes:
    held = served.held
    if kind == "random":
        return arg
    if kind == "truncated":
        return held[:arg]
    if kind == "bit-flips":
        return _flip(held, arg)
    if kind == "splice":
        at, cut, insert = arg
        return held[:at] + insert + held[at + cut:]
    if kind == "oversized":  # still a valid voucher up to the padding: trailing whitespace is allowed XML
        return held + b"\n" * (MAX_BODY - len(held) + arg)
    if kind == "held":
        return held
    return served.sign()  # fresh


def test_hostile_bodies_never_get_a_5xx_and_never_change_the_store(served):
    seen: dict[str, int] = {}

    @settings(max_examples=100, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body_spec=bodies(len(served.held)), content_type=st.sampled_from(CONTENT_TYPES))
    def check(body_spec, content_type):
        kind, arg = body_spec
        body = make_body(served, kind, arg)
        before = served.audit_head()
        try:
            status, reply_type, reply = served.post(body, content_type)
        except (ssl.SSLError, ConnectionError, http.client.HTTPException) as exc:
            raise AssertionError(f"{kind}: the gateway dropped the connection instead of answering: {exc!r}") from exc
        after = served.audit_head()
        seen[f"{kind} {status}"] = seen.get(f"{kind} {status}", 0) + 1
        assert status < 500, (kind, status, reply[:500])
        if status in (200, 202):
            assert reply_type.startswith("application/xml")
            if status == 200:
                assert body == served.held and reply == served.receipt, kind
            else:
                assert kind == "fresh", (kind, len(body))
        else:
            assert reply_type == "application/problem+json", (kind, status, reply_type, reply[:300])
            document = json.loads(reply)
            assert document["status"] == status and isinstance(document.get("code"), str) and document["code"]
            assert b"Traceback" not in reply
            if body == served.held:  # only a rate limit may refuse the held voucher's own bytes
                assert document["code"] == "rate-limited", document
        assert after == before + (1 if status == 202 else 0), (kind, status, before, after)

    check()
    # Each kind of body was actually tried (hypothesis could in principle starve one).
    tried = {key.split()[0] for key in seen}
    assert tried >= {"random", "truncated", "bit-flips", "oversized"}, seen


def test_a_multipart_content_type_still_gets_a_problem_document(served):
    """twisted.web would parse a multipart/form-data body as a form before our route runs and answer a failed
    parse with a bare 400; the gateway's requests do not parse forms (adapters/http/site.BodyLimitedRequest)."""
    status, reply_type, reply = served.post(b"not a form", "multipart/form-data; boundary=x")
    assert status < 500 and reply_type == "application/problem+json", (status, reply_type, reply)
