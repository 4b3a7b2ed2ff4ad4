"""The gateway's signed receipt (收件回執, ``schemas/receipt.xsd``): build, write, sign, and verify.

A receipt is the agency's proof that the gateway holds these exact bytes as this revision of this voucher.
The gateway builds it from a :class:`~gateway.vouchers.check.VerifiedVoucher` (values that came from the
signed voucher only) and signs it with its own certificate in the same XAdES-BES profile as vouchers.
:func:`verify_receipt` is what an agency runs: the same hardened parse, schema, profile and signature
checks as the gateway runs on vouchers, plus a pin to the gateway certificate, because any certificate
from the same CA (a bank's, another agency's) would otherwise produce a receipt that verifies.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from lxml import etree

from gateway.errors import Refusal
from gateway.trust.roles import Role
from gateway.vouchers.check import VerifiedVoucher
from gateway.vouchers.model import VoucherRef, is_revision, is_sha256_hex
from gateway.xmlsec.parsing import DEFAULT_LIMITS, XmlLimits, parse_untrusted, tree_path
from gateway.xmlsec.signing import SignerKey, sign_document
from gateway.xmlsec.validation import schema_problems
from gateway.xmlsec.verification import verify_pinned
from gateway.xmlsec.writing import child_writer

NS = "urn:taipei:treasury:receipt:1"
RECEIPT_SCHEMA = "receipt.xsd"
SCHEMA_VERSION = "1.0"
ACTION_SCHEMA_VERSION = "1.1"
"""Receipts for actions carry the Action element added in 1.1; voucher receipts stay 1.0 byte for byte."""
STATUS_RECEIVED = "received"
"""The only status a receipt carries (see schemas/receipt.xsd StatusType for why)."""

_Q = "{%s}" % NS
_RECEIPT_ID = re.compile(r"R-[0-9a-f]{32}\Z")
_VOUCHER_ID = re.compile(r"([0-9]{9}[A-Z0-9])-([0-9]{3})-([0-9A-Z]{1,12})\Z")
# Domain separation: this hash names receipts and nothing else, in this version of the id scheme.
_RECEIPT_ID_DOMAIN = b"vgw receipt id 1\x00"


@dataclass(frozen=True)
class ActionOutcome:
    """What a receipt for an approval action adds: the stage and decision, and the status that followed."""

    stage: Role
    decision: str
    voucher_status: str

    def __post_init__(self) -> None:
        if self.decision not in ("approve", "reject", "cancel"):
            raise ValueError(f"unknown decision {self.decision!r}")
        if not re.fullmatch(r"[a-z][a-z-]{0,39}", self.voucher_status):
            raise ValueError(f"not a workflow status: {self.voucher_status!r}")


@dataclass(frozen=True)
class Receipt:
    """What a receipt states. Equal receipts state the same thing; ``received_at`` compares as an instant."""

    receipt_id: str
    voucher_id: str
    revision: int
    agency: str
    received_sha256: str
    """SHA-256 of the exact bytes received, lowercase hex: what the agency compares with what it sent."""
    received_at: datetime.datetime
    signer_serial: str
    """The voucher signer's certificate serial, uppercase hex (as in the role registry)."""
    signer_issuer: str
    """That certificate's issuer (RFC 4514): a serial number is unique only per issuing CA."""
    signer_role: Role
    corrects: VoucherRef | None = None
    status: str = STATUS_RECEIVED
    action: ActionOutcome | None = None

    def __post_init__(self) -> None:
        # Checked here, like h11's events, so a malformed receipt fails where it is made, not when signed.
        if not _RECEIPT_ID.match(self.receipt_id):
            raise ValueError(f"receipt id {self.receipt_id!r} is not R- and 32 lowercase hex digits")
        if not is_sha256_hex(self.received_sha256):
            raise ValueError("received_sha256 must be 64 lowercase hex digits")
        if self.received_at.tzinfo is None or self.received_at.utcoffset() is None:
            raise ValueError("received_at must be timezone-aware")
        if not _VOUCHER_ID.match(self.voucher_id) or not self.voucher_id.startswith(self.agency + "-"):
            raise ValueError(f"voucher id {self.voucher_id!r} is not AGENCY-YEAR-NUMBER of agency {self.agency}")
        if self.status != STATUS_RECEIVED:
            raise ValueError(f"unknown receipt status {self.status!r}")


