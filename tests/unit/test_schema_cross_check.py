"""Two independent XSD validators must agree on every voucher: lxml (libxml2) on the hot path, xmlschema
(pure Python, a separate implementation) as the cross-check.

This is where xmlschema earns its cost here: it is ~40-60x slower than lxml on a payroll voucher (see
BENCHMARKS.md), far too slow per request, but a disagreement between the two would expose a libxml2
quirk or a schema construct that one of them reads differently before an agency trips over it.
"""

from __future__ import annotations

import functools

import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.validation import schema_problems
from schemas import schema_path

from .test_voucher_roundtrip import vouchers

# Mutations that each break one XSD rule (or none: the first keeps the voucher valid).
MUTATIONS = [
    ("none", lambda x: x),
    ("amount-fraction", lambda x: x.replace(b"</Amount>", b".5</Amount>", 1)),
    ("amount-leading-zero", lambda x: x.replace(b"<Amount>", b"<Amount>0", 1)),
    ("bank-code-letters", lambda x: x.replace(b"<BankCode>", b"<BankCode>A", 1)),
    ("unknown-urgency", lambda x: x.replace(b"<Urgency>ordinary<", b"<Urgency>soon<", 1)
     .replace(b"<Urgency>urgent<", b"<Urgency>soon<", 1)),
    ("extra-attribute", lambda x: x.replace(b"<Line ", b'<Line Id="x" ', 1)),
    ("missing-purpose", lambda x: x.replace(b"<Purpose>", b"<Ignored>", 1).replace(b"</Purpose>", b"</Ignored>", 1)),
    ("budget-subject-short", lambda x: x.replace(b"<BudgetSubject>", b"<BudgetSubject>X", 1)),
    ("purpose-leading-space", lambda x: x.replace(b"<Purpose>", b"<Purpose> ", 1)),
]


@functools.cache
def _xmlschema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(schema_path("voucher.xsd")))


@settings(max_examples=30, deadline=None)
@given(voucher=vouchers(), mutation=st.sampled_from(MUTATIONS))
def test_lxml_and_xmlschema_agree(voucher, mutation) -> None:
    name, mutate = mutation
    data = mutate(voucher_to_xml(voucher))
    root = etree.fromstring(data)
    lxml_valid = not schema_problems(root, "voucher.xsd")
    assert lxml_valid == _xmlschema().is_valid(root), name
    if name == "none":
        assert lxml_valid
