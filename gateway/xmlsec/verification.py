"""Verify an enveloped XAdES-BES signature and hand back only what it signed.

The profile check (:mod:`gateway.xmlsec.profile`) runs first and only refuses; signxml then checks
every digest and the signature value with the certificate the document offers, which the caller must
still validate against the trust anchors and the role registry. What comes back is the canonicalised
document that the signature covers, re-parsed: business values are read from nothing else.

A fresh verifier per call: signxml keeps per-verification state on the instance, so sharing
one across threads lets one verification read another's certificate.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature, SignXMLException
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier

from gateway.errors import Refusal
from gateway.xmlsec.parsing import SCHEMA_COMPILE_LOCK, hardened_parser
from gateway.xmlsec.profile import (
    CANONICALIZATIONS,
    DIGEST_METHODS,
    DS,
    NSMAP,
    SIGNATURE_METHODS,
    check_signature_shape,
)


@dataclass(frozen=True)
class VerifiedSignature:
    """The signed content and who signed it, as the signature proves."""

    signed_root: etree._Element
    """The document element as signed (canonical form, signature removed, comments excised)."""
    signer_certificate: x509.Certificate
    signing_time: datetime.datetime
    """The XAdES SigningTime: what the signer claims, bound by the signature."""


_CONFIG_BASE = dict(
    location="./",
    signature_methods=frozenset(SignatureMethod(u) for u in SIGNATURE_METHODS),
    digest_algorithms=frozenset(DigestAlgorithm(u) for u in DIGEST_METHODS),
    ignore_ambiguous_key_info=False,
)


class _OwnTreeVerifier(XAdESVerifier):
    """signxml copies the tree it is handed (serialise + re-parse) before verifying; ours was parsed for
    this one call by :func:`gateway.xmlsec.parsing.parse_untrusted` and nothing else holds it, and signxml's
    verification works on copies of its own per reference, so the defensive copy is skipped. On a
    500-line payroll voucher that copy costs more than every profile check together."""

    _schemas_ready = False

    @classmethod
    def prepare(cls) -> None:
        """Compile signxml's XML-DSig/XAdES schemas once, under our schema compile lock: signxml locks only
        against itself, and a compilation of ours running at the same time would abort the process."""
        if not cls._schemas_ready:
            with SCHEMA_COMPILE_LOCK:
                cls.schemas()
                cls._schemas_ready = True

    def _verify_cert_digests(self, verify_result) -> None:
        """signxml re-reads every KeyInfo certificate through a pure-Python PEM re-wrap (~0.2 ms each) to
        compare it with the XAdES SigningCertificate(V2) digests. Our profile has already admitted exactly one
        X509Certificate in KeyInfo, parsed it, and handed it over as ``x509_cert``; so the candidates are that
        one certificate, and signxml's own ``_verify_cert_digest`` does the comparison as before."""
        certs = [self.x509_cert]
        properties = self._find(verify_result.signed_xml, "xades:SignedSignatureProperties")
        v1 = self._find(properties, "xades:SigningCertificate", require=False)
        v2 = self._find(properties, "xades:SigningCertificateV2", require=False)
        if (v1 is None) == (v2 is None):
            raise InvalidInput("expected exactly one of xades:SigningCertificate or xades:SigningCertificateV2")
        self._verify_cert_digest(v2 if v1 is None else v1, certs=certs, signing_cert=self.x509_cert)

    def _verify_reference(self, reference, index, root, uri_resolver, c14n_algorithm, signature, signature_key_used):
        """Resolve internal references (``#id``) within the signature instead of the whole document.

        For every reference signxml first copies the whole document (serialise + re-parse), because the
        enveloped transform removes the signature from its copy. An internal reference has no enveloped
        transform (the profile admits none or one canonicalization) and may only name this signature's own
        SignedProperties or KeyInfo, ids being unique; signxml then copies that subtree on its own before
        canonicalizing it. So the signature's standalone copy, which signxml already made, yields the very
        same bytes to digest; on a 500-line payroll voucher it saves two copies of the whole document.
        """
        uri = reference.get("URI") or ""
        transforms = reference.find(f"{{{DS}}}Transforms")
        if uri.startswith("#") and not uri.startswith("#xpointer(") and (
                transforms is None or all(t.get("Algorithm") in CANONICALIZATIONS for t in transforms)):
            root = signature
        return super()._verify_reference(reference, index, root, uri_resolver, c14n_algorithm, signature,
                                         signature_key_used)

    def get_root(self, data):
        if isinstance(data, etree._Element):
            return data
        return super().get_root(data)


