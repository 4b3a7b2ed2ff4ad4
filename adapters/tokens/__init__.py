"""Keys on PKCS#11 tokens: the citizen-certificate cards (自然人憑證) people sign with, SoftHSM2 in tests.

Which token and key (an RFC 7512 ``pkcs11:`` URI, or module + token label + key label), the PIN (a file, an
environment variable or a prompt, never an argument), a private-key object that signs through the token so
that signxml builds the XAdES signature around the card's signature value, and the enrolment of a new
non-extractable key with its certificate stored beside it. The private key never leaves the token.
Imports nothing of adapters/ but the shared modules.
"""
