"""SoftHSM2 tokens for the tests: a token store of this test session's own (never the system one), its config
named by SOFTHSM2_CONF for this process and every process it starts.

SoftHSM2 reads its token list when a process first loads it (C_Initialize) and does not see tokens made
afterwards, so the tokens a session needs are made up front, by label, before any test loads the module.
Recipe: ../shared/RECIPES.md §6 (softhsm2-util --init-token; python-pkcs11)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
VGW = str(Path(sys.executable).parent / "vgw")
PIN, SO_PIN = "123456", "12345678"
LABELS = ("preparer-card", "reviewer-card", "deputy-card", "accountant-card", "encryption-card", "spare-card",
          "approvals-reviewer", "approvals-accountant", "approvals-head", "approvals-releaser",
          "browser-reviewer", "browser-accountant", "browser-head", "browser-releaser", "approvals-preparer",
          "treasury-card", "locked-card")
"""Every token a test session makes (one per person a test signs as, one holding only an encryption key)."""


class SoftHsm:
    def __init__(self, base: Path) -> None:
        if not Path(MODULE).exists() or not shutil.which("softhsm2-util"):
            raise RuntimeError("SoftHSM2 is not installed (Debian softhsm2): run under make test")
        self.base = base
        (base / "tokens").mkdir(parents=True)
        self.conf = base / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n"
                             "log.level = ERROR\n", encoding="utf-8")
        self.pin_file = base / "pin"
        self.pin_file.write_text(PIN + "\n", encoding="utf-8")
        self.wrong_pin_file = base / "wrong-pin"
        self.wrong_pin_file.write_text("000000\n", encoding="utf-8")
        self.env = {"SOFTHSM2_CONF": str(self.conf)}
        for label in LABELS:
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin",
                            SO_PIN], check=True, capture_output=True, env={**os.environ, **self.env})

    def lock(self, label: str) -> None:
        """Make ``label``'s token report its user PIN locked (CKF_USER_PIN_LOCKED), as a card does after too many
        wrong PINs. SoftHSM2 2.6 never locks a PIN itself (twelve wrong ones in a row, then the right one still
        logs in), but keeps the token's flags in its token file (an 8-byte big-endian field), which it reports
        to every process that loads it afterwards."""
        initialised = (0x42D).to_bytes(8, "big")  # RNG, LOGIN_REQUIRED, USER_PIN_INITIALIZED, TOKEN_INITIALIZED...
        padded = label.encode("ascii").ljust(32)
        for path in (self.base / "tokens").glob("*/token.object"):
            data = bytearray(path.read_bytes())
            if padded in data and data.count(initialised) == 1:
                at = data.index(initialised)
                data[at:at + 8] = (0x42D | 0x40000).to_bytes(8, "big")  # | CKF_USER_PIN_LOCKED
                path.write_bytes(bytes(data))
                return
        raise AssertionError(f"no freshly initialised token {label!r} to lock")

    def enroll(self, pki: Path, agency: str, role: str, label: str, *options: str) -> dict:
        """Put a new key and certificate for ``role`` of ``agency`` on ``label``'s token with `vgw pki enroll`,
        as an operator does for a person's card; its JSON report."""
        done = subprocess.run([VGW, "pki", "enroll", str(pki), "--agency", agency, "--role", role, "--pkcs11-module",
                               MODULE, "--token-label", label, "--pin-file", str(self.pin_file), *options, "--json"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def uri(self, label: str, *, key: str | None = None, pin: bool = True) -> str:
        """The RFC 7512 URI of ``label``'s token (and key), its PIN from this session's PIN file."""
        path = f"token={label}" + (f";object={key}" if key else "")
        query = f"module-path={MODULE}" + (f"&pin-source=file:{self.pin_file}" if pin else "")
        return f"pkcs11:{path}?{query}"


_SESSION: list[SoftHsm] = []


def softhsm_session(tmp_path_factory) -> SoftHsm:
    """The session's one SoftHSM2, whichever test module asks first: made once, named in this process's
    environment for good (SoftHSM2 keeps the config it was first loaded with), inherited by every `vgw` the
    tests start."""
    if not _SESSION:
        _SESSION.append(SoftHsm(tmp_path_factory.mktemp("softhsm")))
        os.environ.update(_SESSION[0].env)
    return _SESSION[0]


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory) -> SoftHsm:
    """The session's SoftHSM2, for a test module to import (``from .softhsm import softhsm``)."""
    return softhsm_session(tmp_path_factory)
