"""The console's pure parts: every label in both languages, escaping of any text put on a page, CSRF tokens
bound to one certificate, the cross-site check, and the preparation form's problems placed on their fields."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st

from adapters.console import html
from adapters.console.identity import CsrfTokens, Viewer, cross_site
from adapters.console.messages import LANGUAGES, keys, labels
from adapters.console.voucher_form import build_voucher
from gateway.vouchers.bank_directory import BankDirectory
from simulators.voucher_factory import VoucherFactory

TODAY = datetime.date(2026, 11, 27)


def test_every_label_exists_and_differs_by_language_where_it_should():
    tables = [labels(language) for language in LANGUAGES]
    assert all(set(table) == keys() and all(table.values()) for table in tables)
    assert labels("zh-TW")["nav_search"] == "憑單查詢" and labels("en")["nav_search"] == "Voucher search"
    assert labels("klingon") == labels("zh-TW")


@given(st.text())
def test_no_text_becomes_markup_on_a_page(text):
    cell = str(html.table([text], [[text, html.link("/console/x", text, q=text)]]))
    page = html.page(text, html.Markup("<p>{}</p>").format(text), t=labels("en"), viewer=None, lang="en",
                     path="/console/").decode()
    for out in (cell, page):
        assert "<script" not in out.replace("&lt;script", "")
    if "<" in text:
        assert "&lt;" in cell


def test_a_csrf_token_is_valid_for_its_certificate_only():
    tokens = CsrfTokens(b"k" * 32)
    alice, bob = Viewer("379000001A", "CN=a", "aa" * 32), Viewer("379000002A", "CN=b", "bb" * 32)
    assert tokens.valid(alice, tokens.token(alice))
    assert not tokens.valid(alice, tokens.token(bob)) and not tokens.valid(alice, None)
    assert not tokens.valid(alice, "") and not CsrfTokens(b"x" * 32).valid(alice, tokens.token(alice))


def test_cross_site_posts_are_recognised_by_origin_or_fetch_metadata():
    assert not cross_site(None, None, "gw:8443")  # a non-browser client: the token decides
    assert not cross_site("https://gw:8443", "same-origin", "gw:8443")
    assert cross_site("https://evil.example", None, "gw:8443")
    assert cross_site(None, "cross-site", "gw:8443") and cross_site(None, "same-site", "gw:8443")
    assert cross_site("null", None, "gw:8443")


def form_of(line) -> dict:
    return {"voucher_number": "F1", "fiscal_year": "115", "document_type": "payment",
            "payment_method": "CreditTransfer", "urgency": "urgent", "budget_subject": "1010101010",
            "object_class": "operations", "purpose": "文具", "prepared_on": TODAY.isoformat(),
            "line3_payee_name": line.payee_name, "line3_payee_id_type": line.payee_id_type.value,
            "line3_payee_id": line.payee_id, "line3_bank_code": line.bank_code, "line3_branch_code": line.branch_code,
            "line3_account_number": line.account_number, "line3_amount": "1,000"}


def test_the_form_builds_a_voucher_from_any_filled_row_and_places_problems_on_fields():
    banks = BankDirectory.shipped()
    line = VoucherFactory(banks, seed=3).voucher("379000001A", today=TODAY).lines[0]
    good = build_voucher(form_of(line), agency="379000001A", today=TODAY, banks=banks)
    assert good.errors == {} and good.filename == "379000001A-115-F1-r1.xml" and b"<Amount>1000</Amount>" in good.xml
    bad = build_voucher({**form_of(line), "line3_payee_id": "A000000000", "budget_subject": "12",
                         "prepared_on": "2099-01-01", "urgency": "someday"},
                        agency="379000001A", today=TODAY, banks=banks)
    assert bad.xml is None and set(bad.errors) == {"urgency"}  # choices first: nothing is built from a wrong one
    bad = build_voucher({**form_of(line), "line3_payee_id": "A000000000", "budget_subject": "12"},
                        agency="379000001A", today=TODAY, banks=banks)
    assert bad.xml is None and "budget_subject" in bad.errors  # the schema's complaint, on its field
    bad = build_voucher({**form_of(line), "line3_payee_id": "A000000000", "prepared_on": "2099-01-01"},
                        agency="379000001A", today=TODAY, banks=banks)
    assert set(bad.errors) == {"line3_payee_id", "prepared_on"}
    empty = build_voucher({k: v for k, v in form_of(line).items() if not k.startswith("line")},
                          agency="379000001A", today=TODAY, banks=banks)
    assert empty.xml is None and "line1_payee_name" in empty.errors
