"""Seal an ISO 20022 document for the bank exchange, and open one the bank sealed (``schemas/bank-message.xsd``).

Both directions of the bank exchange travel in the same envelope: a signed header (message id, ISO type,
sender, receiver, creation time) and exactly one ISO document, under one enveloped XAdES-BES signature in the
voucher profile. :func:`seal` is what the gateway (and the bank simulator) send; :func:`open_sealed` is the
only way a received message is read, and runs the same ladder as every other signed input:

1. :func:`~gateway.xmlsec.parsing.parse_untrusted` with :data:`BANK_LIMITS` (no DTD, size, depth, element caps);
2. the envelope schema;
3. the header's MessageType against what the caller expects here (a status report where a transfer order
   should be is refused before anything reads it), and the inner document's namespace against that type;
4. the inner document against the official ISO XSD of its type: this also proves the document carries no
   Id-like attributes, which the signature profile's duplicate-id check relies on (it scans only the
   signature and the root);
5. :func:`~gateway.xmlsec.verification.verify_pinned` (the signature, then 6.);
6. the signer pinned by its whole DER encoding: a certificate from the same CA (an agency's, the gateway's own)
   must not be able to speak for the bank, and a name or serial could be shared by another certificate;
7. from then on only the verifier's signed root is read: what comes back is what the signature covers;
8. the signed header binds the message to this exchange: its Sender must be the party the caller expects
   (the bank this gateway is configured for), its Receiver the caller itself, so a message the bank signed for
   another receiver (another city's gateway) cannot be replayed here; and its MessageId must be the ISO
   document's own ``GrpHdr/MsgId``, so a message is deduplicated, stored and audited under one id.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from lxml import etree

from gateway.errors import GatewayError, Problem, Refusal
from gateway.xmlsec.parsing import XmlLimits, parse_untrusted, tree_path
from gateway.xmlsec.signing import SignerKey, sign_owned_element
from gateway.xmlsec.validation import compiled_schema, schema_problems
from gateway.xmlsec.verification import verify_pinned
from gateway.xmlsec.writing import child_writer, utc_seconds_text

NS = "urn:taipei:voucher-gateway:bank-message:1"
ENVELOPE_SCHEMA = "bank-message.xsd"
ISO_NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"

MESSAGE_SCHEMAS: dict[str, str] = {
    "pain.001.001.09": "pain.001.001.09.xsd",
    "pain.002.001.10": "pain.002.001.10.xsd",
    "camt.054.001.08": "camt.054.001.08.xsd",
}
"""The ISO types the envelope carries (bank-message.xsd MessageTypeType) and the official XSD of each."""
MESSAGE_TYPES = frozenset(MESSAGE_SCHEMAS)

BANK_LIMITS = XmlLimits(max_bytes=64 * 1024 * 1024, max_depth=40, max_elements=2_000_000)
"""Caps on a received bank message, sized for the largest one the exchange produces: a pain.002 or camt.054
answering a 5,000-transaction pain.001. Measured (tests/unit/test_bank_envelope.py keeps it within the caps): a
sealed 5,000-transaction pain.001 is about 3.2 MB, 140,000 elements and 12 levels deep
(BankMessage/Document/Document/CstmrCdtTrfInitn/PmtInf/CdtTrfTxInf/Cdtr/Id/PrvtId/Othr/SchmeNm/Prtry; the XAdES
signature nests 10). A status report that echoes every original transaction in full (OrgnlTxRef with amount,
agents, parties, accounts and remittance) is about twice that. The caps leave a bank ten times that room
(64 MiB, 2 million elements) while keeping a hostile document within what a worker can parse in memory.
Depth: the three ISO schemas admit at most 15 levels (camt.054; pain.002 14, pain.001 13), 17 inside the
envelope, so no valid message comes near 40; the cap only stops a hostile one before the validator walks it."""

_Q = "{%s}" % NS
_sub = child_writer(NS)
_PARTY = re.compile(r"[A-Z0-9]([A-Z0-9-]{0,33}[A-Z0-9])?")
_MESSAGE_ID = re.compile(r"[!-~]{1,35}")
_ISO_TAG = re.compile(r"\{urn:iso:std:iso:20022:tech:xsd:[a-z]{4}\.[0-9]{3}\.[0-9]{3}\.[0-9]{2}\}")


@dataclass(frozen=True)
class SealedMessage:
    """A bank message whose envelope, ISO document and signature passed, read from the signed content only."""

    message_id: str
    message_type: str
    sender: str
    receiver: str
    created_at: datetime.datetime
    document: etree._Element
    """The ISO ``Document`` element, in the verifier's signed tree (so error paths read from /BankMessage).
    Serialise it with ``etree.tostring``; to canonicalise it, copy it out first: libxml2 2.14 canonicalises a
    subtree whose ancestors declare another default namespace wrongly (``xmlns=""`` on its grandchildren)."""
    sha256: str
    """SHA-256 of the exact bytes received, lowercase hex: what to store and log the message under."""
    signed_at: datetime.datetime
    """The XAdES SigningTime, as the signature binds it."""

    def __post_init__(self) -> None:
        if self.message_type not in MESSAGE_TYPES:
            raise ValueError(f"unknown message type {self.message_type!r}")
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ValueError("created_at must be timezone-aware")


def _format_time(value: datetime.datetime) -> str:
    """UTC with a ``Z``: one spelling per instant, whatever zone the caller's clock used."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("created_at must be timezone-aware")
    return utc_seconds_text(value)