def verify_enveloped(root: etree._Element, *, now: datetime.datetime) -> VerifiedSignature:
    """Check profile, digests and signature value of the signature on ``root``; raise :class:`Refusal`.

    ``root`` must come from :func:`gateway.xmlsec.parsing.parse_untrusted`, be used for this one call, and
    have passed a schema that admits no Id-like attributes outside the signature (all of ours), since the
    duplicate-id check scans only the signature and the root (see ``find_duplicate_ids``).
    ``now`` is when certificate validity is judged by signxml (the caller also validates the chain).
    """
    shape = check_signature_shape(root)
    _OwnTreeVerifier.prepare()
    config = XAdESSignatureConfiguration(expect_references=shape.reference_count, verification_time=now,
                                         **_CONFIG_BASE)
    try:
        results = _OwnTreeVerifier().verify(root, x509_cert=shape.certificate, expect_config=config,
                                            parser=hardened_parser())
    except InvalidDigest:
        raise Refusal("signature-invalid", "a signed part was changed after signing (digest mismatch)") from None
    except InvalidCertificate as exc:
        code = "certificate-not-yet-valid" if "not yet valid" in str(exc) else "certificate-expired"
        raise Refusal(code, "the signer's certificate is not valid at this time") from None
    except InvalidSignature as exc:
        raise Refusal("signature-invalid", f"the signature does not verify: {_short(exc)}") from None
    except (InvalidInput, SignXMLException, etree.DocumentInvalid, ValueError) as exc:
        raise Refusal("signature-invalid", f"the signature is malformed: {_short(exc)}") from None

    documents = [r for r in results if r.signed_xml is not None and r.signed_xml.tag == root.tag]
    if len(documents) != 1:
        raise Refusal("signature-reference-forbidden", "the signature does not cover the whole document exactly once")
    document = documents[0]
    properties = next(r for r in results if hasattr(r, "signed_properties"))
    signing_time = _signing_time(properties.signed_properties)
    return VerifiedSignature(
        signed_root=document.signed_xml,
        signer_certificate=shape.certificate,
        signing_time=signing_time,
    )


def _signing_time(signed_signature_properties: etree._Element) -> datetime.datetime:
    node = signed_signature_properties.find("xades:SigningTime", namespaces=NSMAP)
    if node is None or not node.text:
        raise Refusal("signature-time-invalid", "the signature carries no XAdES SigningTime")
    try:
        value = datetime.datetime.fromisoformat(node.text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Refusal("signature-time-invalid", f"SigningTime {node.text!r} is not a date and time") from None
    if value.tzinfo is None:
        raise Refusal("signature-time-invalid", "SigningTime must carry a time zone")
    return value


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def verify_pinned(root: etree._Element, *, now: datetime.datetime, pinned: x509.Certificate, code: str,
                  what: str) -> VerifiedSignature:
    """:func:`verify_enveloped`, then the signer must be exactly ``pinned``, or :class:`Refusal` ``code``.

    For documents from a party whose certificate is known out of band (the gateway's receipts, the bank's
    reports): a certificate that merely chains to the CA proves nothing, since every agency system and the
    bank hold such certificates too. The whole DER encoding is compared, not a name or serial another
    certificate could share. ``what`` names the expected signer in the message ("the gateway's")."""
    signature = verify_enveloped(root, now=now)
    if (signature.signer_certificate.public_bytes(serialization.Encoding.DER)
            != pinned.public_bytes(serialization.Encoding.DER)):
        raise Refusal(code, f"signed by a certificate other than {what} "
                            f"(signer serial {signature.signer_certificate.serial_number:X})")
    return signature
