"""Parse XML that came from outside, with everything dangerous switched off.

Every document the gateway reads from an agency or a bank passes through :func:`parse_untrusted` first:
no DTDs (so no entity expansion, internal or external), no network, no XInclude, libxml2's own hard
limits left on (no ``huge_tree``), and our own caps on size, depth and element count. A document that
breaks one of these is refused with a stable code before any schema or signature code sees it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from lxml import etree

from gateway.errors import Refusal

XINCLUDE_NAMESPACES = ("http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude")


@dataclass(frozen=True)
class XmlLimits:
    """Caps on an untrusted document. The defaults fit a payroll voucher of several thousand lines."""

    max_bytes: int = 8 * 1024 * 1024
    """Largest document accepted, in bytes, checked before parsing."""
    max_depth: int = 32
    """Deepest element nesting accepted; a voucher with its XAdES signature is about 10 deep."""
    max_elements: int = 200_000
    """Most elements accepted in one document."""


DEFAULT_LIMITS = XmlLimits()


class _NoExternalResources(etree.Resolver):
    """Answer every external resource libxml2 asks for with nothing.

    Even with ``load_dtd=False`` and ``no_network=True``, libxml2 still opens *local* files named by an
    external DTD subset (``<!DOCTYPE r SYSTEM "file:///...">``) or a parameter entity reference
    (``<!ENTITY % p SYSTEM "file:///dev/urandom"> %p;``): a file-existence oracle, and a hung worker on
    ``/dev/urandom``. With this resolver nothing is read; the DTD is then refused after parsing.
    """

    def resolve(self, system_url, public_id, context):
        return self.resolve_string("", context)


def hardened_parser() -> etree.XMLParser:
    """A new parser with DTDs, entities, network and huge trees off (one per parse: parsers keep state)."""
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        remove_comments=False,
        remove_pis=False,
        collect_ids=False,
    )
    parser.resolvers.add(_NoExternalResources())
    return parser


class _DoctypeSeen(Exception):
    pass


class _DoctypeSpotter:
    """A parser target that stops at the first document type declaration and builds nothing."""

    def doctype(self, name, public_id, system_url):
        raise _DoctypeSeen

    def start(self, tag, attrib):
        pass

    def end(self, tag):
        pass

    def data(self, data):
        pass

    def close(self):
        return None


def _declares_doctype(data: bytes) -> bool:
    """Whether ``data`` opens a DTD before it stops being well-formed.

    libxml2 aborts some DTDs itself (a billion-laughs bomb: "Maximum entity amplification factor exceeded")
    before lxml hands back a tree, so a failed parse alone would answer "xml-malformed" for what is a
    forbidden DTD. Run only after a parse failed; it stops at the DOCTYPE, before its internal subset.
    """
    parser = etree.XMLParser(target=_DoctypeSpotter(), resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False)
    parser.resolvers.add(_NoExternalResources())
    try:
        etree.fromstring(data, parser)
    except _DoctypeSeen:
        return True
    except etree.XMLSyntaxError:
        return False
    return False


def parse_untrusted(data: bytes, limits: XmlLimits = DEFAULT_LIMITS) -> etree._Element:
    """Parse ``data`` and return its root element, or raise :class:`Refusal`.

    A new parser per call: lxml parsers keep per-parse state and are not safe to share across threads.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("parse_untrusted takes bytes")
    if len(data) > limits.max_bytes:
        raise Refusal("too-large", f"document is {len(data)} bytes; at most {limits.max_bytes} are accepted")
    if not data.strip():
        raise Refusal("xml-malformed", "document is empty")
    try:
        root = etree.fromstring(bytes(data), parser=hardened_parser())
    except etree.XMLSyntaxError as exc:
        if _declares_doctype(bytes(data)):
            raise Refusal("xml-forbidden-construct", "a document type declaration (DTD) is not allowed",
                          line=1) from None
        line = exc.position[0] if exc.position else None
        raise Refusal("xml-malformed", f"not well-formed XML: {exc.msg}", line=line) from None
    tree = root.getroottree()
    docinfo = tree.docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise Refusal("xml-forbidden-construct", "a document type declaration (DTD) is not allowed", line=1)
    _check_structure(root, data, limits)
    return root


