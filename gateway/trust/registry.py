"""Who may sign as which role for which agency, and when: the role registry (角色登錄).

A grant pins one certificate (issuer + serial, or the SHA-256 of its public key) to one role of one
agency for a window of time. Deputies (代理人) and authorised persons (授權人) are grants of their own with
their own windows, naming whom they stand in for. A signature counts only if some grant covers the
signer, the voucher's agency, the role and the signing time; anything else is refused.

Separation of duties (one person signs at most one stage of a voucher) has explicit, reviewable
exceptions: an ``[[exception]]`` entry lets one named person sign a given set of stages of one agency's
vouchers within a window (a tiny school whose head also releases). Nothing else relaxes the rule.

The registry is TOML so operators can read and review changes to it; :meth:`RoleRegistry.from_toml`
parses text (the adapter reads and reloads the file).
"""

from __future__ import annotations

import datetime
import enum
import tomllib
from dataclasses import dataclass

from gateway.errors import Refusal
from gateway.trust.certificates import CertificateIdentity
from gateway.trust.roles import Role


class GrantKind(enum.Enum):
    PRINCIPAL = "principal"
    DEPUTY = "deputy"  # 代理人
    AUTHORISED = "authorised"  # 授權人


@dataclass(frozen=True)
class Grant:
    agency: str
    role: Role
    person: str
    kind: GrantKind
    valid_from: datetime.datetime
    valid_to: datetime.datetime
    cert_issuer: str | None = None
    cert_serial_hex: str | None = None
    key_sha256: str | None = None
    acting_for: str | None = None

    def matches(self, identity: CertificateIdentity) -> bool:
        if self.key_sha256 is not None and self.key_sha256.lower() == identity.key_sha256:
            return True
        return (self.cert_serial_hex is not None and self.cert_issuer is not None
                and self.cert_serial_hex.upper().lstrip("0") == identity.serial_hex.lstrip("0")
                and self.cert_issuer == identity.issuer)

    def covers(self, at: datetime.datetime) -> bool:
        return self.valid_from <= at < self.valid_to


@dataclass(frozen=True)
class DutyException:
    """A policy exception to separation of duties: ``person`` may sign all of ``roles`` on one voucher of
    ``agency`` while the window lasts. ``reason`` is mandatory so the exception explains itself in review."""

    agency: str
    person: str
    roles: frozenset[Role]
    reason: str
    valid_from: datetime.datetime
    valid_to: datetime.datetime

    def permits(self, agency: str, person: str, first: Role, second: Role, at: datetime.datetime) -> bool:
        return (self.agency == agency and self.person == person and first in self.roles and second in self.roles
                and self.valid_from <= at < self.valid_to)


class RegistryError(ValueError):
    """The registry file itself is wrong; raised at load time so a bad edit never half-applies."""


def _aware(value, where: str) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise RegistryError(f"{where}: times must carry a UTC offset")
        return value
    if isinstance(value, datetime.date):
        raise RegistryError(f"{where}: give a date and time with offset, not a bare date")
    raise RegistryError(f"{where}: not a date-time: {value!r}")


def _grant(raw: dict, index: int) -> Grant:
    where = f"grant #{index + 1}"
    try:
        role = Role(raw["role"])
        kind = GrantKind(raw.get("kind", "principal"))
        grant = Grant(
            agency=str(raw["agency"]),
            role=role,
            person=str(raw["person"]),
            kind=kind,
            valid_from=_aware(raw["valid_from"], where),
            valid_to=_aware(raw["valid_to"], where),
            cert_issuer=raw.get("cert_issuer"),
            cert_serial_hex=raw.get("cert_serial"),
            key_sha256=raw.get("key_sha256"),
            acting_for=raw.get("acting_for"),
        )
    except KeyError as exc:
        raise RegistryError(f"{where}: missing {exc.args[0]}") from None
    except ValueError as exc:
        raise RegistryError(f"{where}: {exc}") from None
    if grant.key_sha256 is None and (grant.cert_issuer is None or grant.cert_serial_hex is None):
        raise RegistryError(f"{where}: pin a certificate by key_sha256 or by cert_issuer + cert_serial")
    if grant.valid_to <= grant.valid_from:
        raise RegistryError(f"{where}: valid_to must be after valid_from")
    if kind is not GrantKind.PRINCIPAL and not grant.acting_for:
        raise RegistryError(f"{where}: a {kind.value} grant must name acting_for")
    return grant


