"""parse_untrusted: DTDs, entities, XInclude, processing instructions, size and depth caps, malformed input.

The static attack documents under tests/data/attacks/ are looped over in test_signature_attacks.py (through
the whole voucher check); the tests here pin down the parser's own behaviour, with small inline documents.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from lxml import etree

from gateway.errors import Refusal
from gateway.xmlsec.parsing import DEFAULT_LIMITS, XmlLimits, parse_untrusted

ATTACKS = Path(__file__).resolve().parent.parent / "data" / "attacks"
NS = "urn:taipei:treasury:voucher:1"


def refusal_of(data: bytes, limits: XmlLimits = DEFAULT_LIMITS, *, deadline: float = 10.0) -> Refusal:
    """The Refusal that parse_untrusted raises for ``data``, within ``deadline`` seconds (a hung parse fails)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["root"] = parse_untrusted(data, limits)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(deadline)
    assert not worker.is_alive(), f"parse_untrusted did not finish within {deadline}s"
    assert "root" not in outcome, "the document was accepted"
    error = outcome["error"]
    assert isinstance(error, Refusal), f"expected a Refusal, got {error!r}"
    return error


def nested(depth: int) -> bytes:
    """A document whose elements nest exactly ``depth`` levels (the root counts as 1)."""
    return b"<r>" + b"<a>" * (depth - 1) + b"x" + b"</a>" * (depth - 1) + b"</r>"


