"""Deposit notices on paper: print-ready PDF letters (A4, one page per payee), rendered with reportlab.

Each page is laid out for a window envelope (DL/C5 window, 90 × 45 mm, 20 mm from the left and 45 mm from
the top edge; the ISO 269 window the city's post room uses), so the sheet folds in three and the address
shows through: post code, address, and the payee's name with 君啟. An address may be 200 characters and a
name 100, so they are wrapped to the window's width (:func:`wrap`, which breaks Chinese text between any two
characters, where reportlab's ``simpleSplit`` breaks only at spaces) and set smaller, down to
``ADDRESS_FLOOR`` points, until they fit its height. Below the fold the notice states what
gateway/notices/content.py ``compose`` says, wrapped the same way. A character the font has no glyph for
prints as its code point (adapters/statements/pdf.py ``printable``), never as a blank. The same page is what
a fax spool receives (one page).

:func:`write_letters` is the daily batch (also ``vgw notices letters``): it claims the day's pending postal
notices, notes each one's message id (``FILE#pPAGE``) before the file is written, writes the file
atomically, then records them sent. A batch interrupted after its file was written is recognised when the
lease runs out: a claimed notice whose noted file exists is recorded sent, never printed twice.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import random
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.notices.content import (
    NOTICE_ACTOR,
    SENDER,
    AttemptResult,
    Channel,
    DepositNotice,
    NoticeText,
    Result,
    RetryPolicy,
    after_attempt,
    compose,
    outcome_detail,
)
from gateway.store import AuditEvent

_MM = 72 / 25.4
A4 = (210 * _MM, 297 * _MM)
WINDOW = (20 * _MM, 45 * _MM, 90 * _MM, 45 * _MM)  # left, top, width, height of the envelope window
RETURN_ADDRESS = f"{SENDER} 110204 臺北市信義區市府路1號"
WINDOW_INSET = 4 * _MM  # the address block's distance from the window's left and right edges
ADDRESS_SIZE, ADDRESS_FLOOR = 12, 6  # points: the address block's size, and the smallest it is set in
_TOKENS = re.compile(r"〔U\+[0-9A-F]{4,6}〕|[!-~]+|\s|.", re.DOTALL)  # a printable() code point, a Latin word, a space, a character


def wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """``text`` broken into lines each at most ``width`` points wide in ``font`` at ``size``: between any two
    Chinese characters, between words of Latin text (a word wider than a line between its characters), never
    inside a ``〔U+XXXX〕`` placeholder unless it alone is too wide. The spaces lines break at are dropped."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    lines: list[str] = []
    line = ""
    for token in _TOKENS.findall(text):
        if stringWidth(line + token, font, size) <= width:
            line += token
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = ""
        if token.isspace():
            continue
        for ch in token if stringWidth(token, font, size) > width else (token,):
            if line and stringWidth(line + ch, font, size) > width:
                lines.append(line)
                line = ""
            line += ch
    if line.strip():
        lines.append(line.rstrip())
    return lines


def address_block(lines: Sequence[str], font: str, *, width: float, height: float) -> tuple[float, list[str]]:
    """The window's lines (post code, address, name with 君啟) wrapped to ``width``, and the size they fit
    ``height`` at (leading 1.4 × the size): the largest from ``ADDRESS_SIZE`` down, else ``ADDRESS_FLOOR``
    (the text then runs below the window rather than being cut)."""
    size = ADDRESS_SIZE
    while True:
        wrapped = [part for line in lines if line for part in wrap(line, font, size, width)]
        if len(wrapped) * size * 1.4 <= height or size <= ADDRESS_FLOOR:
            return size, wrapped
        size -= 0.5


