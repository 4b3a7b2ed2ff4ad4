"""The OpenAPI 3.1 description of the HTTPS API, served at ``GET /openapi.json``.

Written by hand next to the routes; ``tests/integration/test_query_api.py`` fails when its paths and
methods differ from the klein app's routing table, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import copy

from adapters.http.query_params import DEFAULT_LIMIT, STATUS_PATTERN
from gateway.store import MAX_PAGE

_PROBLEM = {"$ref": "#/components/responses/Problem"}


def _problems(*statuses: int) -> dict:
    return {str(status): _PROBLEM for status in statuses}


def _query(name: str, description: str, schema: dict, *, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


_PAGING = [
    _query("from", "received at or after this instant (ISO 8601 with an offset, e.g. 2026-11-27T08:00:00+08:00)",
           {"type": "string", "format": "date-time"}),
    _query("to", "received before this instant (exclusive; ISO 8601 with an offset)",
           {"type": "string", "format": "date-time"}),
    _query("cursor", "the `next_cursor` of the previous page (opaque)", {"type": "string"}),
    _query("limit", "items per page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_LIMIT}),
]


def _json(schema_name: str, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}


_DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "voucher-gateway",
        "version": "1",
        "description": "Taipei treasury gateway for signed XML payment vouchers. Every route needs a TLS client "
                       "certificate of an agency (its OU names the agency); agencies see only their own "
                       "vouchers. Refusals are RFC 9457 problem documents with a stable `code`.",
    },
    "security": [{"agencyCertificate": []}],
    "paths": {
        "/v1/vouchers": {
            "post": {
                "operationId": "submitVoucher",
                "summary": "Submit a signed voucher (XAdES-BES enveloped XML)",
                "requestBody": {"required": True, "content": {"application/xml": {"schema": {"type": "string"}}}},
                "responses": {
                    "202": {"description": "accepted and stored: the gateway-signed receipt",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/xml": {"schema": {"type": "string"}}}},
                    "200": {"description": "the same bytes again: the original receipt",
                            "content": {"application/xml": {"schema": {"type": "string"}}}},
                    **_problems(401, 403, 409, 413, 422, 429, 500, 503),
                },
            },
            "get": {
                "operationId": "listVouchers",
                "summary": "The calling agency's voucher revisions, oldest received first, one page",
                "parameters": [_query("status", "only revisions with this status (e.g. received, rejected)",
                                      {"type": "string", "pattern": f"^{STATUS_PATTERN.pattern}$"}), *_PAGING],
                "responses": {"200": _json("VoucherPage", "one page"), **_problems(400, 401, 403, 429, 500)},
            },
        },
        "/v1/vouchers/{voucher_id}": {
            "get": {
                "operationId": "voucherStatus",
                "summary": "Status and revisions of one of the caller's vouchers",
                "parameters": [{"name": "voucher_id", "in": "path", "required": True,
                                "schema": {"type": "string"}, "example": "379000001A-115-0001000001"}],
                "responses": {"200": _json("VoucherStatus", "the voucher"),
                              **_problems(401, 403, 404, 429, 500)},
            },
        },
        "/v1/vouchers/{voucher_id}/actions": {
            "post": {
                "operationId": "submitAction",
                "summary": "Submit a signed approval or rejection (schemas/action.xsd) for one stage of a revision",
                "description": "The signer must hold the stage's role for the voucher's agency at signing time "
                               "(directly or as a deputy in window), must not have signed another stage of the "
                               "revision, and the action must name the previous signed document of the chain.",
                "parameters": [{"name": "voucher_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/xml": {"schema": {"type": "string"}}}},
                "responses": {
                    "202": {"description": "decided and stored: the gateway-signed receipt (with the status after)",
                            "content": {"application/xml": {"schema": {"type": "string"}}}},
                    "200": {"description": "the same action again: the original receipt",
                            "content": {"application/xml": {"schema": {"type": "string"}}}},
                    **_problems(401, 403, 404, 409, 413, 422, 429, 500, 503),
                },
            },
        },
        "/v1/queues/{role}": {
            "get": {
                "operationId": "workQueue",
                "summary": "What awaits a role in the caller's agency (the treasury: every agency), oldest first",
                "parameters": [{"name": "role", "in": "path", "required": True, "schema": {
                    "type": "string", "enum": ["preparer", "reviewer", "accountant", "head", "releaser", "treasury"]}},
                    _query("limit", "items", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                              "default": DEFAULT_LIMIT})],
                "responses": {"200": _json("Queue", "the queue"), **_problems(400, 401, 403, 404, 429, 500)},
            },
        },
        "/v1/rejections": {
            "get": {
                "operationId": "listRejections",
                "summary": "The caller's vouchers sent back (退件) whose latest revision is rejected",
                "description": "A page may hold fewer than `limit` items while `next_cursor` is not null.",
                "parameters": list(_PAGING),
                "responses": {"200": _json("VoucherPage", "one page"), **_problems(400, 401, 403, 429, 500)},
            },
        },
        "/v1/statements": {
            "get": {
                "operationId": "statement",
                "summary": "The caller's statement (對帳單) of payment lines over Taipei dates, as CSV, camt.053 or PDF",
                "description": "See docs/api.md, Statements: the date rule, the entries and the totals.",
                "parameters": [
                    _query("from", "first Taipei date (inclusive)", {"type": "string", "format": "date"}, required=True),
                    _query("to", "last Taipei date (inclusive; at most 400 days)", {"type": "string", "format": "date"},
                           required=True),
                    _query("format", "csv, camt053 or pdf", {"type": "string", "enum": ["csv", "camt053", "pdf"]},
                           required=True),
                    _query("dates", "roc: 民國 dates in the CSV or PDF", {"type": "string", "enum": ["iso", "roc"],
                                                                         "default": "iso"})],
                "responses": {"200": {"description": "the statement as an attachment", "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/xml": {"schema": {"type": "string"}},
                    "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
                    **_problems(400, 401, 403, 429, 500)},
            },
        },
        "/healthz": {"get": {"operationId": "healthz", "summary": "200 while the process runs",
                             "responses": {"200": {"description": "alive"}}}},
        "/readyz": {"get": {"operationId": "readyz",
                            "summary": "200 when the store answers and a configured AMQP consumer is connected",
                            "responses": {"200": {"description": "ready"}, **_problems(500, 503)}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus text exposition",
                             "responses": {"200": {"description": "metrics",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "this document",
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {"application/json": {}}}}}},
    },
    "components": {
        "securitySchemes": {"agencyCertificate": {
            "type": "mutualTLS",
            "description": "TLS 1.2+ client certificate chaining to the platform root, clientAuth, not revoked, "
                           "OU = the agency code known to the role registry"}},
        "responses": {"Problem": {"description": "a refusal (RFC 9457)", "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}},
        "schemas": {
            "Problem": {"type": "object", "required": ["type", "title", "status", "code"], "properties": {
                "type": {"type": "string", "format": "uri"}, "title": {"type": "string"},
                "status": {"type": "integer"}, "detail": {"type": "string"}, "code": {"type": "string"},
                "instance": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "object", "required": ["code", "message"],
                                                       "properties": {"code": {"type": "string"},
                                                                      "message": {"type": "string"},
                                                                      "line": {"type": "integer"},
                                                                      "path": {"type": "string"}}}}}},
            "VoucherItem": {"type": "object", "properties": {
                "voucher_id": {"type": "string"}, "revision": {"type": "integer"}, "status": {"type": "string"},
                "received_at": {"type": "string", "format": "date-time"}, "receipt_id": {"type": "string"},
                "control_total": {"type": ["integer", "null"]}, "line_count": {"type": ["integer", "null"]}}},
            "VoucherPage": {"type": "object", "required": ["items", "next_cursor"], "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/VoucherItem"}},
                "next_cursor": {"type": ["string", "null"]}}},
            "Queue": {"type": "object", "required": ["role", "status", "items"], "properties": {
                "role": {"type": "string"}, "status": {"type": "string"},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "voucher_id": {"type": "string"}, "revision": {"type": "integer"}, "agency": {"type": "string"},
                    "status": {"type": "string"}, "waiting_since": {"type": "string", "format": "date-time"},
                    "received_at": {"type": "string", "format": "date-time"},
                    "urgency": {"type": ["string", "null"]}, "control_total": {"type": ["integer", "null"]},
                    "chain_sha256": {"type": "string", "description": "what the next action names as PreviousSha256"}}}}}},
            "VoucherStatus": {"type": "object", "properties": {
                "voucher_id": {"type": "string"}, "agency": {"type": "string"}, "revision": {"type": "integer"},
                "status": {"type": "string"}, "current_stage": {"type": ["string", "null"]},
                "status_since": {"type": "string", "format": "date-time"}, "chain_sha256": {"type": "string"},
                "history": {"type": "array", "items": {"type": "object", "properties": {
                    "at": {"type": "string", "format": "date-time"}, "revision": {"type": "integer"},
                    "event": {"type": "string"}, "role": {"type": ["string", "null"]},
                    "result": {"type": ["string", "null"]}, "reason_code": {"type": "string"},
                    "reason": {"type": "string"}, "audit_seq": {"type": "integer"}}}},
                "control_total": {"type": ["integer", "null"]},
                "line_count": {"type": ["integer", "null"]},
                "payments": {"type": "array", "description": "every payment line sent to the bank, with where it "
                             "stands (pending, accepted, paid, returned = 退匯) and a return's ISO reason",
                             "items": {"type": "object", "properties": {
                                 "revision": {"type": "integer"}, "line": {"type": "integer"},
                                 "end_to_end_id": {"type": "string"}, "amount": {"type": "integer"},
                                 "state": {"type": "string", "enum": ["pending", "accepted", "paid", "returned"]},
                                 "message_id": {"type": "string"}, "bank_reference": {"type": ["string", "null"]},
                                 "booked_on": {"type": ["string", "null"], "format": "date"},
                                 "reason_code": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]},
                                 "unconfirmed": {"type": "boolean"},
                                 "notice": {"type": ["object", "null"], "description": "the deposit notice (入戶通知) "
                                            "of the line, null when it asked for none", "properties": {
                                     "channel": {"type": "string", "enum": ["email", "fax", "post"]},
                                     "state": {"type": "string", "enum": ["waiting", "pending", "sent", "bounced",
                                                                          "failed", "cancelled"]},
                                     "attempts": {"type": "integer"},
                                     "sent_at": {"type": ["string", "null"], "format": "date-time"},
                                     "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                                     "last_error": {"type": ["string", "null"]}}}}}},
                "revisions": {"type": "array", "items": {"type": "object", "properties": {
                    "revision": {"type": "integer"}, "status": {"type": "string"},
                    "received_at": {"type": "string", "format": "date-time"}, "receipt_id": {"type": "string"},
                    "received_sha256": {"type": "string"}}}}}},
        },
    },
}


def openapi_document() -> dict:
    """A fresh copy of the document (callers may not change the served one)."""
    return copy.deepcopy(_DOCUMENT)
