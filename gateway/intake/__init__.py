"""Taking a voucher in: the intake decision (accept, repeat, refuse) and the gateway's signed receipts. Built on
gateway.vouchers."""
