"""RabbitMQ channels of the gateway: voucher intake, the reconnecting thread they share, the event publisher."""
