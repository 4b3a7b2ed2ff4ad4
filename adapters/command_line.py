"""What every ``vgw`` verb shares, wherever its module lives: the exit codes and the usage error.

The command line's parser (adapters/cli/main.py) is the top of the house: it finds the verbs through the
``vgw.commands`` entry points and nothing imports it. A verb's module, in adapters/ or simulators/, raises
:class:`CliError` for a problem the user can fix and returns one of these codes, importing only this.
"""

from __future__ import annotations

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70
"""0 done, 1 input refused (a stable error code on stderr), 2 usage or environment error, 70 our own bug."""


class CliError(Exception):
    """A usage or environment problem the user can fix (exit 2)."""
