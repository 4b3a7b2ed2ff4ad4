"""Which agency a TLS client certificate speaks for."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID


def agency_of_client(cert: x509.Certificate) -> str | None:
    """The agency an agency system's TLS certificate speaks for: its organizational unit (OU), as the PKI
    issues them (``OU=379000001A``). The agency must also be known to the role registry."""
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return str(units[0].value) if len(units) == 1 else None