def _check_header(document: etree._Element, *, message_id: str, message_type: str, sender: str,
                  receiver: str) -> None:
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"unknown message type {message_type!r}; expected one of {sorted(MESSAGE_TYPES)}")
    if etree.QName(document).namespace != ISO_NAMESPACE_PREFIX + message_type:
        raise ValueError(f"the document's namespace {etree.QName(document).namespace!r} is not {message_type}'s")
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError(f"message id {message_id!r} is not 1 to 35 printable ASCII characters without spaces")
    for party in (sender, receiver):
        if not _PARTY.fullmatch(party):
            raise ValueError(f"party name {party!r} is not a short upper-case token such as TPE-TREASURY-GATEWAY")


def envelope_element(document: etree._Element, *, message_id: str, message_type: str, sender: str,
                     receiver: str, created_at: datetime.datetime) -> etree._Element:
    """The unsigned envelope around a copy of ``document`` (the caller's element is left where it is)."""
    _check_header(document, message_id=message_id, message_type=message_type, sender=sender, receiver=receiver)
    root = etree.Element(_Q + "BankMessage", nsmap={None: NS})
    header = _sub(root, "Header")
    _sub(header, "MessageId", message_id)
    _sub(header, "MessageType", message_type)
    _sub(header, "Sender", sender)
    _sub(header, "Receiver", receiver)
    _sub(header, "CreatedAt", _format_time(created_at))
    _sub(root, "Document").append(copy.deepcopy(document))
    return root


def seal(document: etree._Element, *, message_id: str, message_type: str, sender: str, receiver: str,
         key: SignerKey, cert: x509.Certificate, created_at: datetime.datetime) -> bytes:
    """The signed envelope around ``document``: UTF-8 bytes with an XML declaration, ready to publish.

    ``document`` must be valid against the official XSD of ``message_type``: it is checked here, because a
    message the bank refuses as malformed costs a round trip and leaves payments waiting, and what we send
    must pass the very checks :func:`open_sealed` runs on what we receive. An invalid document, or one whose
    MsgId is not ``message_id``, is our own bug (GatewayError), not a refusal. ``created_at`` is both CreatedAt and the XAdES SigningTime.
    """
    root = envelope_element(document, message_id=message_id, message_type=message_type, sender=sender,
                            receiver=receiver, created_at=created_at)
    inner = _only_child(root.find(_Q + "Document"))
    problems = _inner_problems(inner, message_type)
    if problems:
        raise GatewayError(f"refusing to seal an invalid {message_type} document: "
                           + "; ".join(str(p) for p in problems[:5]))
    if document_message_id(inner) != message_id:
        raise GatewayError(f"refusing to seal message {message_id} around a document whose MsgId is "
                           f"{document_message_id(inner)!r}")
    signed = sign_owned_element(root, key, cert, created_at)  # root was built above for this message alone
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def open_sealed(data: bytes, *, signer_cert: x509.Certificate, allowed_types: frozenset[str], sender: str,
                receiver: str, now: datetime.datetime, limits: XmlLimits = BANK_LIMITS) -> SealedMessage:
    """Accept ``data`` as a message of one of ``allowed_types`` signed by exactly ``signer_cert``, sent by
    ``sender`` to ``receiver`` (the header's party names), or raise Refusal.

    Codes: those of parsing (``xml-malformed``, ``xml-forbidden-construct``, ``too-large``, ``too-deep``),
    ``schema-invalid`` (envelope or ISO document, every problem with its line and path),
    ``bank-message-type-unexpected`` (a type not in ``allowed_types``, or a document of another type than the
    header names), the signature profile and verification (``signature-*``, ``certificate-expired``,
    ``certificate-not-yet-valid``, judged at ``now``), ``bank-signer-unexpected``, then on the signed header
    ``bank-sender-unexpected``, ``bank-receiver-unexpected`` and ``bank-message-id-mismatch`` (the header's
    MessageId is not the document's GrpHdr/MsgId).
    """
    unknown = set(allowed_types) - MESSAGE_TYPES
    if unknown:
        raise ValueError(f"unknown message types {sorted(unknown)}")
    root = parse_untrusted(data, limits)
    problems = schema_problems(root, ENVELOPE_SCHEMA)
    if problems:
        raise Refusal(problems)
    message_type = root.findtext(f"{_Q}Header/{_Q}MessageType")
    if message_type not in allowed_types:
        raise Refusal("bank-message-type-unexpected",
                      f"a {message_type} message is not accepted here; expected {' or '.join(sorted(allowed_types))}",
                      path="/BankMessage/Header/MessageType")
    inner = _only_child(root.find(_Q + "Document"))
    namespace = etree.QName(inner).namespace
    if namespace != ISO_NAMESPACE_PREFIX + message_type:
        raise Refusal("bank-message-type-unexpected",
                      f"the header says {message_type} but the document is in namespace {namespace!r}",
                      line=inner.sourceline, path=tree_path(inner))
    problems = _inner_problems(inner, message_type)
    if problems:
        raise Refusal(problems)
    signature = verify_pinned(root, now=now, pinned=signer_cert, code="bank-signer-unexpected",
                              what="the pinned one")
    sealed = _read(signature.signed_root, hashlib.sha256(data).hexdigest(), signature.signing_time)
    _check_binding(sealed, sender=sender, receiver=receiver)
    return sealed


