"""Map between :class:`~gateway.vouchers.model.Voucher` and its XML (``schemas/voucher.xsd``).

``read_voucher`` expects an element that already passed the schema, and in the gateway an element that
the signature verifier returned as signed; it reads element text only (comments were excised by
canonicalization), so what it returns is exactly what the signer signed.
"""

from __future__ import annotations

import copy
import datetime

from lxml import etree

from gateway.vouchers.model import (
    DocumentType,
    Notice,
    NoticeChannel,
    ObjectClass,
    PayeeIdType,
    PayeeLine,
    PaymentMethod,
    PaymentMethodKind,
    Urgency,
    Voucher,
    VoucherRef,
)
from gateway.xmlsec.parsing import XmlLimits, compiled_xpath, parse_untrusted
from gateway.xmlsec.writing import child_writer

NS = "urn:taipei:treasury:voucher:1"
_Q = "{%s}" % NS


def _q(name: str) -> str:
    return _Q + name


def _value(el: etree._Element) -> str:
    """Element text. Canonical signed documents have no comments, so ``.text`` is the whole value; for
    other trees (drafts being validated) the text around any comment is joined, as canonicalization does."""
    if len(el) == 0:
        return el.text or ""
    return "".join(el.itertext())


def _fields(parent: etree._Element) -> dict[str, etree._Element]:
    """Child elements by local name, in one pass (the schema guarantees each occurs at most once)."""
    out = {}
    for child in parent:
        tag = child.tag
        if isinstance(tag, str):
            out[tag[_NS_LEN:]] = child
    return out


_NS_LEN = len(_Q)


def _read_ref(node: etree._Element) -> VoucherRef:
    f = _fields(node)
    return VoucherRef(_value(f["AgencyCode"]), int(_value(f["FiscalYear"])), _value(f["VoucherNumber"]),
                      int(_value(f["Revision"])))


def _read_method(node: etree._Element) -> PaymentMethod:
    choice = next(c for c in node if isinstance(c.tag, str))
    kind = PaymentMethodKind(choice.tag[_NS_LEN:])
    if kind is PaymentMethodKind.TREASURY_CHEQUE:
        f = _fields(choice)
        return PaymentMethod(kind, _value(f["Delivery"]), _value(f["Reason"]))
    return PaymentMethod(kind)


_CHANNELS = {c.value: c for c in NoticeChannel}
_ID_TYPES = {t.value: t for t in PayeeIdType}


# The six required fields open every Line, in this order (schemas/voucher.xsd, PayeeLineType).
_LINE_FIELDS = ("PayeeName", "PayeeId", "BankCode", "BranchCode", "AccountNumber", "Amount")
_XNS = {"v": NS}


def _column(payees: etree._Element, expression: str) -> list:
    return compiled_xpath(expression, _XNS)(payees)


def _read_notices(payees: etree._Element) -> dict[str, Notice]:
    """Deposit notices by line number (a payroll voucher has hundreds; most vendor lines have one)."""
    notices: dict[str, Notice] = {}
    for choice in _column(payees, "v:Line/v:Notice/v:*"):
        number = choice.getparent().getparent().get("number")
        channel = _CHANNELS[choice.tag[_NS_LEN:]]
        if channel is NoticeChannel.POST:
            f = _fields(choice)
            notices[number] = Notice(channel, _value(f["Address"]), _value(f["PostCode"]))
        else:
            notices[number] = Notice(channel, _value(choice))
    return notices


def _read_lines(payees: etree._Element) -> tuple[PayeeLine, ...]:
    """All payee lines, read in a handful of XPath evaluations inside libxml2.

    One XPath returns the text of the six required fields of every line, in document order: the schema
    makes each present, single, non-empty and in a fixed order, and the caller guarantees no comment
    splits a text node, so the list is exactly six strings per line. Touching each element from Python
    instead costs several times more on a payroll voucher of hundreds of lines.
    """
    numbers = _column(payees, "v:Line/@number")
    id_types = _column(payees, "v:Line/v:PayeeId/@type")
    values = _column(payees, f"v:Line/v:*[position() <= {len(_LINE_FIELDS)}]/text()")
    if len(values) != len(_LINE_FIELDS) * len(numbers) or len(id_types) != len(numbers):
        raise ValueError("payee lines do not match the schema")
    notices = _read_notices(payees)
    memos = {m.getparent().get("number"): _value(m) for m in _column(payees, "v:Line/v:Memo")}
    fields = iter(values)
    return tuple(
        PayeeLine(number=int(number), payee_name=name, payee_id_type=_ID_TYPES[id_type], payee_id=payee_id,
                  bank_code=bank, branch_code=branch, account_number=account, amount=int(amount),
                  notice=notices.get(number), memo=memos.get(number))
        for number, id_type, (name, payee_id, bank, branch, account, amount)
        in zip(numbers, id_types, zip(fields, fields, fields, fields, fields, fields))
    )