def new_receipt_id(voucher_id: str, revision: int, received_sha256: str) -> str:
    """The receipt id for these exact bytes as this revision of this voucher: ``R-`` + 32 hex digits.

    Deterministic, not random, so that retrying the same bytes yields the same id. A gateway that crashes
    after building (or even logging) a receipt but before its transaction commits, and then receives the
    agency's retry, issues a receipt with the same id: one submission never ends up known under two ids.
    Two gateway processes racing on the same bytes also compute the same id, so a unique key on it in the
    store turns the race into one stored receipt. 128 bits of SHA-256 make a collision between different
    submissions out of reach; the voucher id and revision in the input keep ids of different revisions
    apart even if an agency sends byte-identical documents for both (which the signature makes impossible
    anyway, since the revision is signed).
    """
    if not is_sha256_hex(received_sha256):
        raise ValueError("received_sha256 must be 64 lowercase hex digits")
    if not _VOUCHER_ID.match(voucher_id) or not is_revision(revision):
        raise ValueError(f"not a voucher revision: {voucher_id!r} revision {revision!r}")
    material = _RECEIPT_ID_DOMAIN + f"{voucher_id}\x00{revision}\x00{received_sha256}".encode("ascii")
    return "R-" + hashlib.sha256(material).hexdigest()[:32]


def build_receipt(verified: VerifiedVoucher, *, receipt_id: str, received_at: datetime.datetime) -> Receipt:
    """The receipt for a voucher that passed the whole check.

    Every value comes from ``verified``, i.e. from the signed voucher and the checked certificate; the
    caller supplies only the id (normally :func:`new_receipt_id`) and the time, since the core has no clock.
    """
    voucher = verified.voucher
    identity = verified.signer.identity
    return Receipt(
        receipt_id=receipt_id,
        voucher_id=voucher.voucher_id,
        revision=voucher.revision,
        agency=voucher.agency_code,
        received_sha256=verified.received_sha256,
        received_at=received_at,
        signer_serial=identity.serial_hex,
        signer_issuer=identity.issuer,
        signer_role=verified.signer.role,
        corrects=voucher.corrects,
    )


# --- writing -----------------------------------------------------------------------------------------------------

_sub = child_writer(NS)


def _format_time(value: datetime.datetime) -> str:
    """UTC with a ``Z``: one spelling per instant, whatever zone the caller's clock used."""
    return value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def receipt_element(receipt: Receipt) -> etree._Element:
    """The unsigned receipt as an element (schema-valid), ready for :func:`gateway.xmlsec.signing.sign_document`."""
    root = etree.Element(_Q + "Receipt", nsmap={None: NS})
    root.set("schemaVersion", SCHEMA_VERSION if receipt.action is None else ACTION_SCHEMA_VERSION)
    _sub(root, "ReceiptId", receipt.receipt_id)
    _sub(root, "VoucherId", receipt.voucher_id)
    _sub(root, "Revision", str(receipt.revision))
    _sub(root, "Agency", receipt.agency)
    _sub(root, "ReceivedSha256", receipt.received_sha256)
    _sub(root, "ReceivedAt", _format_time(receipt.received_at))
    _sub(root, "Status", receipt.status)
    _sub(root, "SignerSerial", receipt.signer_serial)
    _sub(root, "SignerIssuer", receipt.signer_issuer)
    _sub(root, "SignerRole", receipt.signer_role.value)
    if receipt.corrects is not None:
        corrects = _sub(root, "Corrects")
        _sub(corrects, "VoucherId", receipt.corrects.voucher_id)
        _sub(corrects, "Revision", str(receipt.corrects.revision))
    if receipt.action is not None:
        outcome = _sub(root, "Action")
        _sub(outcome, "Stage", receipt.action.stage.value)
        _sub(outcome, "Decision", receipt.action.decision)
        _sub(outcome, "VoucherStatus", receipt.action.voucher_status)
    return root


def receipt_xml(receipt: Receipt) -> bytes:
    """The unsigned receipt document (UTF-8, with an XML declaration)."""
    return etree.tostring(receipt_element(receipt), xml_declaration=True, encoding="UTF-8")