def _check_binding(sealed: SealedMessage, *, sender: str, receiver: str) -> None:
    """Step 8 of the module docstring, on the signed header and document."""
    if sealed.sender != sender:
        raise Refusal("bank-sender-unexpected", f"the message says it is from {sealed.sender!r}, not {sender!r}: "
                      "a party this exchange does not talk to", path="/BankMessage/Header/Sender")
    if sealed.receiver != receiver:
        raise Refusal("bank-receiver-unexpected", f"the message is addressed to {sealed.receiver!r}, not to "
                      f"{receiver!r}: it was signed for another receiver", path="/BankMessage/Header/Receiver")
    document_id = document_message_id(sealed.document)
    if document_id != sealed.message_id:
        raise Refusal("bank-message-id-mismatch", f"the envelope's MessageId {sealed.message_id!r} is not the "
                      f"document's own MsgId {document_id!r}: one message must go by one id",
                      path="/BankMessage/Header/MessageId")


def document_message_id(document: etree._Element) -> str | None:
    """The ``GrpHdr/MsgId`` of an ISO document (its message element's group header), trimmed; None if absent.
    All three types the envelope carries have it, mandatory, in the same place."""
    message = next(document.iterchildren(etree.Element), None)
    if message is None:
        return None
    namespace = etree.QName(document).namespace
    found = message.find(f"{{{namespace}}}GrpHdr/{{{namespace}}}MsgId")
    if found is None:
        return None
    return "".join(found.itertext()).strip()


def _read(signed: etree._Element, sha256: str, signed_at: datetime.datetime) -> SealedMessage:
    """The header and document of the verifier's signed root (schema-valid: it is the tree just checked)."""
    header = signed.find(_Q + "Header")

    def text(name: str) -> str:
        return header.findtext(_Q + name) or ""

    created = header.find(_Q + "CreatedAt")
    try:
        created_at = datetime.datetime.fromisoformat((created.text or "").strip())
    except ValueError:  # xs:dateTime admits spellings Python does not (24:00:00, years past 9999)
        raise Refusal("schema-invalid", f"CreatedAt {created.text!r} is not a date and time this gateway reads",
                      path="/BankMessage/Header/CreatedAt") from None
    return SealedMessage(message_id=text("MessageId"), message_type=text("MessageType"), sender=text("Sender"),
                         receiver=text("Receiver"), created_at=created_at,
                         document=_only_child(signed.find(_Q + "Document")), sha256=sha256, signed_at=signed_at)


def _only_child(parent: etree._Element) -> etree._Element:
    """The one element child (the schema admits exactly one; comments around it are skipped)."""
    return next(parent.iterchildren(etree.Element))


def _inner_problems(inner: etree._Element, message_type: str) -> list[Problem]:
    """Every way ``inner`` breaks the official XSD of ``message_type``, with lines and paths in the whole tree.

    Validated in place: lxml validates a subtree as if it were a document, so libxml2's paths (``/*/*[2]``)
    count from ``inner``; they are resolved here against ``inner`` and written from the envelope's root,
    e.g. ``/BankMessage/Document/Document/CstmrCdtTrfInitn/PmtInf/CdtTrfTxInf[3]/Amt/InstdAmt``.
    """
    with compiled_schema(MESSAGE_SCHEMAS[message_type]) as schema:
        if schema.validate(inner):
            return []
        entries = list(schema.error_log)
    return [Problem("schema-invalid", _ISO_TAG.sub("", entry.message), entry.line or None,
                    _inner_path(inner, entry.path)) for entry in entries]


def _inner_path(inner: etree._Element, path: str | None) -> str | None:
    if not path:
        return None
    if path.startswith("/*"):
        try:
            found = inner.xpath("." + path[2:])
        except etree.XPathError:
            found = None
        if isinstance(found, list) and len(found) == 1 and isinstance(found[0], etree._Element):
            return tree_path(found[0])
    return tree_path(inner) + " " + path
