"""The PDF statement (adapters/statements/pdf.py) read back with pypdf: the Chinese title, payees, amounts and
totals are there as text, the CJK font is embedded, every page repeats the column header and says
第 N 頁 / 共 M 頁, and long statements grow pages, not errors."""

from __future__ import annotations

import datetime
import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from adapters.statements.cjk_font import FALLBACK_CID_FONT, find_and_register
from adapters.statements.pdf import TITLE, amount_text, font_coverage, printable, statement_pdf
from gateway.bank.payments import LineState
from gateway.statements.lines import Period, StatementLine, build_statement

D = datetime.date
AT = datetime.datetime(2026, 11, 27, 3, 0, tzinfo=datetime.timezone.utc)
NOV = Period(D(2026, 11, 1), D(2026, 11, 30))


@pytest.fixture(scope="module")
def font():
    found = find_and_register(environ={})
    assert found.embedded, "fonts-arphic-uming is missing (scripts/with-test-services installs it)"
    return found.name


def line(n: int, state: LineState = LineState.PAID, *, amount: int = 1000, name: str = "王小明",
         day: datetime.date = D(2026, 11, 10), reason: str | None = None) -> StatementLine:
    paid_on = day if state is LineState.PAID or (state is LineState.RETURNED and not reason) else None
    return StatementLine(f"379000001A-115-{n:010d}", 1, n % 9 + 1, f"379000001A115{n:010d}R001L0001", name, "012",
                         "2102", "00123456789012", amount, state, reason, "account closed" if reason else None,
                         f"FB{n:08d}", "MSG-1", paid_on, paid_on, day)


def pages(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def squeezed(text: str) -> str:
    """Text without white space: a wrapped cell comes back in pieces."""
    return re.sub(r"\s+", "", text)


def test_the_title_payees_amounts_and_totals_are_in_the_pdf(font):
    lines = [line(1, amount=1_234_567, name="臺北市立大安國民小學"),
             line(2, LineState.RETURNED, amount=30_000, name="陳美玲", reason="AC04"),
             line(3, LineState.PENDING, amount=9, name="Acme & <Sons>")]
    statement = build_statement("379000001A", NOV, lines, 5_000_000, AT)
    [text] = pages(statement_pdf(statement, font))
    assert TITLE in text and "379000001A" in text and "2026-11-01" in text and "2026-11-30" in text
    assert "2026-11-27 11:00:00" in text  # made at, Taipei time
    assert "臺北市立大安國民小學" in text and "陳美玲" in text and "Acme & <Sons>" in text
    assert "1,234,567" in text and "30,000" in text and "00123456789012" in text  # the account in full, as the CSV
    assert "AC04" in text and "FB00000001" in text and "已退匯" in text and "待銀行回覆" in text
    for total in (statement.opening, statement.paid, statement.returned, statement.closing):
        assert amount_text(total) in text
    assert (statement.paid, statement.closing) == (1_234_567, 6_234_567)
    assert "第 1 頁 / 共 1 頁" in text and "以上空白" in text


def test_the_font_is_embedded(font):
    pdf = statement_pdf(build_statement("379000001A", NOV, [line(1)], 0, AT), font)
    descriptors = [f.get_object()["/FontDescriptor"].get_object()
                   for page in PdfReader(io.BytesIO(pdf)).pages
                   for f in page["/Resources"]["/Font"].values() if "/FontDescriptor" in f.get_object()]
    assert descriptors and all("/FontFile2" in d for d in descriptors)
    assert any("UMingTW" in str(d["/FontName"]) for d in descriptors)


def test_without_the_truetype_font_the_cid_fallback_still_makes_a_pdf():
    assert find_and_register(environ={}, candidates=[]).name == FALLBACK_CID_FONT
    pdf = statement_pdf(build_statement("379000001A", NOV, [line(1, amount=4321)], 0, AT), FALLBACK_CID_FONT)
    reader = PdfReader(io.BytesIO(pdf))
    fonts = [f.get_object() for f in reader.pages[0]["/Resources"]["/Font"].values()]
    assert any(f.get("/BaseFont") == "/" + FALLBACK_CID_FONT for f in fonts)
    assert "4,321" in reader.pages[0].extract_text()


def test_long_statements_take_more_pages_each_with_the_header_and_its_number(font):
    def count(n: int) -> list[str]:
        lines = [line(i, amount=i + 1, day=D(2026, 11, 1 + i % 30)) for i in range(n)]
        return pages(statement_pdf(build_statement("379000001A", NOV, lines, 0, AT), font))

    short, long = count(5), count(300)
    assert len(short) == 1 and len(long) > 3
    for number, text in enumerate(long, 1):
        assert "傳票號碼" in text and "受款人" in text
        assert f"第 {number} 頁 / 共 {len(long)} 頁" in text
    every = "".join(long)
    assert all(f"379000001A-115-{i:010d}" in every for i in range(300))  # no row lost between pages
    assert every.count("379000001A-115-") == 300  # nor printed twice


def test_the_same_statement_gives_the_same_bytes_and_roc_dates_on_request(font):
    statement = build_statement("379000001A", NOV, [line(1), line(2, day=D(2026, 11, 27))], 0, AT)
    assert statement_pdf(statement, font) == statement_pdf(statement, font)
    [text] = pages(statement_pdf(statement, font, roc=True))
    assert "115/11/27" in text and "2026-11-27" not in text.replace("2026-11-27 11:00:00", "")


def test_an_empty_period_says_so(font):
    [text] = pages(statement_pdf(build_statement("379000001A", NOV, [], 777, AT), font))
    assert "本期無明細" in text and text.count("777") >= 2  # opening and closing


@settings(max_examples=15, deadline=None)
@given(st.text(st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                         st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)), min_size=1, max_size=100)
       .map(str.strip).filter(bool))
def test_any_payee_name_up_to_the_schemas_100_characters_renders_and_reads_back(font, name):
    text = pages(statement_pdf(build_statement("379000001A", NOV, [line(1, name=name)], 0, AT), font))
    assert len(text) == 1 and squeezed(printable(name, font_coverage(font))) in squeezed(text[0])


def test_a_character_the_font_lacks_is_printed_as_its_code_point_not_as_a_blank(font):
    assert ord("蜝") not in font_coverage(font) and ord("堃") in font_coverage(font)  # 蜝 (U+871D) is not in AR PL UMing
    [text] = pages(statement_pdf(build_statement("379000001A", NOV, [line(1, name="林蜝堃")], 0, AT), font))
    assert "林〔U+871D〕堃" in squeezed(text)