def _check_structure(root: etree._Element, data: bytes, limits: XmlLimits) -> None:
    """Refuse processing instructions, XInclude, and trees too deep or too large.

    Each check runs inside libxml2 (an XPath without predicates, or lxml's C-level ``iter``), so a 500-line
    payroll voucher costs well under a millisecond. Entity references cannot occur: with DTDs refused, an
    undeclared entity is a syntax error.
    """
    # Every element takes at least four bytes ("<a/>"), so only a document that large can hold too many.
    if len(data) > 4 * limits.max_elements and compiled_xpath("count(//*)")(root) > limits.max_elements:
        raise Refusal("too-large", f"document has more than {limits.max_elements} elements")
    too_deep = compiled_xpath("/*" * (limits.max_depth + 1))(root)
    if too_deep:
        raise Refusal("too-deep", f"elements nest deeper than {limits.max_depth} levels",
                      line=too_deep[0].sourceline, path=tree_path(too_deep[0]))
    forbidden = next(root.iter(etree.PI, *_XINCLUDE_TAGS), None)  # one pass over the tree for both
    if forbidden is not None and not isinstance(forbidden, etree._ProcessingInstruction):
        raise Refusal("xml-forbidden-construct", "XInclude is not allowed", line=forbidden.sourceline,
                      path=tree_path(forbidden))
    pi = forbidden
    if pi is None:
        pi = next((n for n in (*root.itersiblings(preceding=True), *root.itersiblings())
                   if isinstance(n, etree._ProcessingInstruction)), None)
    if pi is not None:
        raise Refusal("xml-forbidden-construct", "processing instructions are not allowed", line=pi.sourceline)


_XINCLUDE_TAGS = tuple(f"{{{ns}}}*" for ns in XINCLUDE_NAMESPACES)


def tree_path(node: etree._Element) -> str:
    """A readable XPath for ``node`` with local names, e.g. ``/Voucher/Payees/Line[3]/Amount``."""
    parts = []
    while node is not None:
        local = etree.QName(node).localname if isinstance(node.tag, str) else "node()"
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                local = f"{local}[{same.index(node) + 1}]"
        parts.append(local)
        node = parent
    return "/" + "/".join(reversed(parts))


_ID_LIKE = "@*[local-name()='Id' or local-name()='ID' or local-name()='id']"


def find_duplicate_ids(subtree: etree._Element,
                       also_attributes_of: etree._Element | None = None) -> list[tuple[str, int | None]]:
    """Id-like attribute values (Id, ID, id, xml:id, in any namespace) that occur more than once in
    ``subtree`` (and on ``also_attributes_of`` itself, without its descendants): (value, line) pairs.

    Duplicate ids let an attacker point a signature reference at one element while the reader finds
    another ("signature wrapping"); we refuse them outright rather than pick one. Callers pass the
    signature: the document schemas admit no Id-like attributes elsewhere, and scanning every attribute
    of a 500-line voucher would cost more than the rest of the profile check.
    """
    attrs = compiled_xpath(f"{_ID_LIKE} | .//{_ID_LIKE}")(subtree)
    if also_attributes_of is not None:
        attrs = compiled_xpath(_ID_LIKE)(also_attributes_of) + attrs
    seen: set[str] = set()
    dups = []
    for attr in attrs:
        value = str(attr)
        if value in seen:
            dups.append((value, _attribute_line(subtree, also_attributes_of, value)))
        else:
            seen.add(value)
    return dups


def _attribute_line(subtree: etree._Element, root: etree._Element | None, value: str) -> int | None:
    """Line of the last element carrying an Id-like attribute equal to ``value`` (error path only)."""
    found = (root if root is not None else subtree).xpath(f"//*[{_ID_LIKE} = $value]", value=value)
    return found[-1].sourceline if found else None


SCHEMA_COMPILE_LOCK = threading.Lock()
"""Held while libxml2 compiles any XML schema, ours or signxml's: its schema compiler is not thread-safe,
and two compilations at once abort the process (seen under tests/unit/test_concurrent_verification.py)."""

_compiled: dict[tuple, etree.XPath] = {}
_compiled_lock = threading.Lock()


def compiled_xpath(expression: str, namespaces: dict[str, str] | None = None) -> etree.XPath:
    """A compiled XPath (plain-str results), compiled once per process.

    Compiling costs several times more than evaluating on a small voucher. lxml's XPath objects take their
    own lock around each evaluation, so one object serves every thread; they are not kept per thread,
    because lxml objects tied to a worker thread that ends are a known source of crashes.
    """
    key = (expression, tuple(sorted((namespaces or {}).items())))
    xpath = _compiled.get(key)
    if xpath is None:
        with _compiled_lock:
            xpath = _compiled.get(key)
            if xpath is None:
                xpath = _compiled[key] = etree.XPath(expression, namespaces=namespaces, smart_strings=False)
    return xpath