def render_letters(pages: Sequence[tuple[DepositNotice, NoticeText]], *, font: str) -> bytes:
    """One A4 page per notice, in order; ``font`` a registered reportlab font with CJK glyphs
    (adapters/statements/cjk_font.py ``cjk_font_name``)."""
    from reportlab.pdfgen.canvas import Canvas

    from adapters.statements.pdf import font_coverage, printable

    out = io.BytesIO()
    pdf = Canvas(out, pagesize=A4, pageCompression=1, invariant=1)
    pdf.setTitle("臺北市政府入戶通知")
    pdf.setAuthor(SENDER)
    width, height = A4
    covered = font_coverage(font)

    def shown(value: str) -> str:
        return printable(value, covered)

    for notice, text in pages:
        left, top, window_width, window_height = WINDOW
        pdf.setFont(font, 7)
        pdf.drawString(left, height - top + 4 * _MM, RETURN_ADDRESS)
        size, block = address_block(
            [notice.target.post_code or "", shown(notice.target.address), shown(f"{notice.payee_name} 君啟")], font,
            width=window_width - 2 * WINDOW_INSET, height=window_height - 6 * _MM)
        y = height - top - 3 * _MM - size
        pdf.setFont(font, size)
        for line in block:
            pdf.drawString(left + WINDOW_INSET, y, line)
            y -= size * 1.4
        y = height - 110 * _MM  # below the first fold
        pdf.setFont(font, 16)
        pdf.drawString(25 * _MM, y, "臺北市政府 入戶通知")
        y -= 12 * _MM
        pdf.setFont(font, 11)
        greeting = shown(f"{notice.payee_name} 您好：臺北市政府已將下列款項撥入您的帳戶，請查收。")
        for part in wrap(greeting, font, 11, width - 50 * _MM):
            pdf.drawString(25 * _MM, y, part)
            y -= 6 * _MM
        y -= 4 * _MM
        for label, value in text.lines:
            pdf.drawString(25 * _MM, y, f"{label}：")
            # a purpose or payee name may be long (140 characters): wrapped within the right margin
            for part in wrap(shown(value), font, 11, width - 75 * _MM) or [""]:
                pdf.drawString(55 * _MM, y, part)
                y -= 6 * _MM
            y -= 2 * _MM
        y -= 6 * _MM
        pdf.setFont(font, 9)
        pdf.drawString(25 * _MM, y, "本通知由市庫集中支付系統產生。如有疑問，請洽付款機關。")
        pdf.drawString(25 * _MM, y - 5 * _MM, f"{SENDER}　通知編號 {notice.end_to_end_id}")
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path`` all at once: a temporary file in the same folder, flushed to disk, renamed over
    it. A reader (the print room, a fax server watching the folder) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def batch_name(day: datetime.date, notices: Sequence[DepositNotice]) -> str:
    """``letters-YYYY-MM-DD-HASH.pdf``: the same letters give the same name, other letters another."""
    digest = hashlib.sha256("\n".join(sorted(n.end_to_end_id for n in notices)).encode()).hexdigest()[:12]
    return f"letters-{day.isoformat()}-{digest}.pdf"


def write_letters(store, day: datetime.date, out_dir: Path, *, now: datetime.datetime, font: str,
                  bank_name: Callable[[str], str | None] = lambda code: None,
                  policy: RetryPolicy = RetryPolicy(), limit: int = 5000) -> tuple[Path | None, int]:
    """The letters of the postal notices of lines paid on or before ``day`` still pending: (the file
    written or None, how many notices it holds, recovered ones included)."""
    claimed = store.claim_notices(now, lease=policy.lease, limit=limit, channels=(Channel.POST,), paid_until=day)
    recovered = [n for n in claimed if n.message_id and (out_dir / n.message_id.split("#")[0]).is_file()]
    fresh = [n for n in claimed if n not in recovered]
    path = None
    if fresh:
        name = batch_name(day, fresh)
        path = out_dir / name
        store.note_message_ids([(n, f"{name}#p{i}") for i, n in enumerate(fresh, 1)])
        texts = [(n, compose(n, bank_name=bank_name(n.bank_code))) for n in fresh]
        write_atomically(path, render_letters(texts, font=font))
    for index, notice in enumerate(fresh, 1):
        _record(store, notice, f"{path.name}#p{index}", now, policy)
    for notice in recovered:
        _record(store, notice, notice.message_id, now, policy)
    return path, len(claimed)


def _record(store, notice: DepositNotice, message_id: str, now: datetime.datetime, policy: RetryPolicy) -> None:
    outcome = after_attempt(notice.attempts, AttemptResult(Result.DELIVERED, "printed"), policy, at=now,
                            jitter=random.random())
    store.record_notice_outcome(notice, outcome, message_id=message_id, event=AuditEvent(
        now, NOTICE_ACTOR, "notice.sent", notice.subject, None, outcome_detail(notice, outcome, message_id=message_id)))