def read_voucher(root: etree._Element) -> Voucher:
    """Build a Voucher from a schema-valid ``Voucher`` element.

    Comments are excised by canonicalization, so a signed document has none; a draft that has some is
    read from a copy with the comments removed (their surrounding text joined, as canonicalization does).
    """
    if root.tag != _q("Voucher"):
        raise ValueError(f"not a voucher: {root.tag}")
    if compiled_xpath("boolean(.//comment())")(root):
        root = copy.deepcopy(root)
        etree.strip_tags(root, etree.Comment)
        # libxml2 leaves the text on either side of a removed comment as two nodes; a round trip joins them.
        root = etree.fromstring(etree.tostring(root), etree.XMLParser(resolve_entities=False, no_network=True))
    parts = _fields(root)
    h = _fields(parts["Header"])
    control = _fields(parts["Control"])
    corrects = h.get("Corrects")
    return Voucher(
        agency_code=_value(h["AgencyCode"]),
        fiscal_year=int(_value(h["FiscalYear"])),
        voucher_number=_value(h["VoucherNumber"]),
        revision=int(_value(h["Revision"])),
        corrects=None if corrects is None else _read_ref(corrects),
        document_type=DocumentType(_value(h["DocumentType"])),
        payment_method=_read_method(h["PaymentMethod"]),
        urgency=Urgency(_value(h["Urgency"])),
        budget_subject=_value(h["BudgetSubject"]),
        object_class=ObjectClass(_value(h["ObjectClass"])),
        purpose=_value(h["Purpose"]),
        prepared_on=datetime.date.fromisoformat(_value(h["PreparedOn"])),
        lines=_read_lines(parts["Payees"]),
        line_count=int(_value(control["LineCount"])),
        total_amount=int(_value(control["TotalAmount"])),
        schema_version=root.get("schemaVersion"),
    )


_sub = child_writer(NS)


STORED_LIMITS = XmlLimits(max_bytes=64 * 1024 * 1024, max_depth=64, max_elements=10_000_000)
"""Stored vouchers passed the intake limits already; these only keep a re-parse itself bounded."""


def read_stored_voucher(data: bytes) -> Voucher:
    """A voucher the store holds (verified at intake), read again for a later step: the treasury checks,
    batching. Parsed with the hardened parser all the same: stored bytes are still bytes from outside."""
    return read_voucher(parse_untrusted(data, STORED_LIMITS))


def _write_ref(parent: etree._Element, name: str, ref: VoucherRef) -> None:
    node = _sub(parent, name)
    _sub(node, "AgencyCode", ref.agency_code)
    _sub(node, "FiscalYear", str(ref.fiscal_year))
    _sub(node, "VoucherNumber", ref.voucher_number)
    _sub(node, "Revision", str(ref.revision))


def voucher_element(v: Voucher) -> etree._Element:
    """The unsigned XML element for ``v`` (in schema order)."""
    root = etree.Element(_q("Voucher"), nsmap={None: NS})
    root.set("schemaVersion", v.schema_version)
    header = _sub(root, "Header")
    _sub(header, "AgencyCode", v.agency_code)
    _sub(header, "FiscalYear", str(v.fiscal_year))
    _sub(header, "VoucherNumber", v.voucher_number)
    _sub(header, "Revision", str(v.revision))
    if v.corrects is not None:
        _write_ref(header, "Corrects", v.corrects)
    _sub(header, "DocumentType", v.document_type.value)
    method = _sub(_sub(header, "PaymentMethod"), v.payment_method.kind.value)
    if v.payment_method.kind is PaymentMethodKind.TREASURY_CHEQUE:
        _sub(method, "Delivery", v.payment_method.cheque_delivery)
        _sub(method, "Reason", v.payment_method.cheque_reason)
    _sub(header, "Urgency", v.urgency.value)
    _sub(header, "BudgetSubject", v.budget_subject)
    _sub(header, "ObjectClass", v.object_class.value)
    _sub(header, "Purpose", v.purpose)
    _sub(header, "PreparedOn", v.prepared_on.isoformat())
    payees = _sub(root, "Payees")
    for line in v.lines:
        node = _sub(payees, "Line")
        node.set("number", str(line.number))
        _sub(node, "PayeeName", line.payee_name)
        _sub(node, "PayeeId", line.payee_id).set("type", line.payee_id_type.value)
        _sub(node, "BankCode", line.bank_code)
        _sub(node, "BranchCode", line.branch_code)
        _sub(node, "AccountNumber", line.account_number)
        _sub(node, "Amount", str(line.amount))
        if line.notice is not None:
            notice = _sub(node, "Notice")
            if line.notice.channel is NoticeChannel.POST:
                post = _sub(notice, "Post")
                _sub(post, "PostCode", line.notice.post_code)
                _sub(post, "Address", line.notice.address)
            else:
                _sub(notice, line.notice.channel.value, line.notice.address)
        if line.memo is not None:
            _sub(node, "Memo", line.memo)
    control = _sub(root, "Control")
    _sub(control, "LineCount", str(v.line_count))
    _sub(control, "TotalAmount", str(v.total_amount))
    return root


def voucher_to_xml(v: Voucher) -> bytes:
    """Serialise an unsigned voucher as UTF-8 XML bytes, with declaration and indentation for people."""
    root = voucher_element(v)
    etree.indent(root, space="  ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
