"""Verbs that read an existing store refuse a mistyped SQLite path instead of creating an empty store there."""

import subprocess
import sys
from pathlib import Path

import pytest

VGW = str(Path(sys.executable).with_name("vgw"))


@pytest.mark.parametrize("verb", [["audit", "verify"], ["notices", "list"]])
def test_a_missing_sqlite_store_is_an_error_and_stays_missing(tmp_path, verb):
    missing = tmp_path / "typo.sqlite3"
    done = subprocess.run([VGW, *verb, "--store", f"sqlite:///{missing}"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert f"no SQLite store at {missing}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not missing.exists()
