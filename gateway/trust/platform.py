"""The certificate platform (憑證認證平台): trust, revocation and the role registry behind one call.

Adapters build one platform per process (see adapters/serve/bootstrap.py) and ask it, for a certificate and a
purpose, "may this party act now?". The answer carries the revocation evidence used, so the audit log
can say why a signature was believed, and a soft-fail flag when the deployment allowed one.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509

from gateway.trust.certificates import Purpose, TrustStore, ValidatedCertificate
from gateway.trust.registry import RoleRegistry
from gateway.trust.revocation import RevocationAnswer, RevocationChecker


@dataclass(frozen=True)
class CheckedCertificate:
    validated: ValidatedCertificate
    revocation: tuple[RevocationAnswer, ...]  # one per non-root certificate of the chain, leaf first

    @property
    def soft_failed(self) -> bool:
        return any(a.soft_failed for a in self.revocation)


class CertificatePlatform:
    def __init__(self, trust: TrustStore, revocation: RevocationChecker, registry: RoleRegistry) -> None:
        self.trust = trust
        self.revocation = revocation
        self.registry = registry

    def replace_registry(self, registry: RoleRegistry) -> None:
        """Swap in a reloaded registry; readers see either the old or the new one, never a mix."""
        self.registry = registry

    def check(self, cert: x509.Certificate, purpose: Purpose, now: datetime.datetime) -> CheckedCertificate:
        """Validate the chain for ``purpose`` and the revocation status of every certificate below the root."""
        validated = self.trust.validate(cert, purpose, now)
        chain = validated.chain
        answers = tuple(self.revocation.require_good(chain[i], chain[i + 1], now) for i in range(len(chain) - 1))
        return CheckedCertificate(validated, answers)