# --- DTDs and entities -------------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>
"""


def test_billion_laughs_is_a_forbidden_construct() -> None:
    refusal = refusal_of(BILLION_LAUGHS)
    assert refusal.code == "xml-forbidden-construct"
    assert "DTD" in refusal.message
    assert refusal.problems[0].line == 1
    assert "lollollol" not in str(refusal)


def test_billion_laughs_in_utf16_is_a_forbidden_construct() -> None:
    # libxml2 aborts the bomb itself ("amplification factor exceeded"); the code must still say DTD.
    assert refusal_of(BILLION_LAUGHS.decode("ascii").replace('"1.0"?>', '"1.0" encoding="UTF-16"?>')
                      .encode("utf-16")).code == "xml-forbidden-construct"


def test_internal_entity_declaration_alone_is_refused() -> None:
    refusal = refusal_of(b'<!DOCTYPE r [<!ENTITY name "Mallory">]><r>&name;</r>')
    assert refusal.code == "xml-forbidden-construct"
    assert "Mallory" not in str(refusal)


def test_bare_doctype_is_refused() -> None:
    assert refusal_of(b"<!DOCTYPE r><r/>").code == "xml-forbidden-construct"


def _passwd_fragments() -> list[str]:
    """Recognisable pieces of the local /etc/passwd (what an XXE would leak), or fixed markers if unreadable."""
    try:
        lines = [line for line in Path("/etc/passwd").read_text("utf-8", "replace").splitlines() if ":" in line]
    except OSError:
        lines = []
    return [line.split(":", 1)[0] + ":" + line.split(":", 2)[1] + ":" for line in lines[:5]] or ["root:x:"]


@pytest.mark.parametrize("doc", [
    b'<?xml version="1.0"?>\n<!DOCTYPE r [\n  <!ENTITY xxe SYSTEM "file:///etc/passwd">\n]>\n<r>&xxe;</r>',
    b'<!DOCTYPE r SYSTEM "file:///etc/passwd"><r/>',
    b'<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><r/>',
    b'<!DOCTYPE r PUBLIC "-//EVIL//DTD x//EN" "file:///etc/passwd"><r/>',
    b"""<!DOCTYPE r [
<!ENTITY % file SYSTEM "file:///etc/passwd">
<!ENTITY % eval "<!ENTITY &#x25; error SYSTEM 'file:///nonexistent/%file;'>">
%eval;
%error;
]><r/>""",
], ids=["general-entity", "external-subset", "parameter-entity", "public-id", "error-based"])
def test_external_entity_is_refused_and_never_leaks_the_file(doc: bytes) -> None:
    refusal = refusal_of(doc)
    assert refusal.code == "xml-forbidden-construct"
    rendered = str(refusal) + repr(refusal.problems)
    for fragment in _passwd_fragments():
        assert fragment not in rendered


def test_external_entity_is_never_expanded_into_the_tree(tmp_path: Path) -> None:
    # Even if a caller ignored the refusal, the entity must not have been read into the document.
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER", encoding="utf-8")
    doc = f'<!DOCTYPE r [<!ENTITY x SYSTEM "{secret.as_uri()}">]><r>&x;</r>'.encode()
    refusal = refusal_of(doc)
    assert refusal.code == "xml-forbidden-construct"
    assert "TOP-SECRET-MARKER" not in str(refusal)


def test_external_dtd_and_missing_dtd_are_refused_alike(tmp_path: Path) -> None:
    # Refusing with the same code whether or not the named file exists: no file-existence oracle.
    valid = tmp_path / "valid.dtd"
    valid.write_text('<!ENTITY leak "SECRET">', encoding="utf-8")
    not_a_dtd = tmp_path / "shadow"
    not_a_dtd.write_text("SECRET:x:0:0:SECRET:/root:/bin/sh\n", encoding="utf-8")
    absent = tmp_path / "absent.dtd"
    codes = set()
    for path in (valid, not_a_dtd, absent):
        for doc in (f'<!DOCTYPE r SYSTEM "{path.as_uri()}"><r/>',
                    f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{path.as_uri()}"> %p;]><r/>'):
            refusal = refusal_of(doc.encode())
            assert "SECRET" not in str(refusal)
            codes.add((refusal.code, refusal.message))
    assert codes == {("xml-forbidden-construct", "a document type declaration (DTD) is not allowed")}


def test_parameter_entity_on_an_endless_device_does_not_hang() -> None:
    # libxml2 used to open local files named by parameter entities even with load_dtd=False: /dev/urandom
    # then kept a worker reading forever. refusal_of fails the test if the parse does not finish.
    refusal = refusal_of(b'<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///dev/urandom"> %p;]><r/>', deadline=10.0)
    assert refusal.code == "xml-forbidden-construct"


def test_network_dtd_is_refused() -> None:
    refusal = refusal_of(b'<!DOCTYPE r SYSTEM "http://attacker.example.invalid/evil.dtd"><r/>')
    assert refusal.code == "xml-forbidden-construct"


def test_undeclared_entity_is_malformed() -> None:
    refusal = refusal_of(b"<r>\n&xxe;</r>")
    assert refusal.code == "xml-malformed"
    assert refusal.problems[0].line == 2


# --- XInclude and processing instructions ------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude"])
def test_xinclude_element_is_refused(namespace: str) -> None:
    doc = (f'<Voucher xmlns="{NS}" xmlns:xi="{namespace}">\n  <Header>\n'
           f'    <xi:include href="file:///etc/passwd" parse="text"/>\n  </Header>\n</Voucher>').encode()
    refusal = refusal_of(doc)
    assert refusal.code == "xml-forbidden-construct"
    assert "XInclude" in refusal.message
    assert refusal.problems[0].line == 3
    assert refusal.problems[0].path == "/Voucher/Header/include"


def test_xinclude_fallback_alone_is_refused() -> None:
    doc = b'<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:fallback>x</xi:fallback></r>'
    assert refusal_of(doc).code == "xml-forbidden-construct"


def test_xinclude_namespace_declared_but_unused_is_fine() -> None:
    root = parse_untrusted(b'<r xmlns:xi="http://www.w3.org/2001/XInclude"><a>x</a></r>')
    assert root.findtext("a") == "x"


@pytest.mark.parametrize("doc, line", [
    (b'<r>\n  <a>\n    <?php system("id"); ?>\n  </a>\n</r>', 3),
    (b'<?xml version="1.0"?>\n<?xml-stylesheet type="text/xsl" href="evil.xsl"?>\n<r/>', 2),
    (b"<r/>\n<?trailing pi?>", 2),
], ids=["inside", "before-root", "after-root"])
def test_processing_instruction_is_refused(doc: bytes, line: int) -> None:
    refusal = refusal_of(doc)
    assert refusal.code == "xml-forbidden-construct"
    assert "processing instruction" in refusal.message
    assert refusal.problems[0].line == line


def test_xml_declaration_is_not_a_processing_instruction() -> None:
    root = parse_untrusted(b'<?xml version="1.0" encoding="UTF-8"?>\n<r/>')
    assert root.tag == "r"


# --- size and depth ----------------------------------------------------------------------------------------------


def test_oversized_document_is_refused_before_parsing() -> None:
    doc = b"<r>" + b"x" * 1000 + b"</r>"
    refusal = refusal_of(doc, XmlLimits(max_bytes=len(doc) - 1))
    assert refusal.code == "too-large"
    assert refusal.http_status == 413
    # Size is checked first: even garbage of that size is "too-large", not "xml-malformed".
    assert refusal_of(b"<" * 2000, XmlLimits(max_bytes=1000)).code == "too-large"


def test_document_of_exactly_max_bytes_is_accepted() -> None:
    doc = b"<r>" + b"x" * 1000 + b"</r>"
    assert parse_untrusted(doc, XmlLimits(max_bytes=len(doc))).text == "x" * 1000


def test_too_many_elements_is_too_large() -> None:
    doc = b"<r>" + b"<a/>" * 50 + b"</r>"
    assert refusal_of(doc, XmlLimits(max_elements=50)).code == "too-large"
    assert len(parse_untrusted(doc, XmlLimits(max_elements=51))) == 50


def test_depth_limit_is_exact() -> None:
    limits = XmlLimits(max_depth=5)
    assert parse_untrusted(nested(5), limits) is not None
    refusal = refusal_of(nested(6), limits)
    assert refusal.code == "too-deep"
    assert refusal.problems[0].path == "/r" + "/a" * 5


def test_forty_deep_document_is_refused_by_default() -> None:
    assert DEFAULT_LIMITS.max_depth < 40
    refusal = refusal_of(nested(40))
    assert refusal.code == "too-deep"
    assert str(DEFAULT_LIMITS.max_depth) in refusal.message


def test_default_depth_limit_admits_its_own_maximum() -> None:
    # The limits must not refuse what the gateway itself expects: a voucher with its XAdES signature.
    assert parse_untrusted(nested(DEFAULT_LIMITS.max_depth)) is not None


# --- malformed and empty -----------------------------------------------------------------------------------------


def test_malformed_document_reports_its_line() -> None:
    doc = b'<?xml version="1.0"?>\n<Voucher>\n  <Header>\n    <AgencyCode>379000001A\n  </Header>\n</Voucher>\n'
    refusal = refusal_of(doc)
    assert refusal.code == "xml-malformed"
    assert refusal.problems[0].line == 5
    assert refusal.http_status == 422


@pytest.mark.parametrize("doc", [b"", b"   \n\t  ", b"\n"], ids=["empty", "whitespace", "newline"])
def test_empty_document_is_malformed(doc: bytes) -> None:
    refusal = refusal_of(doc)
    assert refusal.code == "xml-malformed"
    assert "empty" in refusal.message


@pytest.mark.parametrize("doc", [b"not xml at all", b"<r>", b"<r></s>", b"<r/><r/>", b"\xef\xbb\xbf"])
def test_not_well_formed_is_malformed(doc: bytes) -> None:
    refusal = refusal_of(doc)
    assert refusal.code == "xml-malformed"
    assert refusal.problems[0].line is not None


def test_text_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_untrusted("<r/>")  # type: ignore[arg-type]


# --- allowed -----------------------------------------------------------------------------------------------------


def test_comments_are_allowed_everywhere() -> None:
    doc = b"<!-- before -->\n<r><!-- inside --><a>1<!-- split -->2</a></r>\n<!-- after -->"
    root = parse_untrusted(doc)
    assert root.tag == "r"
    assert "".join(root.find("a").itertext()) == "12"
    assert [c.text for c in root.iter(etree.Comment)] == [" inside ", " split "]


def test_parsers_are_not_shared_between_calls() -> None:
    # Each call builds its own parser: a refused document must not poison the next parse.
    with pytest.raises(Refusal):
        parse_untrusted(BILLION_LAUGHS)
    assert parse_untrusted(b"<ok/>").tag == "ok"


def test_static_attack_files_are_present() -> None:
    # The parametrized loop over tests/data/attacks/ lives in test_signature_attacks.py; make sure it has input.
    names = {p.name.split("__", 1)[0] for p in ATTACKS.glob("*.xml")}
    assert {"xml-forbidden-construct", "xml-malformed", "too-deep"} <= names
