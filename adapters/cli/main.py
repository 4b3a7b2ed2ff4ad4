"""The ``vgw`` command: one console script, verbs registered by the packages that own them.

Verbs are a contract (tests outside the project call them), so every failure ends in a stable exit code
and a one-line message, never a traceback: 0 done, 1 input refused (with its error code), 2 usage or
environment error (missing file, bad option), 70 our own bug (logged with its traceback to stderr only
when VGW_DEBUG is set).

Every verb registers through the ``vgw.commands`` entry point group (``pyproject.toml``): the gateway's own
(adapters/cli/*, adapters/serve/command.py) and those of simulated outside parties (``pki``, ``voucher new``,
``bench``, ``demo`` in simulators/). So this module imports none of them, and none of them imports it: what
they share is adapters/command_line.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points

from adapters.command_line import EXIT_INTERNAL, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError
from gateway.errors import Refusal

CORE_VERBS = ("voucher", "action", "budget", "audit", "bank", "notices", "serve", "signer")
"""The gateway's own verb groups (adapters/cli/, adapters/serve/), registered first and in this order, so that a
group shared with a simulator (``vgw voucher new``) keeps the gateway's help text; the rest by name."""

class CommandRegistry:
    """Lets each package add verbs (``vgw GROUP VERB`` or ``vgw VERB``) to the one parser."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._top = parser.add_subparsers(dest="command", metavar="COMMAND")
        self._top.required = True
        self._groups: dict[str, argparse._SubParsersAction] = {}

    def group(self, name: str, help: str) -> argparse._SubParsersAction:
        if name not in self._groups:
            group_parser = self._top.add_parser(name, help=help, description=help)
            sub = group_parser.add_subparsers(dest=f"{name}_command", metavar="VERB")
            sub.required = True
            self._groups[name] = sub
        return self._groups[name]

    def command(self, group: str | None, name: str, *, help: str,
                handler: Callable[[argparse.Namespace], int | None], group_help: str = "") -> argparse.ArgumentParser:
        where = self._top if group is None else self.group(group, group_help or group)
        parser = where.add_parser(name, help=help, description=help)
        parser.set_defaults(handler=handler)
        return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vgw", description="voucher-gateway: Taipei City centralized payment "
                                     "vouchers, signed XML in, ISO 20022 bank transfers out.")
    registry = CommandRegistry(parser)

    def order(entry) -> tuple[int, str]:
        return (CORE_VERBS.index(entry.name) if entry.name in CORE_VERBS else len(CORE_VERBS), entry.name)

    for entry in sorted(entry_points(group="vgw.commands"), key=order):
        entry.load()(registry)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or EXIT_OK)
    except Refusal as refusal:
        for problem in refusal.problems:
            print(f"vgw: refused: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    except CliError as exc:
        print(f"vgw: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # our bug: say so in one line; the traceback only on request
        print(f"vgw: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("VGW_DEBUG"):
            traceback.print_exc()
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
