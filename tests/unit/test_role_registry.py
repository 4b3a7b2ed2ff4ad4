"""The role registry: pins, agencies, roles, windows, deputies, and refusing a bad file whole."""

from __future__ import annotations

import datetime

import pytest

from gateway.errors import Refusal
from gateway.trust.certificates import CertificateIdentity
from gateway.trust.registry import GrantKind, RegistryError, RoleRegistry
from gateway.trust.roles import Role

T0 = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
DAY = datetime.timedelta(days=1)
ISSUER = "OU=內政部憑證管理中心,O=行政院,C=TW"


def identity(serial: str = "0A1B", key: str = "ab" * 32) -> CertificateIdentity:
    return CertificateIdentity(issuer=ISSUER, serial_hex=serial, key_sha256=key, subject="CN=x,C=TW",
                               common_name="x", id_last_four=None)


REGISTRY = f"""
version = 1

[[grant]]
agency = "379000001A"
role = "reviewer"
person = "林雅婷"
cert_issuer = "{ISSUER}"
cert_serial = "0A1B"
valid_from = 2026-12-01T00:00:00+08:00
valid_to = 2027-12-01T00:00:00+08:00

[[grant]]
agency = "379000001A"
role = "reviewer"
person = "王美玲"
kind = "deputy"
acting_for = "林雅婷"
key_sha256 = "{'cd' * 32}"
valid_from = 2026-12-10T00:00:00+08:00
valid_to = 2026-12-15T00:00:00+08:00
"""


@pytest.fixture
def registry() -> RoleRegistry:
    return RoleRegistry.from_toml(REGISTRY)


def test_a_principal_is_authorised_by_issuer_and_serial(registry):
    grant = registry.authorise(identity(), "379000001A", Role.REVIEWER, T0 + DAY)
    assert (grant.person, grant.kind) == ("林雅婷", GrantKind.PRINCIPAL)


def test_leading_zeros_and_case_of_the_serial_do_not_matter(registry):
    assert registry.authorise(identity(serial="00a1b".upper()), "379000001A", Role.REVIEWER, T0 + DAY)


def test_the_same_serial_from_another_issuer_is_not_the_same_certificate(registry):
    other = CertificateIdentity(issuer="O=Other CA,C=TW", serial_hex="0A1B", key_sha256="ef" * 32,
                                subject="CN=x", common_name="x", id_last_four=None)
    with pytest.raises(Refusal, match="not in the role registry"):
        registry.authorise(other, "379000001A", Role.REVIEWER, T0 + DAY)


@pytest.mark.parametrize("agency, role, at, reason", [
    ("379000002A", Role.REVIEWER, T0 + DAY, "no role for agency"),
    ("379000001A", Role.HEAD, T0 + DAY, "registered as reviewer, not head"),
    ("379000001A", Role.REVIEWER, T0 - DAY, "not in force"),
    ("379000001A", Role.REVIEWER, T0 + 400 * DAY, "not in force"),
])
def test_refusals_say_why(registry, agency, role, at, reason):
    with pytest.raises(Refusal, match=reason) as exc:
        registry.authorise(identity(), agency, role, at)
    assert exc.value.code == "signer-not-authorised"


def test_a_deputy_acts_only_within_their_own_window(registry):
    deputy = identity(serial="FF", key="cd" * 32)
    grant = registry.authorise(deputy, "379000001A", Role.REVIEWER, T0 + 10 * DAY)
    assert (grant.kind, grant.acting_for) == (GrantKind.DEPUTY, "林雅婷")
    second = datetime.timedelta(seconds=1)
    assert registry.authorise(deputy, "379000001A", Role.REVIEWER, T0 + 9 * DAY)  # the window's first instant
    for outside in (T0 + 9 * DAY - second, T0 + 20 * DAY):
        with pytest.raises(Refusal, match="not in force"):
            registry.authorise(deputy, "379000001A", Role.REVIEWER, outside)
    # The window's end is exclusive.
    with pytest.raises(Refusal):
        registry.authorise(deputy, "379000001A", Role.REVIEWER, T0 + 14 * DAY)


@pytest.mark.parametrize("text, message", [
    ("version = 2", "version = 1"),
    ("version = 1\n[[grant]]\nagency='x'", "missing role"),
    ("version = 1\n[[grant]]\nagency='x'\nrole='boss'\nperson='p'\nkey_sha256='a'\n"
     "valid_from=2026-01-01T00:00:00Z\nvalid_to=2027-01-01T00:00:00Z", "boss"),
    ("version = 1\n[[grant]]\nagency='x'\nrole='head'\nperson='p'\n"
     "valid_from=2026-01-01T00:00:00Z\nvalid_to=2027-01-01T00:00:00Z", "pin a certificate"),
    ("version = 1\n[[grant]]\nagency='x'\nrole='head'\nperson='p'\nkey_sha256='a'\n"
     "valid_from=2026-01-01T00:00:00\nvalid_to=2027-01-01T00:00:00Z", "offset"),
    ("version = 1\n[[grant]]\nagency='x'\nrole='head'\nperson='p'\nkey_sha256='a'\n"
     "valid_from=2027-01-01T00:00:00Z\nvalid_to=2026-01-01T00:00:00Z", "after valid_from"),
    ("version = 1\n[[grant]]\nagency='x'\nrole='head'\nperson='p'\nkind='deputy'\nkey_sha256='a'\n"
     "valid_from=2026-01-01T00:00:00Z\nvalid_to=2027-01-01T00:00:00Z", "acting_for"),
    ("version = [", "not valid TOML"),
])
def test_a_bad_registry_is_refused_whole(text, message):
    with pytest.raises(RegistryError, match=message):
        RoleRegistry.from_toml(text)


def test_the_registry_knows_which_agencies_it_serves(registry):
    assert registry.agencies == frozenset({"379000001A"})
