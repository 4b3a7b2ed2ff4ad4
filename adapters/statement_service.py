"""Statements (對帳單) over HTTPS, one blocking call per request (run in the thread pool, like intake):
name the calling agency from its TLS client certificate, read its lines and opening total from the store,
build the statement (gateway/statements.py) and render it as CSV or camt.053."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cryptography import x509

from gateway.camt053 import camt053_bytes
from gateway.statement_csv import filename, statement_csv
from gateway.statements import build_statement

from .clock import utc_now
from .http_api import Answer
from .query_params import StatementQuery

CSV_TYPE = "text/csv; charset=utf-8"
XML_TYPE = "application/xml"


class StatementService:
    def __init__(self, *, intake, store, clock: Callable[[], datetime] = utc_now) -> None:
        """``intake`` names the caller (:meth:`~adapters.intake_service.IntakeService.calling_agency`);
        ``store`` is a SQL store with ``statement_lines`` and ``paid_before`` (adapters/sql_bank.py)."""
        self.intake = intake
        self.store = store
        self.clock = clock

    def statement(self, query: StatementQuery, client_cert: x509.Certificate | None) -> Answer:
        now = self.clock()
        agency = self.intake.calling_agency(client_cert, now)
        period = query.period
        lines = self.store.statement_lines(agency, period.start, period.end)
        statement = build_statement(agency, period, lines, self.store.paid_before(agency, period.start), now)
        if query.format == "csv":
            body, content_type, name = statement_csv(statement, roc=query.roc_dates), CSV_TYPE, filename(statement, "csv")
        else:
            body, content_type, name = camt053_bytes(statement), XML_TYPE, filename(statement, "xml")
        return Answer(200, content_type, body, {"Content-Disposition": f'attachment; filename="{name}"'},
                      outcome="ok")
