"""TLS for the gateway's listeners: TLS 1.2 or newer, and a client certificate required.

OpenSSL only checks that the client's certificate chains to one of our CAs; whether that party may call
(clientAuth usage, revocation, which agency it is) is the certificate platform's decision, made per request
on the certificate this module hands back (see :func:`peer_certificate`).
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet import ssl


def server_tls_options(cert_path: Path, key_path: Path, client_ca_paths: list[Path],
                       chain_paths: tuple[Path, ...] = ()) -> ssl.CertificateOptions:
    """Server options: our certificate and key (plus the intermediates in ``chain_paths``, sent so clients
    need only the root), client certificates required and chained to these CAs."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    authorities = []
    for path in client_ca_paths:
        authorities.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
    chain = [c for path in chain_paths for c in x509.load_pem_x509_certificates(Path(path).read_bytes())]
    return ssl.CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(cert),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain],
        verify=True,
        requireCertificate=True,
        caCerts=[crypto.X509.from_cryptography(a) for a in authorities],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        enableSessions=False,
    )


def peer_certificate(transport) -> x509.Certificate | None:
    """The client's certificate on a TLS transport, or None (plain TCP, or no certificate)."""
    getter = getattr(transport, "getPeerCertificate", None)
    if getter is None:
        return None
    try:
        peer = getter()
    except SSL.Error:
        return None
    return None if peer is None else peer.to_cryptography()
