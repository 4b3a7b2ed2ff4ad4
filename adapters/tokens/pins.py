"""The PIN of a token: from a file, from an environment variable, or asked for on a terminal. Never an argument
on the command line (every user of the machine reads those), never guessed, never tried twice by us: a wrong
PIN counts against the card's tries."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from adapters.tokens.uri import TokenRef
from gateway.errors import Refusal

PIN_ENV = "VGW_PKCS11_PIN"
"""The environment variable a PIN may come from (a service manager's secret, a test)."""


def read_pin(ref: TokenRef, *, pin_file: str | None = None, environ=os.environ, prompt=True) -> str:
    """The PIN for ``ref``: ``pin_file``, else the URI's pin-source / pin-value, else ``VGW_PKCS11_PIN``, else a
    prompt when standard input is a terminal. Refusal ``token-pin-missing`` when there is none."""
    source = pin_file or ref.pin_source
    if source:
        path = Path(source[len("file:"):] if source.startswith("file:") else source)
        try:
            pin = path.read_text(encoding="utf-8").strip("\r\n")
        except OSError as exc:
            raise Refusal("token-pin-missing", f"cannot read the PIN file {path}: {exc.strerror}") from None
        if not pin:
            raise Refusal("token-pin-missing", f"the PIN file {path} is empty")
        return pin
    if ref.pin_value:
        return ref.pin_value
    if environ.get(PIN_ENV):
        return environ[PIN_ENV]
    if prompt and sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(f"PIN for {ref.describe()}: ")
    raise Refusal("token-pin-missing", f"no PIN for {ref.describe()}: give --pin-file, pin-source in the URI, or "
                  f"{PIN_ENV}, or run on a terminal to be asked")
