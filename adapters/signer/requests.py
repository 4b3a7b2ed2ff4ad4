"""What the signing agent agrees to sign, and what it tells the person it is signing.

A page may post only a document of the gateway's own schemas — a voucher (付款憑單), an approval action
(審核簽章) or a console sign-in challenge for that page's own origin — unsigned, schema-valid and under a size cap, parsed with the same hardened parser as every
untrusted input. The summary (voucher id, agency, revision, stage, decision, reason, amount, line count) is
read from that document, never from anything else the page says: it is what the signature will cover.

An action says its own SigningTime, which the gateway requires to equal the XAdES SigningTime to the second,
so the agent signs at that time — and only when it is within :data:`MAX_CLOCK_SKEW` of the agent's clock:
the page cannot have a person sign for another moment than now.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from lxml import etree

from gateway.errors import Refusal
from gateway.sign_in.challenge import NS as SIGN_IN_NS
from gateway.sign_in.challenge import SIGN_IN_SCHEMA, read_challenge
from gateway.vouchers.check import VOUCHER_SCHEMA
from gateway.vouchers.xml_mapping import NS as VOUCHER_NS
from gateway.vouchers.xml_mapping import read_voucher
from gateway.workflow.actions import ACTION_SCHEMA, read_action
from gateway.workflow.actions import NS as ACTION_NS
from gateway.xmlsec.parsing import XmlLimits, parse_untrusted
from gateway.xmlsec.validation import schema_problems

MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
"""The largest document the agent signs: a voucher of thousands of payroll lines fits; a page cannot make the
card's holder wait on a hundred megabytes."""
LIMITS = XmlLimits(max_bytes=MAX_DOCUMENT_BYTES)
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
REFUSED = "signer-document-refused"


@dataclass(frozen=True)
class SigningRequest:
    """A document the agent will sign: its kind, the bytes as posted, when to sign, what it says."""

    kind: str  # "voucher" | "action"
    data: bytes
    signing_time: datetime.datetime
    summary: dict


def signing_request(data: bytes, *, now: datetime.datetime, origin: str | None = None) -> SigningRequest:
    """Accept ``data`` as a document the agent may sign for a page of ``origin``, or Refusal
    (``signer-document-refused`` with the document's own problems; the parser's codes for hostile XML)."""
    root = parse_untrusted(data, LIMITS)
    namespace = etree.QName(root).namespace
    if root.find(f"{{{DSIG_NS}}}Signature") is not None:
        raise Refusal(REFUSED, "the document is signed already: the agent signs only unsigned documents")
    if namespace == ACTION_NS and etree.QName(root).localname == "Action":
        return _action(data, root, now)
    if namespace == VOUCHER_NS and etree.QName(root).localname == "Voucher":
        return _voucher(data, root, now)
    if namespace == SIGN_IN_NS and etree.QName(root).localname == "SignIn":
        return _sign_in(data, root, now, origin)
    raise Refusal(REFUSED, f"a {{{namespace}}}{etree.QName(root).localname} is not a document of the gateway's "
                  "(a voucher or an approval action)")


def _valid(root: etree._Element, schema: str) -> None:
    problems = schema_problems(root, schema)
    if problems:
        first = problems[0]
        raise Refusal(REFUSED, f"the document breaks {schema}: {first.message}", line=first.line, path=first.path)


def _action(data: bytes, root: etree._Element, now: datetime.datetime) -> SigningRequest:
    _valid(root, ACTION_SCHEMA)
    try:
        action = read_action(root)
    except Refusal as refusal:
        raise Refusal(REFUSED, f"the action is not one the gateway takes: {refusal.message}") from None
    at = action.signing_time
    if at.tzinfo is None or abs(at - now) > MAX_CLOCK_SKEW:
        raise Refusal("signer-document-stale", f"the action is to be signed at {at.isoformat()}, not now "
                      f"({now.isoformat(timespec='seconds')}): ask the gateway for a fresh one")
    summary = {"kind": "action", "voucher_id": action.voucher_id, "agency": action.voucher_id.split("-", 1)[0],
               "revision": action.revision, "stage": action.stage.value, "decision": action.decision.value,
               "reason": None if action.reason is None else {"code": action.reason.code.value,
                                                              "text": action.reason.text},
               "voucher_sha256": action.voucher_sha256, "signing_time": at.isoformat()}
    return SigningRequest("action", data, at, summary)


def _voucher(data: bytes, root: etree._Element, now: datetime.datetime) -> SigningRequest:
    _valid(root, VOUCHER_SCHEMA)
    voucher = read_voucher(root)
    paid = sum(line.amount for line in voucher.lines)
    if paid != voucher.total_amount or len(voucher.lines) != voucher.line_count:
        raise Refusal(REFUSED, f"the voucher declares {voucher.line_count} lines and NT${voucher.total_amount:,} but "
                      f"holds {len(voucher.lines)} lines of NT${paid:,}: a person must not be shown one sum and sign "
                      "another")
    summary = {"kind": "voucher", "voucher_id": voucher.voucher_id, "agency": voucher.agency_code,
               "revision": voucher.revision, "amount": paid, "lines": len(voucher.lines), "purpose": voucher.purpose}
    return SigningRequest("voucher", data, now.replace(microsecond=0), summary)


def _sign_in(data: bytes, root: etree._Element, now: datetime.datetime, origin: str | None) -> SigningRequest:
    """A sign-in challenge: only for the page of the origin it names, and only while it is valid."""
    _valid(root, SIGN_IN_SCHEMA)
    challenge = read_challenge(root)
    if challenge.origin != origin:
        raise Refusal(REFUSED, f"the challenge is for {challenge.origin}, not for the page asking ({origin})")
    if not challenge.issued_at - MAX_CLOCK_SKEW <= now < challenge.expires:
        raise Refusal("signer-document-stale", f"the challenge is valid until {challenge.expires.isoformat()} only")
    summary = {"kind": "sign-in", "origin": challenge.origin, "expires": challenge.expires.isoformat()}
    return SigningRequest("sign-in", data, now.replace(microsecond=0), summary)


def summary_line(summary: dict) -> str:
    """The summary in one line, for the agent's log and its terminal."""
    if summary["kind"] == "sign-in":
        return f"sign in to {summary['origin']}"
    if summary["kind"] == "voucher":
        return (f"voucher {summary['voucher_id']} revision {summary['revision']} of {summary['agency']}: "
                f"{summary['lines']} lines, NT${summary['amount']:,}")
    reason = summary["reason"]
    because = f" ({reason['code']}: {reason['text']})" if reason else ""
    return (f"{summary['decision']} of voucher {summary['voucher_id']} revision {summary['revision']} at the "
            f"{summary['stage']} stage{because}")
