"""Writing our own XML documents (vouchers, receipts, actions): one small helper they all share."""

from __future__ import annotations

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
