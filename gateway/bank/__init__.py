"""The bank exchange's core: payment lines, pain.001 building and batching, the signed envelope, reading and
writing reports, what binds a report to what was sent, per-line outcomes, settlement, resend, the bank
store port and the ISO code sets. Built on gateway.workflow and below."""
