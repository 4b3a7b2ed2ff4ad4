"""The XAdES signed properties and the KeyInfo are covered by the signature too: changing any of them after
signing is refused. This guards ``_OwnTreeVerifier._verify_reference``, which resolves these internal
references inside the signature rather than in a copy of the whole document."""

from __future__ import annotations

import pytest
from lxml import etree

from gateway.errors import Refusal
from gateway.trust.roles import Role
from gateway.vouchers.check import check_signed_voucher
from gateway.xmlsec.profile import NSMAP

from ..conftest import AGENCY_A, NOW


def _mutated(signed: bytes, xpath: str, change) -> bytes:
    root = etree.fromstring(signed)
    nodes = root.xpath(xpath, namespaces=NSMAP)
    assert len(nodes) == 1, xpath
    change(nodes[0])
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _set_text(value: str):
    def change(node):
        node.text = value
    return change


MUTATIONS = {
    "signing-time": ("//xades:SigningTime", _set_text("2020-01-01T00:00:00+00:00")),
    "signing-certificate-digest": ("//xades:SigningCertificateV2//ds:DigestValue",
                                   _set_text("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
    "data-object-description": ("//xades:DataObjectFormat/xades:Description", _set_text("something else")),
    "key-info-certificate-whitespace": ("//ds:KeyInfo//ds:X509Certificate",
                                        lambda node: setattr(node, "text", " " + node.text)),
    "key-info-extra-attribute": ("//ds:KeyInfo/ds:X509Data", lambda node: node.set("note", "x")),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_change_inside_the_signed_internal_parts_is_refused(name, pki, factory, banks, sign_voucher):
    signed = sign_voucher(factory.voucher(AGENCY_A, today=NOW.date()))
    platform = pki.platform()
    assert check_signed_voucher(signed, platform=platform, banks=banks, role=Role.PREPARER, now=NOW)
    xpath, change = MUTATIONS[name]
    with pytest.raises(Refusal) as exc:
        check_signed_voucher(_mutated(signed, xpath, change), platform=platform, banks=banks, role=Role.PREPARER,
                             now=NOW)
    assert exc.value.code == "signature-invalid"
