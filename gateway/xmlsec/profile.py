"""The one XAdES-BES profile the gateway accepts, checked on the document's structure before any crypto.

signxml verifies digests and the signature value; it does not know our profile. These checks refuse
everything the profile leaves out (a second Signature, a Signature elsewhere than the root's last child,
references to anything but the whole document and the signature's own XAdES parts, transforms other than
enveloped + canonicalization, weak algorithms, keys other than one X.509 certificate, duplicated ids)
before signxml sees the document. They only ever refuse: nothing read here is trusted as a business value.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from lxml import etree

from gateway.errors import Refusal
from gateway.xmlsec.parsing import compiled_xpath, find_duplicate_ids, tree_path

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
NSMAP = {"ds": DS, "xades": XADES}

ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"

CANONICALIZATIONS = frozenset({
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/2006/12/xml-c14n11",
})
SIGNATURE_METHODS = frozenset({
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
})
DIGEST_METHODS = frozenset({
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
})


@dataclass(frozen=True)
class SignatureShape:
    """What the structural check found: the certificate the document offers and the reference count."""

    certificate: x509.Certificate
    reference_count: int


def _ds(name: str) -> str:
    return f"{{{DS}}}{name}"


SIGNATURE, SIGNED_INFO, SIGNATURE_VALUE, KEY_INFO, OBJECT = (_ds(n) for n in (
    "Signature", "SignedInfo", "SignatureValue", "KeyInfo", "Object"))
C14N_METHOD, SIGNATURE_METHOD, REFERENCE = (_ds(n) for n in ("CanonicalizationMethod", "SignatureMethod", "Reference"))
TRANSFORMS, TRANSFORM, DIGEST_METHOD, DIGEST_VALUE = (_ds(n) for n in (
    "Transforms", "Transform", "DigestMethod", "DigestValue"))
X509_DATA, X509_CERTIFICATE = _ds("X509Data"), _ds("X509Certificate")
_SIGNATURE_CHILDREN = (SIGNED_INFO, SIGNATURE_VALUE, KEY_INFO, OBJECT)
# The transform lists the profile allows, per kind of reference.
_DOCUMENT_TRANSFORMS = frozenset({(ENVELOPED,)} | {(ENVELOPED, c) for c in CANONICALIZATIONS})
_INTERNAL_TRANSFORMS = frozenset({()} | {(c,) for c in CANONICALIZATIONS})


def _refuse(code: str, message: str, node: etree._Element | None = None) -> Refusal:
    if node is None:
        return Refusal(code, message)
    return Refusal(code, message, line=node.sourceline, path=tree_path(node))


def _only_children(node: etree._Element, allowed: tuple[str, ...], code: str, what: str) -> list[etree._Element]:
    children = [c for c in node if isinstance(c.tag, str)]
    for child in children:
        if child.tag not in allowed:
            raise _refuse(code, f"{what} may not contain {etree.QName(child).localname}", child)
    return children


def _algorithm(node: etree._Element | None, allowed: frozenset[str], code: str, what: str) -> str:
    if node is None:
        raise _refuse("signature-invalid", f"{what} is missing")
    algorithm = node.get("Algorithm")
    if algorithm not in allowed:
        raise _refuse(code, f"{what} {algorithm!r} is not allowed", node)
    return algorithm


def check_signature_shape(root: etree._Element) -> SignatureShape:
    """Check the enveloped signature's structure against the profile; raise :class:`Refusal` if it strays."""
    signatures = list(root.iter(SIGNATURE))
    if not signatures:
        raise Refusal("signature-missing", "the document is not signed")
    if len(signatures) > 1:
        raise _refuse("signature-multiple", f"the document carries {len(signatures)} signatures; exactly one is allowed",
                      signatures[1])
    signature = signatures[0]
    last_child = next((c for c in reversed(root) if isinstance(c.tag, str)), None)
    if signature.getparent() is not root or last_child is not signature:
        raise _refuse("signature-misplaced", "the signature must be the last child of the document element", signature)
    # Our schemas admit no attributes outside the signature beyond a few fixed names (number, type,
    # schemaVersion), so after schema validation Id-like attributes can only sit on the root or in here.
    duplicates = find_duplicate_ids(signature, also_attributes_of=root)
    if duplicates:
        value, line = duplicates[0]
        raise Refusal("signature-id-duplicated", f"the id {value!r} occurs more than once", line=line)

    # XML-DSig fixes the order: SignedInfo, SignatureValue, KeyInfo, Object; XAdES-BES needs all four, once.
    children = tuple(signature)
    if tuple(c.tag for c in children) != _SIGNATURE_CHILDREN:
        if KEY_INFO not in (c.tag for c in children):
            raise _refuse("signature-key-info-invalid", "KeyInfo with the signer's certificate is missing", signature)
        raise _refuse("signature-invalid", "a Signature holds exactly SignedInfo, SignatureValue, KeyInfo and one "
                      "ds:Object, in that order (and nothing else, comments included)", signature)
    signed_info, _, key_info, xades_object = children
    signed_properties = compiled_xpath("xades:QualifyingProperties/xades:SignedProperties", NSMAP)(xades_object)
    if len(signed_properties) != 1 or len(xades_object) != 1:
        raise _refuse("signature-invalid", "the ds:Object must hold exactly one xades:QualifyingProperties "
                      "with its SignedProperties", xades_object)
    certificate = _check_key_info(key_info)

    info = tuple(signed_info)
    if len(info) < 4 or info[0].tag != C14N_METHOD or info[1].tag != SIGNATURE_METHOD or any(
            r.tag != REFERENCE for r in info[2:]):
        raise _refuse("signature-invalid", "SignedInfo holds CanonicalizationMethod, SignatureMethod and "
                      "References, in that order", signed_info)
    c14n, method = info[0], info[1]
    _algorithm(c14n, CANONICALIZATIONS, "signature-algorithm-forbidden", "canonicalization")
    _algorithm(method, SIGNATURE_METHODS, "signature-algorithm-forbidden", "signature method")
    if len(c14n) or len(method):
        raise _refuse("signature-invalid", "algorithm parameters are not allowed in SignedInfo", c14n)

    targets = {
        signed_properties[0].get("Id"): "properties",
        key_info.get("Id"): "key-info",
    }
    seen = {"document": 0, "properties": 0, "key-info": 0}
    references = info[2:]
    for reference in references:
        kind = _check_reference(reference, targets)
        seen[kind] += 1
    if seen["document"] != 1 or seen["properties"] != 1 or seen["key-info"] > 1:
        raise _refuse("signature-reference-forbidden",
                      "the signature must reference the whole document once and its SignedProperties once", signed_info)
    return SignatureShape(certificate=certificate, reference_count=len(references))


