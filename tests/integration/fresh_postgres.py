"""A fresh PostgreSQL database on the test server (``VGW_TEST_PG_DSN``, set by ``scripts/with-test-services``),
dropped afterwards, for tests that hand a store URL to processes of their own."""

from __future__ import annotations

import contextlib
import os
import uuid

import psycopg
import pytest
from psycopg import sql


@contextlib.contextmanager
def fresh_database(prefix: str):
    """Yields the URL of a new, empty database named ``prefix_<random>``."""
    dsn = os.environ.get("VGW_TEST_PG_DSN")
    if not dsn:
        pytest.fail("VGW_TEST_PG_DSN is not set: run under scripts/with-test-services (make test)", pytrace=False)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
