"""``vgw bench``: one verb group, each benchmark registering its own verb (the ``bench`` entry point)."""

from __future__ import annotations

from simulators.bench import approvals, bank, intake, sign, statement, verify


def register(registry) -> None:
    """``vgw bench verify | intake | approvals | bank | statement | sign``; verify first: it names the group."""
    for module in (verify, intake, approvals, bank, statement, sign):
        module.register(registry)
