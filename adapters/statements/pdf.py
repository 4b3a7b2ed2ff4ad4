"""A statement (對帳單) as a PDF for people: to read on screen, print, sign off and file.

The same :class:`~gateway.statements.lines.Statement` the CSV and camt.053 render (same entries, same totals),
laid out with reportlab's platypus on A4 landscape:

- page 1: the title 臺北市政府 付款對帳單, the agency code, the period (Taipei dates, both inclusive), the time
  it was made (Taipei time) and the statement id, then the totals (期初累計付款, 本期付款, 本期退匯,
  期末累計付款) and the number of entries of each kind;
- one table row per entry, its column header repeated at the top of every page: date, entry (付款, 退匯,
  未付退回, 處理中), voucher id, revision-line, payee, bank-branch, account, amount (whole NT$ with thousands
  separators, right-aligned), the line's state now, the return reason, the bank's reference, paid and
  booked dates; after the last row 以上空白 with the count;
- at the top of every later page the title, agency and period; at the foot of every page 第 N 頁 / 共 M 頁
  and the statement id;
- a character the font has no glyph for is printed as its code point (:func:`printable`).

The payee's account is printed in full, as in the CSV: the statement goes only to the agency that made the
payments (over its mTLS identity), and an accountant checking a return for AC01 (wrong account) must see
the digits the bank was given. Amounts of returns are positive, like the CSV; the entry column says 退匯.

Why this lives in adapters/ and not beside gateway/statements/csv_export.py in the core: reportlab is a rendering library
that reads fonts and settings files; the renderer itself is a pure function (a statement and the name of
a font registered by adapters/statements/cjk_font.py in, bytes out, written to memory only), and deterministic: the
same statement gives the same bytes (reportlab's invariant mode; the PDF's creation date is the
statement's ``created_at``).

Speed (an agency-year of 10,000 lines is ~250 pages): the rows go to the page as one platypus Table per
page, cut by :class:`_EntryRows` from the room the frame reports, so the work is linear in the rows (a
single LongTable re-styles every remaining row at each page split); cells are plain strings, broken into
lines by hand where too wide, never Paragraphs (no markup parsed per cell). BENCHMARKS.md, `vgw bench statement`.
"""

from __future__ import annotations

import bisect
import datetime
import io
from collections import Counter
from collections.abc import Callable, Container
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.textsplit import wordSplit
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase.pdfmetrics import getFont, stringWidth
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import BaseDocTemplate, Flowable, Frame, PageTemplate, Paragraph, Spacer, Table, TableStyle

from gateway.bank.iso_codes import describe_reason
from gateway.bank.payments import LineState
from gateway.business_time import TAIPEI
from gateway.statements.lines import EntryKind, Statement, roc_date

PDF_TYPE = "application/pdf"

TITLE = "臺北市政府 付款對帳單"
KIND_LABEL = {EntryKind.PAYMENT: "付款", EntryKind.RETURN: "退匯", EntryKind.REFUSED: "未付退回",
              EntryKind.OPEN: "處理中"}
STATE_LABEL = {LineState.PAID: "已付款", LineState.RETURNED: "已退匯", LineState.PENDING: "待銀行回覆",
               LineState.ACCEPTED: "銀行已受理"}
TOTAL_LABELS = ("期初累計付款", "本期付款", "本期退匯", "期末累計付款")

PAGE = landscape(A4)
MARGIN = 10 * mm
SIZE = 7  # points, the table's text
LEADING = 8.4
PAD = 1.5

# (header, width in points); the widths add up to the frame's width on A4 landscape (about 785 pt).
COLUMNS = (
    ("日期\nDate", 40), ("類別\nEntry", 33), ("傳票號碼\nVoucher", 92), ("版次-序號\nRev-Line", 36),
    ("受款人\nPayee", 92), ("銀行-分行\nBank", 36), ("帳號\nAccount", 62), ("金額 (NT$)\nAmount", 58),
    ("狀態\nState", 39), ("退匯原因\nReturn reason", 125), ("銀行參考號\nBank reference", 92),
    ("付款日\nPaid on", 40), ("入帳日\nBooked on", 40),
)
AMOUNT_COLUMN = 7
WRAPPING = (4, 9, 10)  # payee, reason, bank reference: these may be wider than their column


def amount_text(amount: int) -> str:
    """Whole NT$ with thousands separators: ``1,234,567``."""
    return f"{amount:,}"


