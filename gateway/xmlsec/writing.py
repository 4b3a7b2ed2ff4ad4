"""Writing our own XML documents (vouchers, receipts, actions, bank envelopes, sign-in challenges): the small
helpers they share."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from lxml import etree

ChildWriter = Callable[..., etree._Element]


def child_writer(namespace: str) -> ChildWriter:
    """``sub(parent, name, text=None)``: append an element ``name`` of ``namespace`` to ``parent``, with ``text``
    if given, and return it. Documents we write put every element in their one namespace."""
    prefix = "{%s}" % namespace

    def sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
        node = etree.SubElement(parent, prefix + name)
        if text is not None:
            node.text = text
        return node

    return sub


def utc_seconds_text(at: datetime.datetime) -> str:
    """An instant as xs:dateTime in UTC, to the second, with a ``Z``: one spelling per instant whatever zone the
    caller's clock used, so a time that is signed can also be compared as text."""
    return at.astimezone(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