def _check_reference(reference: etree._Element, targets: dict[str | None, str]) -> str:
    """Classify one Reference as document / properties / key-info, refusing anything else."""
    uri = reference.get("URI")
    if uri == "":
        kind = "document"
        if reference.get("Type") not in (None, "http://www.w3.org/2000/09/xmldsig#Object"):
            raise _refuse("signature-reference-forbidden", "the document reference has an unexpected Type", reference)
    elif uri and uri.startswith("#") and uri[1:] in targets and uri[1:]:
        kind = targets[uri[1:]]
        if kind == "properties" and reference.get("Type") != SIGNED_PROPERTIES_TYPE:
            raise _refuse("signature-reference-forbidden", "the SignedProperties reference must carry its XAdES Type",
                          reference)
    else:
        raise _refuse("signature-reference-forbidden",
                      f"a reference to {uri!r} is not allowed; only the whole document (URI=\"\") is signed", reference)
    _only_children(reference, (TRANSFORMS, DIGEST_METHOD, DIGEST_VALUE), "signature-invalid",
                   "a Reference")
    _algorithm(reference.find(DIGEST_METHOD), DIGEST_METHODS, "signature-algorithm-forbidden", "digest method")
    transforms = reference.find(TRANSFORMS)
    algorithms = () if transforms is None else tuple(t.get("Algorithm") for t in transforms)
    if transforms is not None:
        for transform in transforms:
            if transform.tag != TRANSFORM:
                raise _refuse("signature-transform-forbidden", "Transforms may hold only Transform elements", transform)
            extra = [c for c in transform if isinstance(c.tag, str)]
            if extra and not (transform.get("Algorithm") == "http://www.w3.org/2001/10/xml-exc-c14n#"
                              and len(extra) == 1 and etree.QName(extra[0]).localname == "InclusiveNamespaces"):
                raise _refuse("signature-transform-forbidden", "transform parameters are not allowed", transform)
    if algorithms not in (_DOCUMENT_TRANSFORMS if kind == "document" else _INTERNAL_TRANSFORMS):
        raise _refuse("signature-transform-forbidden",
                      f"transforms {list(algorithms)} are not allowed; only enveloped-signature and canonicalization",
                      reference)
    return kind


def _check_key_info(key_info: etree._Element) -> x509.Certificate:
    """KeyInfo must be exactly one X509Data with exactly one X509Certificate: the signer's own."""
    children = [c for c in key_info if isinstance(c.tag, str)]
    if len(children) != 1 or children[0].tag != X509_DATA:
        raise _refuse("signature-key-info-invalid",
                      "KeyInfo must hold only X509Data (no KeyValue, KeyName or RetrievalMethod)", key_info)
    certs = [c for c in children[0] if isinstance(c.tag, str)]
    if len(certs) != 1 or certs[0].tag != X509_CERTIFICATE:
        raise _refuse("signature-key-info-invalid", "X509Data must hold exactly one X509Certificate", children[0])
    try:
        der = base64.b64decode("".join(certs[0].itertext()), validate=False)
        cert = x509.load_der_x509_certificate(der)
        # cryptography parses a certificate's parts lazily: a damaged key, name or extension (an unknown
        # algorithm OID, a wrongly typed attribute) would otherwise surface later, inside signxml or the
        # chain check, as an exception that is not a refusal. Read every part anyone will use, now.
        cert.public_key()
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
        list(cert.extensions)
        cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018 (read for their parse errors)
        return cert
    except (binascii.Error, ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion,
            x509.DuplicateExtension) as exc:
        raise _refuse("signature-key-info-invalid", f"the X509Certificate cannot be read: {exc}", certs[0]) from None
