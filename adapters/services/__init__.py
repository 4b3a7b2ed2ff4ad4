"""The use cases behind the HTTP and AMQP routes: taking in a voucher, a signed action, the treasury check."""
