"""RFC 9457 problem documents: the members agencies match on, every problem listed, no leaked internals."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.errors import Problem, Refusal
from gateway.problems import PROBLEM_TYPE_BASE, TITLES, problem_document, problem_for_internal_error, problem_type

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_single_problem_document_has_every_member() -> None:
    refusal = Refusal("signature-invalid", "a signed part was changed after signing (digest mismatch)")
    document = problem_document(refusal, instance="urn:uuid:5b1c0e3a-0000-4000-8000-000000000001")
    assert document == {
        "type": "https://vgw.taipei.gov.tw/problems/signature-invalid",
        "title": "The signature does not verify",
        "status": 422,
        "detail": "a signed part was changed after signing (digest mismatch)",
        "code": "signature-invalid",
        "errors": [{"code": "signature-invalid",
                    "message": "a signed part was changed after signing (digest mismatch)"}],
        "instance": "urn:uuid:5b1c0e3a-0000-4000-8000-000000000001",
    }
    assert json.loads(json.dumps(document, ensure_ascii=False)) == document


def test_every_problem_is_listed_with_line_and_path_when_known() -> None:
    refusal = Refusal([
        Problem("schema-invalid", "Element 'Amount': '0' is not valid", 14, "/Voucher/Payees/Line[2]/Amount"),
        Problem("schema-invalid", "Element 'BankCode': 'x' is not valid", 20, None),
        Problem("schema-invalid", "Missing child element", None, "/Voucher/Control"),
    ])
    document = problem_document(refusal, instance=None)
    assert "instance" not in document
    assert document["detail"] == "3 problems; the first: Element 'Amount': '0' is not valid"
    assert document["errors"] == [
        {"code": "schema-invalid", "message": "Element 'Amount': '0' is not valid", "line": 14,
         "path": "/Voucher/Payees/Line[2]/Amount"},
        {"code": "schema-invalid", "message": "Element 'BankCode': 'x' is not valid", "line": 20},
        {"code": "schema-invalid", "message": "Missing child element", "path": "/Voucher/Control"},
    ]


def test_status_follows_the_refusal() -> None:
    assert problem_document(Refusal("too-large", "x"), instance=None)["status"] == 413
    assert problem_document(Refusal("duplicate-conflict", "x"), instance=None)["status"] == 409
    assert problem_document(Refusal("revision-not-accepted", "x"), instance=None)["status"] == 409
    assert problem_document(Refusal("agency-mismatch", "x"), instance=None)["status"] == 403


def test_title_is_fixed_per_code_and_detail_carries_the_particulars() -> None:
    one = problem_document(Refusal("payee-id-invalid", "line 1: checksum fails"), instance=None)
    two = problem_document(Refusal("payee-id-invalid", "line 9: checksum fails"), instance=None)
    assert one["title"] == two["title"] and one["detail"] != two["detail"]
    assert one["type"] == two["type"] == problem_type("payee-id-invalid")


def test_unknown_code_gets_a_generic_title_and_its_own_type() -> None:
    document = problem_document(Refusal("something-new", "x"), instance=None)
    assert document["title"] == "The request was refused"
    assert document["type"] == PROBLEM_TYPE_BASE + "something-new" and document["code"] == "something-new"


def test_internal_error_document_says_nothing_about_the_cause() -> None:
    document = problem_for_internal_error("req-42")
    assert document["status"] == 500 and document["code"] == "internal-error"
    assert document["type"] == PROBLEM_TYPE_BASE + "internal-error"
    assert document["instance"] == "req-42" and document["errors"] == []
    assert "instance" not in problem_for_internal_error(None)
    # Nothing but fixed text: the same document for every failure, whatever went wrong.
    assert problem_for_internal_error("req-42") == problem_for_internal_error("req-42")
    assert set(document) == {"type", "title", "status", "detail", "code", "errors", "instance"}


def test_every_documented_code_has_its_own_title() -> None:
    """docs/api.md's error table and the titles stay in step: a code added to one must be added to the other."""
    text = API_DOC.read_text("utf-8")
    table = text.split("## Error codes (stable)", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            first_cell = row.split("|")[1]
            documented.update(re.findall(r"`([a-z0-9-]+)`", first_cell))
    assert len(documented) > 30
    assert documented - set(TITLES) == set()
    assert {"duplicate-conflict", "revision-not-accepted", "receipt-signer-unexpected"} <= documented
