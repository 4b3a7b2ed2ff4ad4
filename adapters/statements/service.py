"""Statements (對帳單) over HTTPS, one blocking call per request (run in the thread pool, like intake):
name the calling agency from its TLS client certificate, read its lines and opening total from the store,
build the statement (gateway/statements/lines.py) and render it as CSV, camt.053 or PDF (adapters/statements/pdf.py,
in the Traditional Chinese font of adapters/statements/cjk_font.py, found on the first PDF asked for).

A PDF costs CPU in the thread pool every request of the gateway shares (an agency-year of 10,000 lines
takes seconds), so a burst of PDFs could hold every thread and stall intake for everyone. Hence at most
:data:`PDF_RENDERS` PDFs render at once per process; a request that waits more than :data:`PDF_WAIT`
seconds for its turn is ``statement-busy`` (503 + ``Retry-After``), and a PDF of more than
:data:`PDF_MAX_ENTRIES` entries is refused ``statement-too-large`` (413): CSV and camt.053 have no cap."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from cryptography import x509

from adapters.clock import utc_now
from adapters.http.query_params import StatementQuery
from adapters.http.site import Answer
from gateway.errors import Refusal
from gateway.statements.camt053 import camt053_bytes
from gateway.statements.csv_export import filename, statement_csv
from gateway.statements.lines import Statement, build_statement

CSV_TYPE = "text/csv; charset=utf-8"
XML_TYPE = "application/xml"
PDF_RENDERS = 1
"""PDFs rendered at once by one process (the others' requests keep the rest of the thread pool)."""
PDF_WAIT = 2.0
"""Seconds a PDF request waits for its turn before it is answered ``statement-busy``."""
PDF_RETRY_AFTER = 10
PDF_MAX_ENTRIES = 20_000
"""Entries a PDF may print (about 500 pages, some 15 s of CPU); longer statements are CSV or shorter periods."""
_PDF_SLOTS = threading.BoundedSemaphore(PDF_RENDERS)


class StatementService:
    def __init__(self, *, intake, store, clock: Callable[[], datetime] = utc_now,
                 pdf_font: Callable[[], str] | None = None, pdf_slots: threading.Semaphore = _PDF_SLOTS,
                 pdf_max_entries: int = PDF_MAX_ENTRIES) -> None:
        """``intake`` names the caller (:meth:`~adapters.services.intake.IntakeService.calling_agency`);
        ``store`` is a SQL store with ``statement_lines`` and ``paid_before`` (adapters/storage/bank.py);
        ``pdf_font`` names the registered font PDFs are written in (default: adapters/statements/cjk_font.py's);
        ``pdf_slots`` are the process's PDF turns (see module)."""
        self.intake = intake
        self.store = store
        self.clock = clock
        self.pdf_font = pdf_font
        self.pdf_slots = pdf_slots
        self.pdf_max_entries = pdf_max_entries

    def statement(self, query: StatementQuery, client_cert: x509.Certificate | None) -> Answer:
        now = self.clock()
        return self.answer(self.intake.calling_agency(client_cert, now), query, now)

    def answer(self, agency: str, query: StatementQuery, now: datetime) -> Answer:
        """``agency``'s statement in ``query.format``, or for a PDF the refusal when too long or too busy."""
        statement = self.build(agency, query, now)
        if query.format != "pdf":
            return self._attachment(self.render(statement, query))
        if len(statement.entries) > self.pdf_max_entries:
            raise Refusal("statement-too-large", f"{len(statement.entries)} entries are more than a PDF prints "
                          f"({self.pdf_max_entries}); ask for CSV or camt.053, or a shorter period")
        if not self.pdf_slots.acquire(timeout=PDF_WAIT):
            busy = Answer.problem(Refusal("statement-busy", "other PDF statements are being rendered; retry "
                                          f"after {PDF_RETRY_AFTER} s, or ask for CSV"))
            return Answer(busy.status, busy.content_type, busy.body, {"Retry-After": str(PDF_RETRY_AFTER)},
                          outcome=busy.outcome)
        try:
            return self._attachment(self.render(statement, query))
        finally:
            self.pdf_slots.release()

    @staticmethod
    def _attachment(rendered: tuple[bytes, str, str]) -> Answer:
        body, content_type, name = rendered
        return Answer(200, content_type, body, {"Content-Disposition": f'attachment; filename="{name}"'},
                      outcome="ok")

    def build(self, agency: str, query: StatementQuery, now: datetime) -> Statement:
        """``agency``'s statement of ``query.period`` from the store, made at ``now``."""
        period = query.period
        lines = self.store.statement_lines(agency, period.start, period.end)
        return build_statement(agency, period, lines, self.store.paid_before(agency, period.start), now)

    def render(self, statement: Statement, query: StatementQuery) -> tuple[bytes, str, str]:
        """(body, content type, attachment file name) of ``statement`` in ``query.format``."""
        if query.format == "csv":
            return statement_csv(statement, roc=query.roc_dates), CSV_TYPE, filename(statement, "csv")
        if query.format == "pdf":
            # imported on the first PDF: reportlab takes about half a second to import, which every
            # gateway worker would otherwise pay at start-up for a format most calls never ask for
            from adapters.statements.cjk_font import cjk_font_name
            from adapters.statements.pdf import PDF_TYPE, statement_pdf

            font = (self.pdf_font or cjk_font_name)()
            return statement_pdf(statement, font, roc=query.roc_dates), PDF_TYPE, filename(statement, "pdf")
        return camt053_bytes(statement), XML_TYPE, filename(statement, "xml")
