"""The bank exchange's I/O: the batcher, relay and report intake, the transports (in process, RabbitMQ), and the
worker that runs them."""
