"""The console's own reads: the lists the API has no route for (every agency's vouchers for a treasury
operator, payment lines by payee, today's bank messages, returned and unconfirmed lines), each ONE indexed
query with keyset paging, so a page costs the same at a million vouchers as at ten.

Every query here walks an index in its ORDER BY (migration v0010 adds the ones the API did not need; the
test tests/integration/test_console_queries.py asks SQLite's EXPLAIN QUERY PLAN that none scans a table).
Rows are read through the store's own readers (``_read``, ``_record``, ``_payment``, ``_message``), so times
and types come back exactly as the rest of the gateway sees them on both backends. Cursors are opaque
URL-safe text: the last row's sort key, checked on the way back in (a bad one is ``cursor-invalid``)."""

from __future__ import annotations

import base64
import binascii
import datetime
import json

from adapters.storage.bank import _MESSAGE_COLUMNS, _PAYMENT_COLUMNS
from gateway.errors import Refusal
from gateway.store import check_limit, parse_utc_text, utc_text


def encode(*key) -> str:
    raw = json.dumps([utc_text(k) if isinstance(k, datetime.datetime) else k for k in key], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode(cursor: str, kinds: str) -> tuple:
    """``kinds`` names each key part: ``t`` a time, ``s`` text, ``i`` an integer."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8"))
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError("wrong length")
        out = []
        for kind, part in zip(kinds, parts):
            if kind == "t":
                out.append(parse_utc_text(part))
            elif kind == "s" and isinstance(part, str):
                out.append(part)
            elif kind == "i" and isinstance(part, int) and not isinstance(part, bool):
                out.append(part)
            else:
                raise ValueError("wrong type")
        return tuple(out)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise Refusal("cursor-invalid", "the paging cursor is not one this console issued") from None


class ConsoleReads:
    def __init__(self, store) -> None:
        """``store`` is a SQL store (adapters/storage/sqlite.py or postgres.py)."""
        self.store = store
        self.postgres = store.dialect == "postgresql"

    def _row(self, kinds: str) -> str:
        """A row value of parameters for a keyset comparison (PostgreSQL needs the types spelled out)."""
        if not self.postgres:
            return "(" + ", ".join("?" for _ in kinds) + ")"
        cast = {"t": "timestamptz", "s": "text", "i": "integer"}
        return "(" + ", ".join(f"?::{cast[k]}" for k in kinds) + ")"

    def _key(self, kinds: str, values: tuple) -> list:
        return [self.store._time_param(v) if k == "t" else v for k, v in zip(kinds, values)]

    def _query(self, sql: str, params: list) -> list:
        return self.store._read(self.store._sql(sql), tuple(params))

    # --- vouchers -------------------------------------------------------------------------------------------

    def vouchers(self, *, agency: str | None, status: str | None, received_from: datetime.datetime | None,
                 received_to: datetime.datetime | None, after: str | None, limit: int):
        """A page of voucher revisions in (received_at, voucher_id, revision) order, of one agency (index
        intake_by_agency / intake_by_agency_status) or of all (intake_by_received / intake_by_status_received):
        the store's own paged list, which takes ``agency=None`` for the treasury."""
        return self.store.list_for_agency(agency, status=status, received_from=received_from,
                                          received_to=received_to, after=after, limit=limit)

    def payee_lines(self, *, agency: str | None, prefix: str, after: str | None, limit: int):
        """Payment lines whose payee name starts with ``prefix`` (lines sent to the bank carry the payee:
        migration v0008), in (payee_name, end_to_end_id) order on payments_by_agency_payee / payments_by_payee."""
        check_limit(limit)
        where, params = ["payee_name >= ?", "payee_name < ?"], [prefix, prefix + "\U0010ffff"]
        if agency is not None:
            where.insert(0, "agency = ?")
            params.insert(0, agency)
        if after is not None:
            where.append(f"(payee_name, end_to_end_id) > {self._row('ss')}")
            params += list(decode(after, "ss"))
        rows = self._query(f"SELECT {_PAYMENT_COLUMNS}, payee_name FROM payments WHERE {' AND '.join(where)} "
                           "ORDER BY payee_name, end_to_end_id LIMIT ?", [*params, limit + 1])
        lines = [(self.store._payment(row[:-1]), row[-1]) for row in rows[:limit]]
        more = len(rows) > limit
        return lines, (encode(lines[-1][1], lines[-1][0].end_to_end_id) if more else None)

    # --- the treasury ---------------------------------------------------------------------------------------

    def bank_messages(self, direction: str, start: datetime.datetime, end: datetime.datetime, *,
                      after: str | None, limit: int):
        """Messages of one direction created in [start, end), oldest first (bank_messages_by_time)."""
        check_limit(limit)
        where = ["direction = ?", "created_at >= ?", "created_at < ?"]
        params = [direction, self.store._time_param(start), self.store._time_param(end)]
        if after is not None:
            where.append(f"(created_at, message_id) > {self._row('ts')}")
            params += self._key("ts", decode(after, "ts"))
        rows = self._query(f"SELECT {_MESSAGE_COLUMNS} FROM bank_messages WHERE {' AND '.join(where)} "
                           "ORDER BY created_at, message_id LIMIT ?", [*params, limit + 1])
        messages = [self.store._message(row) for row in rows[:limit]]
        more = len(rows) > limit
        return messages, (encode(messages[-1].created_at, messages[-1].message_id) if more else None)

    def _lines(self, condition: str, order: str, after: str | None, limit: int):
        check_limit(limit)
        where, params = [condition], []
        if after is not None:
            where.append(f"({order}, end_to_end_id) > {self._row('ts')}")
            params += self._key("ts", decode(after, "ts"))
        rows = self._query(f"SELECT {_PAYMENT_COLUMNS}, payee_name FROM payments WHERE {' AND '.join(where)} "
                           f"ORDER BY {order}, end_to_end_id LIMIT ?", [*params, limit + 1])
        lines = [(self.store._payment(row[:-1]), row[-1]) for row in rows[:limit]]
        more = len(rows) > limit
        last = lines[-1][0] if lines else None
        return lines, (encode(getattr(last, order), last.end_to_end_id) if more else None)

    def returned_lines(self, *, after: str | None, limit: int):
        """Returned (退匯) lines, most recently changed last (payments_returned)."""
        return self._lines("state = 'returned'", "changed_at", after, limit)

    def unconfirmed_lines(self, *, after: str | None, limit: int):
        """Lines flagged with no final answer from the bank in time (payments_unconfirmed)."""
        return self._lines("unconfirmed_at IS NOT NULL AND state IN ('pending', 'accepted')", "unconfirmed_at",
                           after, limit)
