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
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureConstructionMethod, SignatureMethod
from signxml.util import xades_tag
from signxml.xades import XAdESSigner

from gateway.errors import GatewayError
from gateway.xmlsec.parsing import hardened_parser

SignerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class _TimedXAdESSigner(XAdESSigner):
    """signxml's XAdES signer stamps ``now()`` as SigningTime; ours stamps the time it is given."""

    def __init__(self, signing_time: datetime.datetime, **kwargs) -> None:
        super().__init__(**kwargs)
        self._signing_time = signing_time

    def add_signing_time(self, signed_signature_properties, sig_root, signing_settings) -> None:
        node = etree.SubElement(signed_signature_properties, xades_tag("SigningTime"), nsmap=self.namespaces)
        node.text = self._signing_time.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")


class _OwnTreeXAdESSigner(_TimedXAdESSigner):
    """Sign the caller's tree itself: the ds:Signature is appended to ``document`` and ``document`` returned.

    signxml copies the document it is handed twice (serialise + re-parse each): once to append the signature
    to, once to canonicalise for the whole-document reference, so that the signature it appends is not in
    what it digests. On a 5,000-transaction bank message (3.3 MB, 140,000 elements) the two copies cost
    about three times the rest of the signing together. Here nothing is copied: the document is canonicalised
    in place *before* the signature is appended (and nothing else changes it in between), which yields
    the bytes signxml would canonicalise from its copy, a re-parse of the same serialisation; the signature is
    then built on the document itself exactly as signxml builds it on its copy (same construction steps,
    same parent, same namespace declarations in scope). Only for the one case our signing uses: an enveloped
    signature over the whole document (no reference URIs) of a root element without a signature placeholder;
    anything else goes signxml's own way, copies and all. tests/unit/test_signing_speed_path.py holds both
    ways to the same bytes.

    The caller must own ``document``: built or parsed for this one signature and read afterwards only
    through what is returned (the signature is added to it, also when signing fails half way).
    """

    def __init__(self, signing_time: datetime.datetime, document: etree._Element, **kwargs) -> None:
        super().__init__(signing_time, **kwargs)
        self._document: etree._Element | None = document
        self._document_c14n: bytes | None = None

    def _unpack(self, data, references):
        if (data is not self._document or references is not None or data.getparent() is not None
                or self.construction_method is not SignatureConstructionMethod.enveloped
                or self._findall(data, "Signature[@Id='placeholder']", xpath=".//")):
            self._document = None
        else:
            # What signxml's copy for the whole-document reference would canonicalise to: the document as it
            # is now, before super()._unpack appends the ds:Signature to it.
            self._document_c14n = self._c14n(data, algorithm=self.c14n_alg)
        return super()._unpack(data, references)

    def get_root(self, data):
        if data is self._document and data is not None:
            return data
        return super().get_root(data)

    def _c14n(self, nodes, algorithm, inclusive_ns_prefixes=None):
        if nodes is self._document and self._document_c14n is not None:
            # _build_sig canonicalises the whole-document reference once, with the signature's own algorithm.
            if algorithm != self.c14n_alg or inclusive_ns_prefixes:
                raise GatewayError("own-tree signing canonicalises the document with the signature's algorithm only")
            canonical, self._document_c14n = self._document_c14n, None
            return canonical
        return super()._c14n(nodes, algorithm, inclusive_ns_prefixes)


def _signature_method(key: SignerKey) -> SignatureMethod:
    if isinstance(key, rsa.RSAPrivateKey):
        return SignatureMethod.RSA_SHA256
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return SignatureMethod.ECDSA_SHA256
    raise GatewayError(f"unsupported signing key type {type(key).__name__}; use RSA or ECDSA P-256")


def _signer_arguments(key: SignerKey) -> dict:
    return dict(
        signature_algorithm=_signature_method(key),
        digest_algorithm=DigestAlgorithm.SHA256,
        # C14N 1.1, signxml's default: its XAdES signer digests the SignedProperties and KeyInfo references
        # without a Transform, which verifiers read as C14N 1.1, so exclusive c14n would not verify.
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1,
    )


def _check_time(signing_time: datetime.datetime) -> None:
    if signing_time.tzinfo is None:
        raise ValueError("signing_time must be timezone-aware")


def sign_element(root: etree._Element, key: SignerKey, cert: x509.Certificate,
                 signing_time: datetime.datetime) -> etree._Element:
    """Return a signed copy of ``root`` with the ds:Signature appended as its last child."""
    _check_time(signing_time)
    signer = _TimedXAdESSigner(signing_time, **_signer_arguments(key))
    return signer.sign(root, key=key, cert=[cert], always_add_key_value=False)


def sign_owned_element(root: etree._Element, key: SignerKey, cert: x509.Certificate,
                       signing_time: datetime.datetime) -> etree._Element:
    """Sign ``root`` in place: append the ds:Signature to ``root`` itself and return ``root``.

    The same signature, byte for byte, as :func:`sign_element` gives for the same tree, time and signxml Ids,
    without its two copies of the whole document (most of the time on a large bank message). For a tree the
    caller built or parsed for this one signature and does not use otherwise: ``root`` must be a document's
    root element (no parent), and it is changed, also when signing fails half way. (A document that carries
    a signxml signature placeholder is signed signxml's way, as a copy: read what is returned.)
    """
    _check_time(signing_time)
    if root.getparent() is not None:
        raise ValueError("only a document's root element is signed in place; use sign_element for a subtree")
    signer = _OwnTreeXAdESSigner(signing_time, root, **_signer_arguments(key))
    return signer.sign(root, key=key, cert=[cert], always_add_key_value=False)


def sign_document(data: bytes | etree._Element, key: SignerKey, cert: x509.Certificate,
                  signing_time: datetime.datetime) -> bytes:
    """Sign an XML document (bytes we produced, or an element) and return the signed bytes.

    Input bytes are parsed with the same hardened parser as untrusted input: a tool that signs whatever
    file it is given must not be tricked into reading local files or the network, nor sign a DTD. That tree
    is parsed for this signature alone, so it is signed in place; an element the caller passes is left as
    it is (signed as a copy).
    """
    if isinstance(data, (bytes, bytearray)):
        root = etree.fromstring(bytes(data), hardened_parser())
        if root.getroottree().docinfo.doctype:
            raise ValueError("a document with a DTD is not signed")
        signed = sign_owned_element(root, key, cert, signing_time)
    else:
        signed = sign_element(data, key, cert, signing_time)
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