def _exception(raw: dict, index: int) -> DutyException:
    where = f"exception #{index + 1}"
    try:
        roles = frozenset(Role(value) for value in raw["roles"])
        exception = DutyException(agency=str(raw["agency"]), person=str(raw["person"]), roles=roles,
                                  reason=str(raw["reason"]).strip(), valid_from=_aware(raw["valid_from"], where),
                                  valid_to=_aware(raw["valid_to"], where))
    except KeyError as exc:
        raise RegistryError(f"{where}: missing {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{where}: {exc}") from None
    if len(exception.roles) < 2:
        raise RegistryError(f"{where}: an exception names at least two roles one person may combine")
    if not exception.reason:
        raise RegistryError(f"{where}: say why (reason)")
    if exception.valid_to <= exception.valid_from:
        raise RegistryError(f"{where}: valid_to must be after valid_from")
    return exception


class RoleRegistry:
    def __init__(self, grants: list[Grant], exceptions: list[DutyException] = ()) -> None:
        self.grants = tuple(grants)
        self.exceptions = tuple(exceptions)
        self.agencies = frozenset(grant.agency for grant in self.grants)
        """Every agency some grant names: the agencies the gateway serves."""
        self._by_key: dict[str, list[Grant]] = {}
        for grant in self.grants:
            self._by_key.setdefault(grant.key_sha256 or grant.cert_serial_hex.upper().lstrip("0"), []).append(grant)

    @classmethod
    def from_toml(cls, text: str) -> RoleRegistry:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RegistryError(f"the registry is not valid TOML: {exc}") from None
        if data.get("version") != 1:
            raise RegistryError("the registry must say version = 1")
        return cls([_grant(raw, i) for i, raw in enumerate(data.get("grant", []))],
                   [_exception(raw, i) for i, raw in enumerate(data.get("exception", []))])

    def permits_combined(self, agency: str, person: str, first: Role, second: Role, at: datetime.datetime) -> bool:
        """Whether an explicit exception lets ``person`` sign both ``first`` and ``second`` for ``agency``."""
        return any(e.permits(agency, person, first, second, at) for e in self.exceptions)

    def grants_for(self, identity: CertificateIdentity) -> list[Grant]:
        candidates = self._by_key.get(identity.key_sha256, []) + self._by_key.get(identity.serial_hex.lstrip("0"), [])
        return [g for g in dict.fromkeys(candidates) if g.matches(identity)]

    def authorise(self, identity: CertificateIdentity, agency: str, role: Role, at: datetime.datetime) -> Grant:
        """The grant that lets ``identity`` act as ``role`` for ``agency`` at ``at``; else refuse, saying why."""
        grants = self.grants_for(identity)
        if not grants:
            raise Refusal("signer-not-authorised", f"the certificate of {identity.common_name or identity.subject} "
                          "is not in the role registry")
        for_agency = [g for g in grants if g.agency == agency]
        if not for_agency:
            raise Refusal("signer-not-authorised", f"the signer holds no role for agency {agency}")
        for_role = [g for g in for_agency if g.role is role]
        if not for_role:
            held = ", ".join(sorted({g.role.value for g in for_agency}))
            raise Refusal("signer-not-authorised", f"the signer is registered as {held}, not {role.value}, "
                          f"for agency {agency}")
        for grant in for_role:
            if grant.covers(at):
                return grant
        windows = "; ".join(f"{g.kind.value} {g.valid_from.isoformat()} to {g.valid_to.isoformat()}" for g in for_role)
        raise Refusal("signer-not-authorised", f"at {at.isoformat()} the signer's {role.value} grant for {agency} "
                      f"is not in force ({windows})")
