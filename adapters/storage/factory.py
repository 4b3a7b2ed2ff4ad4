"""Opens the store a URL names: ``sqlite:///PATH`` (embedded default) or ``postgresql://…`` (shared).

The only place that chooses a backend, so configuration, ``vgw serve`` and ``vgw audit verify`` accept the
same URLs. Opening applies pending schema migrations (see ``adapters/storage/migrations``).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from gateway.store import VoucherStore

STORE_URL_HELP = "store URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE"
"""How a verb's ``--store`` option is explained: the URLs :func:`open_store` accepts."""


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:///`` URL names: ``sqlite:///var/vgw.db`` is relative, ``sqlite:////var/vgw.db``
    absolute (SQLAlchemy's convention, which operators know)."""
    parts = urlsplit(url)
    if parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"a SQLite store URL is sqlite:///PATH, not {url!r}")
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path:
        raise ValueError("the SQLite store URL names no file: use sqlite:///PATH")
    return path


def open_store(url: str) -> VoucherStore:
    """The store at ``url``; ValueError for a scheme no adapter serves."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from adapters.storage.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        from adapters.storage.postgres import PostgresStore

        return PostgresStore(url)
    # The URL itself is not repeated: it may carry a password.
    raise ValueError(f"unknown store URL scheme {scheme or '(none)'!r}: "
                     "use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE")