def sign_receipt(receipt: Receipt, key: SignerKey, cert: x509.Certificate,
                 signing_time: datetime.datetime) -> bytes:
    """The receipt signed by the gateway (enveloped XAdES-BES, the voucher profile): the bytes to store and send.

    Signed from the element we built rather than from serialised bytes: nothing untrusted is involved, so
    the hardened re-parse that :func:`sign_document` gives bytes would only cost time.
    """
    return sign_document(receipt_element(receipt), key, cert, signing_time)


# --- verifying (what an agency runs) ------------------------------------------------------------------------------

def verify_receipt(data: bytes, *, gateway_cert: x509.Certificate, now: datetime.datetime,
                   limits: XmlLimits = DEFAULT_LIMITS) -> Receipt:
    """Accept ``data`` as a receipt signed by the gateway whose certificate is ``gateway_cert``, or raise Refusal.

    The agency pins the gateway's certificate (obtained out of band, e.g. from the PKI) instead of trusting
    any certificate that chains to the CA: every agency system and the bank hold such certificates too, and
    a receipt signed by one of them proves nothing about what the gateway holds. The pin compares the whole
    DER encoding, not a name or serial that another certificate could share. A receipt verified after the
    gateway certificate expired is refused ``certificate-expired`` at that ``now``: verify receipts when
    they arrive and keep the result, as with any signature judged at a point in time.

    Codes: those of parsing (``xml-malformed``, ``xml-forbidden-construct``, ``too-large``, ``too-deep``),
    ``schema-invalid``, the signature profile and verification (``signature-*``, ``certificate-expired``,
    ``certificate-not-yet-valid``), and ``receipt-signer-unexpected``.
    """
    root = parse_untrusted(data, limits)
    problems = schema_problems(root, RECEIPT_SCHEMA)
    if problems:
        raise Refusal(problems)
    signature = verify_pinned(root, now=now, pinned=gateway_cert, code="receipt-signer-unexpected",
                              what="the gateway's")
    return read_receipt(signature.signed_root)


def read_receipt(root: etree._Element) -> Receipt:
    """The values of a schema-valid receipt element. In an agency's hands: only the verifier's signed root."""
    fields = {child.tag[len(_Q):]: child for child in root if isinstance(child.tag, str) and child.tag.startswith(_Q)}

    def text(name: str) -> str:
        return fields[name].text or ""

    corrects = None
    if "Corrects" in fields:
        ref = {c.tag[len(_Q):]: c.text or "" for c in fields["Corrects"] if isinstance(c.tag, str)}
        corrects = _voucher_ref(ref["VoucherId"], int(ref["Revision"]))
    action = None
    try:
        if "Action" in fields:
            parts = {c.tag[len(_Q):]: c.text or "" for c in fields["Action"] if isinstance(c.tag, str)}
            action = ActionOutcome(Role(parts["Stage"]), parts["Decision"], parts["VoucherStatus"])
        return Receipt(
            receipt_id=text("ReceiptId"),
            voucher_id=text("VoucherId"),
            revision=int(text("Revision")),
            agency=text("Agency"),
            received_sha256=text("ReceivedSha256"),
            received_at=_parse_time(fields["ReceivedAt"]),
            signer_serial=text("SignerSerial"),
            signer_issuer=text("SignerIssuer"),
            signer_role=Role(text("SignerRole")),
            corrects=corrects,
            status=text("Status"),
            action=action,
        )
    except ValueError as exc:
        # Schema-valid but inconsistent (a voucher id of another agency): refuse rather than crash.
        raise Refusal("schema-invalid", f"the receipt is inconsistent: {exc}") from None


def _voucher_ref(voucher_id: str, revision: int) -> VoucherRef:
    match = _VOUCHER_ID.match(voucher_id)
    if match is None:  # the schema's pattern is the same; kept for callers that skip the schema
        raise ValueError(f"{voucher_id!r} is not a voucher id")
    agency, year, number = match.groups()
    return VoucherRef(agency, int(year), number, revision)


def _parse_time(node: etree._Element) -> datetime.datetime:
    """xs:dateTime admits spellings Python does not (``24:00:00``, years past 9999): refuse those."""
    try:
        value = datetime.datetime.fromisoformat((node.text or "").strip())
    except ValueError:
        raise Refusal("schema-invalid", f"ReceivedAt {node.text!r} is not a date and time this gateway writes",
                      path=tree_path(node)) from None
    if value.tzinfo is None:
        raise Refusal("schema-invalid", "ReceivedAt must carry a time zone", path=tree_path(node))
    return value