def statement_pdf(statement: Statement, font: str, *, roc: bool = False) -> bytes:
    """The PDF bytes of ``statement`` in ``font`` (a name registered with reportlab, e.g.
    :func:`adapters.statements.cjk_font.cjk_font_name`); ``roc`` writes dates as 民國 dates (``115/11/27``)."""

    def day(value: datetime.date | None) -> str:
        if value is None:
            return ""
        return roc_date(value) if roc else value.isoformat()

    styles = _Styles(font)
    out = io.BytesIO()
    made = statement.created_at.astimezone(TAIPEI)
    doc = BaseDocTemplate(
        out, pagesize=PAGE, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN + 6 * mm,
        bottomMargin=MARGIN + 6 * mm, invariant=True, title=f"{TITLE} {statement.statement_id}",
        author="臺北市政府 voucher-gateway", subject=f"{statement.agency} {day(statement.period.start)} – "
        f"{day(statement.period.end)}", creator="voucher-gateway")
    frame = Frame(doc.leftMargin, doc.bottomMargin, doc.width, doc.height, id="body", leftPadding=0,
                  rightPadding=0, topPadding=0, bottomPadding=0)
    running = (f"{TITLE}　機關代號 {statement.agency}　期間 {day(statement.period.start)} 至 "
               f"{day(statement.period.end)}")
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame], onPage=_running_header(font, running))])
    story = [
        Paragraph(escape(TITLE), styles.title),
        Paragraph(escape(f"機關代號 Agency {statement.agency}　　對帳期間 Period {day(statement.period.start)} 至 "
                         f"{day(statement.period.end)}（臺北日期，含首尾日）"), styles.heading),
        Paragraph(escape(f"產製時間 Generated {day(made.date())} {made:%H:%M:%S}（臺北時間）　　"
                         f"對帳單編號 Statement {statement.statement_id}"), styles.heading),
        Spacer(0, 3 * mm),
        _totals(statement, font),
        Spacer(0, 4 * mm),
        _entries(statement, font, day),
        Spacer(0, 2 * mm),
        Paragraph(escape(f"本期明細共 {len(statement.entries):,} 筆，以上空白。"), styles.note),
    ]
    stamp = made.strftime("D:%Y%m%d%H%M%S+08'00'")
    doc.build(story, canvasmaker=_numbered_canvas(font, statement.statement_id, stamp))
    return out.getvalue()


class _Styles:
    def __init__(self, font: str) -> None:
        self.title = ParagraphStyle("title", fontName=font, fontSize=16, leading=20, alignment=TA_CENTER,
                                    spaceAfter=3 * mm)
        self.heading = ParagraphStyle("heading", fontName=font, fontSize=9, leading=12, alignment=TA_CENTER)
        self.note = ParagraphStyle("note", fontName=font, fontSize=8, leading=10)
        self.font = font


def _totals(statement: Statement, font: str) -> Table:
    counts = Counter(entry.kind for entry in statement.entries)
    amounts = (statement.opening, statement.paid, statement.returned, statement.closing)
    rows = [
        [*TOTAL_LABELS, "明細筆數 Entries"],
        [*(amount_text(a) for a in amounts),
         "　".join(f"{KIND_LABEL[kind]} {counts[kind]:,}" for kind in KIND_LABEL)],
    ]
    table = Table(rows, colWidths=(100, 100, 100, 100, 220), hAlign="LEFT")
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), font, 9, 11),
        ("ALIGN", (0, 1), (3, 1), "RIGHT"),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef4")),
        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
    ]))
    return table


def _entries(statement: Statement, font: str, day: Callable[[datetime.date | None], str]) -> Flowable:
    if not statement.entries:
        return Paragraph("本期無明細 (no entries in this period)",
                         ParagraphStyle("empty", fontName=font, fontSize=9, leading=12))
    widths = [width for _, width in COLUMNS]
    covered = font_coverage(font)
    rows = []
    for entry in statement.entries:
        line = entry.line
        reason = describe_reason(line.reason_code, line.reason_text) or ""
        cells = [day(entry.on), KIND_LABEL[entry.kind], line.voucher_id, f"{line.revision}-{line.line_number}",
                 line.payee_name or "", "-".join(p for p in (line.payee_bank_code, line.payee_branch_code) if p),
                 line.payee_account or "", amount_text(line.amount), STATE_LABEL[line.state], reason,
                 line.bank_reference or "", day(line.paid_on), day(line.booked_on)]
        for column in WRAPPING:
            cells[column] = _fitted(printable(cells[column], covered), widths[column], font)
        rows.append(cells)
    return _EntryRows(rows, widths, font)


