"""A statement as CSV for spreadsheets (Excel in Taiwan): UTF-8 with a byte-order mark, one header row whose
names are Traditional Chinese with the English name in parentheses, one row per entry, then a blank row and
four trailer rows of totals (label, amount).

Pure: a :class:`~gateway.statements.lines.Statement` in, bytes out. Written with the csv module (quoting whatever
needs it: a payee name with a comma or quotes reads back unchanged). Text cells that a spreadsheet would
take for a formula (starting with ``=``, ``+``, ``-`` or ``@``) get a leading apostrophe.
"""

from __future__ import annotations

import csv
import datetime
import io

from gateway.bank.iso_codes import describe_reason
from gateway.statements.lines import Statement, roc_date

BOM = "\ufeff"

HEADER = (
    "日期 (date)", "類別 (entry)", "傳票號碼 (voucher_id)", "版次 (revision)", "明細序號 (line)",
    "端對端識別碼 (end_to_end_id)", "受款人 (payee_name)", "銀行代號 (bank_code)", "分行代號 (branch_code)",
    "帳號 (account_number)", "金額 (amount)", "狀態 (state)", "退匯原因代碼 (reason_code)", "退匯原因 (reason)",
    "銀行參考號 (bank_reference)", "電文識別碼 (message_id)", "入帳日 (booked_on)", "付款日 (paid_on)",
)
TRAILER = ("期初累計付款 (opening)", "本期付款 (paid)", "本期退匯 (returned)", "期末累計付款 (closing)")

_FORMULA_START = ("=", "+", "-", "@")


def _text(value: str | None) -> str:
    if not value:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def statement_csv(statement: Statement, *, roc: bool = False) -> bytes:
    """The CSV bytes (BOM first); ``roc`` writes dates as 民國 dates (``115/11/27``), else ISO 8601."""

    def day(value: datetime.date | None) -> str:
        if value is None:
            return ""
        return roc_date(value) if roc else value.isoformat()

    out = io.StringIO(newline="")
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for entry in statement.entries:
        line = entry.line
        reason = describe_reason(line.reason_code, line.reason_text) or ""
        writer.writerow((
            day(entry.on), entry.kind.value, line.voucher_id, line.revision, line.line_number, line.end_to_end_id,
            _text(line.payee_name), line.payee_bank_code or "", line.payee_branch_code or "", line.payee_account or "",
            line.amount, line.state.value, line.reason_code or "", _text(reason), line.bank_reference or "",
            line.message_id, day(line.booked_on), day(line.paid_on)))
    writer.writerow(())
    for label, amount in zip(TRAILER, (statement.opening, statement.paid, statement.returned, statement.closing)):
        writer.writerow((label, amount))
    return out.getvalue().encode("utf-8")


def filename(statement: Statement, extension: str) -> str:
    """``statement-AGENCY-START-END.EXT`` (ASCII, safe in a Content-Disposition header)."""
    return f"statement-{statement.agency}-{statement.period.start:%Y%m%d}-{statement.period.end:%Y%m%d}.{extension}"
