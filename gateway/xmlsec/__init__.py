"""Signed XML: hardened parsing, writing, schema validation, the signature profile, verification, signing, and
signed documents checked against the certificate platform. May import gateway.trust and the shared core
modules (errors, business_time), never an I/O library."""
