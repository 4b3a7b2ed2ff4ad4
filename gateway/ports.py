"""The interfaces the core needs from the outside world. Adapters implement them; the core only calls.

Each port is a plain callable protocol so that an in-memory fake for unit tests and a real fetcher for
production satisfy the same contract (see tests/integration/test_ocsp_responder.py).
"""

from __future__ import annotations

from typing import Protocol

from cryptography import x509


class RevocationFetchError(Exception):
    """A revocation source could not be reached or gave no usable bytes (timeout, refused, HTTP error)."""


class OcspFetcher(Protocol):
    def __call__(self, url: str, request_der: bytes) -> bytes:
        """POST ``request_der`` to the OCSP responder at ``url``; return the DER response body.

        Raises :class:`RevocationFetchError` when the responder cannot be reached or answers badly.
        """


class CrlFetcher(Protocol):
    def __call__(self, issuer: x509.Certificate, cert: x509.Certificate) -> bytes:
        """Return the current CRL (DER or PEM) of ``issuer`` that covers ``cert``.

        Raises :class:`RevocationFetchError` when no CRL can be had.
        """