class _EntryRows(Flowable):
    """The entries' table, cut into one platypus Table per page as the frame asks (:meth:`split` is told the
    room left), each with the column header on top. Why not one LongTable: splitting a table re-applies
    its styles to every remaining row, so 10,000 rows cost O(rows x pages); here each page costs its rows.
    Row heights are known beforehand (lines x leading + padding) and given to each Table."""

    def __init__(self, rows: list[list[str]], widths: list[float], font: str, start: int = 0,
                 tops: list[float] | None = None) -> None:
        super().__init__()
        self.rows, self.widths, self.font, self.start = rows, widths, font, start
        if tops is None:  # tops[i]: the height of rows[:i]
            tops = [0.0]
            for row in rows:
                tops.append(tops[-1] + _row_height(row))
        self.tops = tops
        self.header = [header for header, _ in COLUMNS]
        self.header_height = _row_height(self.header)

    def _height(self, end: int) -> float:
        return self.header_height + self.tops[end] - self.tops[self.start]

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        self.width, self.height = sum(self.widths), self._height(len(self.rows))
        return self.width, self.height

    def split(self, available_width: float, available_height: float) -> list[Flowable]:
        # the last row end such that header + rows[start:end] fits: bisect over the cumulative heights
        end = bisect.bisect_right(self.tops, self.tops[self.start] + available_height - self.header_height) - 1
        if end <= self.start:
            return []  # not even one row fits: the frame moves on to the next page
        if end >= len(self.rows):
            return [self._table(len(self.rows))]
        return [self._table(end), _EntryRows(self.rows, self.widths, self.font, end, self.tops)]

    def draw(self) -> None:
        table = self._table(len(self.rows))
        table.wrapOn(self.canv, self.width, self.height)
        table.drawOn(self.canv, 0, 0)

    def _table(self, end: int) -> Table:
        rows = self.rows[self.start:end]
        table = Table([self.header, *rows], colWidths=self.widths, hAlign="LEFT",
                      rowHeights=[self.header_height, *(_row_height(row) for row in rows)])
        table.setStyle(TableStyle([
            ("FONT", (0, 0), (-1, -1), self.font, SIZE, LEADING),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("TOPPADDING", (0, 0), (-1, -1), PAD), ("BOTTOMPADDING", (0, 0), (-1, -1), PAD),
            ("LEFTPADDING", (0, 0), (-1, -1), 2), ("RIGHTPADDING", (0, 0), (-1, -1), 2),
            ("ALIGN", (AMOUNT_COLUMN, 0), (AMOUNT_COLUMN, -1), "RIGHT"),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef4")),
            ("LINEBELOW", (0, 0), (-1, 0), 0.75, colors.black),
            ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
        ]))
        return table


def _row_height(row: list[str]) -> float:
    return max(cell.count("\n") + 1 for cell in row) * LEADING + 2 * PAD


def printable(text: str, covered: Container[int] | None) -> str:
    """``text`` with each character the font has no glyph for written as its code point, ``〔U+5803〕``:
    a rare character in a payee's name (堃 and 喆 are common in names, others are not in every font) would
    otherwise print as a blank the reader cannot tell from a space. The CSV and camt.053 carry the name
    exactly. ``covered`` None: the font's coverage is unknown (the CID fallback), text as it is."""
    if covered is None or all(ord(ch) in covered for ch in text):
        return text
    return "".join(ch if ord(ch) in covered else f"〔U+{ord(ch):04X}〕" for ch in text)


def font_coverage(font: str) -> Container[int] | None:
    """The code points ``font`` has glyphs for: a TrueType font's cmap; None for a CID font (not known)."""
    face = getattr(getFont(font), "face", None)
    return getattr(face, "charToGlyph", None)


def _fitted(text: str, width: float, font: str) -> str:
    """The text as it fits its column: on one line when it does (the common case), else broken into lines
    (joined by newlines, which a table cell draws one under the other): between words first, then, for a
    word still too wide (a Chinese name has no spaces), between characters."""
    room = width - 4  # the cell's padding
    if not text or stringWidth(text, font, SIZE) <= room:
        return text
    lines = []
    for piece in simpleSplit(text, font, SIZE, room):
        if stringWidth(piece, font, SIZE) <= room:
            lines.append(piece)
        else:
            lines.extend(part for _, part in wordSplit(piece, room, font, SIZE))
    return "\n".join(lines)


def _running_header(font: str, text: str):
    def draw(canvas: Canvas, doc: BaseDocTemplate) -> None:
        if doc.page == 1:  # the title says it all there
            return
        canvas.saveState()
        canvas.setFont(font, 7.5)
        canvas.drawString(MARGIN, PAGE[1] - MARGIN - 2 * mm, text)
        canvas.restoreState()

    return draw


def _numbered_canvas(font: str, statement_id: str, stamp: str):
    """A canvas that holds its pages until the end so each can say 第 N 頁 / 共 M 頁 (the total is known only
    once the last page is laid out), and dates the PDF with the statement's creation time."""

    class NumberedCanvas(Canvas):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict] = []
            self.setDateFormatter(lambda *_: stamp)

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for number, page in enumerate(self._pages, 1):
                self.__dict__.update(page)
                self.setFont(font, 7.5)
                self.drawCentredString(PAGE[0] / 2, MARGIN, f"第 {number} 頁 / 共 {total} 頁")
                self.drawRightString(PAGE[0] - MARGIN, MARGIN, statement_id)
                super().showPage()
            super().save()

    return NumberedCanvas
