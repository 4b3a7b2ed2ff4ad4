"""``vgw serve``: the command, its settings, the bootstrap of the certificate platform, the worker processes and
their pool, periodic work and metrics. May import services, console and everything below."""
