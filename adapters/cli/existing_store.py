"""Opening the store a ``vgw`` verb names, for verbs that read or act on an existing store.

Opening a SQLite URL creates the file, so a mistyped path would otherwise report an empty store ("no
notices", "the audit chain is intact") instead of an error. Every such verb refuses it the same way.
"""

from __future__ import annotations

from pathlib import Path

from adapters.command_line import CliError
from adapters.storage.factory import open_store, sqlite_path
from adapters.storage.migrations import SchemaTooNew
from gateway.store import StoreError


def open_existing_store(url: str):
    """The store at ``url``, which must exist; a CliError with one line saying why otherwise."""

    try:
        if url.lower().startswith("sqlite:") and not Path(sqlite_path(url)).is_file():
            raise CliError(f"no SQLite store at {sqlite_path(url)}")
        return open_store(url)
    except (ValueError, StoreError, SchemaTooNew) as exc:
        raise CliError(f"cannot open the store: {exc}") from None
