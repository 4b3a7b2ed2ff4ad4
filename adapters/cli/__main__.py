"""``python -m adapters.cli``: the ``vgw`` command, as the console script runs it."""

import sys

from adapters.cli.main import main

sys.exit(main())
