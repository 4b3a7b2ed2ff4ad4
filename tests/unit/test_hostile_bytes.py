"""Whatever bytes arrive, the check ends in exactly one of two ways: the voucher as signed, or a Refusal.

No other exception may escape (it would become a 500 and a traceback in a log), and no damaged document may
be accepted with values other than the signed ones.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import Refusal
from gateway.trust.roles import Role
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.check import check_signed_voucher, validate_document
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.voucher_factory import VoucherFactory

from ..conftest import AGENCY_A, NOW


def _damage(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "splice"]))
    at = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1:]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 64)):]
    other = draw(st.integers(0, len(data) - 1))
    return data[:at] + data[other:other + draw(st.integers(1, 200))] + data[at:]


@pytest.fixture(scope="module")
def genuine(pki):
    """One voucher, signed once: every example damages the same bytes (hypothesis needs that to shrink)."""
    voucher = VoucherFactory(BankDirectory.shipped(), seed=99).voucher(AGENCY_A, today=NOW.date(), lines=2)
    key, cert = pki.person(AGENCY_A, "preparer")
    return voucher, sign_document(voucher_to_xml(voucher), key, cert, NOW), pki.platform()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_vouchers_are_refused_or_read_as_signed(genuine, banks, data):
    voucher, signed, platform = genuine
    damaged = _damage(signed, data.draw)
    try:
        result = check_signed_voucher(damaged, platform=platform, banks=banks, role=Role.PREPARER, now=NOW)
    except Refusal as refusal:
        assert refusal.problems and all(p.code for p in refusal.problems)
        return
    # Accepted: only possible for damage the signature does not cover (e.g. whitespace outside the root),
    # and then the values must be exactly the signed ones.
    assert result.voucher == voucher


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=4096))
def test_arbitrary_bytes_are_refused_by_validate_with_codes(banks, blob):
    voucher, problems = validate_document(blob, today=NOW.date(), banks=banks)
    assert voucher is None and problems and all(p.code for p in problems)
