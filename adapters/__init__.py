"""Everything that touches the world: command line, HTTP, AMQP, storage, revocation fetchers.

Adapters call the core (:mod:`gateway`); the core never imports from here.
"""
