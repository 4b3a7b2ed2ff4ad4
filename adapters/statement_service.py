"""Statements (對帳單) over HTTPS, one blocking call per request (run in the thread pool, like intake):
name the calling agency from its TLS client certificate, read its lines and opening total from the store,
build the statement (gateway/statements.py) and render it as CSV, camt.053 or PDF (adapters/statement_pdf.py,
in the Traditional Chinese font of adapters/cjk_font.py, found on the first PDF asked for)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cryptography import x509

from gateway.camt053 import camt053_bytes
from gateway.statement_csv import filename, statement_csv
from gateway.statements import Statement, build_statement

from .clock import utc_now
from .http_api import Answer
from .query_params import StatementQuery

CSV_TYPE = "text/csv; charset=utf-8"
XML_TYPE = "application/xml"


class StatementService:
    def __init__(self, *, intake, store, clock: Callable[[], datetime] = utc_now,
                 pdf_font: Callable[[], str] | None = None) -> None:
        """``intake`` names the caller (:meth:`~adapters.intake_service.IntakeService.calling_agency`);
        ``store`` is a SQL store with ``statement_lines`` and ``paid_before`` (adapters/sql_bank.py);
        ``pdf_font`` names the registered font PDFs are written in (default: adapters/cjk_font.py's)."""
        self.intake = intake
        self.store = store
        self.clock = clock
        self.pdf_font = pdf_font

    def statement(self, query: StatementQuery, client_cert: x509.Certificate | None) -> Answer:
        now = self.clock()
        agency = self.intake.calling_agency(client_cert, now)
        body, content_type, name = self.render(self.build(agency, query, now), query)
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
            from .cjk_font import cjk_font_name
            from .statement_pdf import PDF_TYPE, statement_pdf

            font = (self.pdf_font or cjk_font_name)()
            return statement_pdf(statement, font, roc=query.roc_dates), PDF_TYPE, filename(statement, "pdf")
        return camt053_bytes(statement), XML_TYPE, filename(statement, "xml")
