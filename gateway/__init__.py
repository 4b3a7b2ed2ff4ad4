"""The pure core of voucher-gateway: models, validation, signature and certificate policy.

Nothing in this package performs I/O of its own (no sockets, reactor, SQL or AMQP). Callers hand it bytes,
parsed objects and the current time; adapters supply everything that touches the world through the
interfaces in :mod:`gateway.ports`.
"""
