"""Sign a document with the gateway's one profile: enveloped XAdES-BES over the whole document.

Used by agencies' tools (``vgw voucher sign``), by simulators, and later by the gateway for its own
receipts. Signing is pure computation, so it lives in the core; the caller passes the signing time
because the core never reads the clock.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.xades import XAdESSigner
from signxml.util import xades_tag

from .errors import GatewayError
from .xml_safety import hardened_parser

SignerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class _TimedXAdESSigner(XAdESSigner):
    """signxml's XAdES signer stamps ``now()`` as SigningTime; ours stamps the time it is given."""

    def __init__(self, signing_time: datetime.datetime, **kwargs) -> None:
        super().__init__(**kwargs)
        self._signing_time = signing_time

    def add_signing_time(self, signed_signature_properties, sig_root, signing_settings) -> None:
        node = etree.SubElement(signed_signature_properties, xades_tag("SigningTime"), nsmap=self.namespaces)
        node.text = self._signing_time.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")


def _signature_method(key: SignerKey) -> SignatureMethod:
    if isinstance(key, rsa.RSAPrivateKey):
        return SignatureMethod.RSA_SHA256
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return SignatureMethod.ECDSA_SHA256
    raise GatewayError(f"unsupported signing key type {type(key).__name__}; use RSA or ECDSA P-256")


def sign_element(root: etree._Element, key: SignerKey, cert: x509.Certificate,
                 signing_time: datetime.datetime) -> etree._Element:
    """Return a signed copy of ``root`` with the ds:Signature appended as its last child."""
    if signing_time.tzinfo is None:
        raise ValueError("signing_time must be timezone-aware")
    signer = _TimedXAdESSigner(
        signing_time,
        signature_algorithm=_signature_method(key),
        digest_algorithm=DigestAlgorithm.SHA256,
        # C14N 1.1, signxml's default: its XAdES signer digests the SignedProperties and KeyInfo references
        # without a Transform, which verifiers read as C14N 1.1, so exclusive c14n would not verify.
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1,
    )
    return signer.sign(root, key=key, cert=[cert], always_add_key_value=False)


def sign_document(data: bytes | etree._Element, key: SignerKey, cert: x509.Certificate,
                  signing_time: datetime.datetime) -> bytes:
    """Sign an XML document (bytes we produced, or an element) and return the signed bytes.

    Input bytes are parsed with the same hardened parser as untrusted input: a tool that signs whatever
    file it is given must not be tricked into reading local files or the network, nor sign a DTD.
    """
    if isinstance(data, (bytes, bytearray)):
        root = etree.fromstring(bytes(data), hardened_parser())
        if root.getroottree().docinfo.doctype:
            raise ValueError("a document with a DTD is not signed")
    else:
        root = data
    signed = sign_element(root, key, cert, signing_time)
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
