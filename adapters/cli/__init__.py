"""The ``vgw`` command line: the parser (``main``) and one module per verb group, each registering its verbs
through the ``vgw.commands`` entry points, so nothing imports the command line. The top of adapters/."""
