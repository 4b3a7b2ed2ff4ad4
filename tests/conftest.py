"""Shared fixtures: one test PKI per session, and helpers to sign and check vouchers against it."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.trust.certificates import TrustStore
from gateway.trust.platform import CertificatePlatform
from gateway.trust.registry import RoleRegistry
from gateway.trust.revocation import RevocationChecker
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.pki.layout import init_pki, load_cert, load_key
from simulators.voucher_factory import VoucherFactory

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
AGENCY_A = "379000001A"
AGENCY_B = "379000002A"


@dataclass
class Pki:
    """The session's test PKI: manifest paths plus loaded certificates and keys."""

    dir: Path
    manifest: dict

    def person(self, agency: str, role: str):
        entry = self.manifest["agencies"][agency]["people"][role]
        return load_key(Path(entry["key"])), load_cert(Path(entry["cert"]))

    @property
    def root(self):
        return load_cert(Path(self.manifest["root"]["cert"]))

    @property
    def intermediate(self):
        return load_cert(Path(self.manifest["intermediate"]["cert"]))

    def crl_fetcher(self):
        """Reads the PKI folder's CRLs, as `vgw voucher verify --pki DIR` does."""
        root_subject = self.root.subject

        def fetch(issuer, cert):
            which = "root" if issuer.subject == root_subject else "intermediate"
            return (self.dir / "crl" / f"{which}.crl").read_bytes()
        return fetch

    def platform(self, *, registry_text: str | None = None, **revocation) -> CertificatePlatform:
        if not revocation:
            revocation = {"crl_fetcher": self.crl_fetcher()}
        registry = RoleRegistry.from_toml(registry_text or Path(self.manifest["registry"]).read_text("utf-8"))
        return CertificatePlatform(TrustStore([self.root], [self.intermediate]), RevocationChecker(**revocation),
                                   registry)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    manifest = init_pki(directory, agencies=2, now=NOW)
    return Pki(directory, manifest)


@pytest.fixture(scope="session")
def gateway_pair(pki):
    """The gateway's signing key and certificate (receipts, transfer messages)."""
    entry = pki.manifest["gateway"]
    return load_key(Path(entry["key"])), load_cert(Path(entry["cert"]))


@pytest.fixture(scope="session")
def bank_pair(pki):
    """The treasury agent bank's signing key and certificate (status reports, notifications)."""
    entry = pki.manifest["bank"]
    return load_key(Path(entry["key"])), load_cert(Path(entry["cert"]))


@pytest.fixture(scope="session")
def banks() -> BankDirectory:
    return BankDirectory.shipped()


@pytest.fixture
def factory(banks) -> VoucherFactory:
    return VoucherFactory(banks, seed=7)


@pytest.fixture
def sign_voucher(pki):
    """sign_voucher(voucher_or_bytes, agency=AGENCY_A, role="preparer", at=NOW) -> signed bytes."""

    def sign(voucher, agency: str = AGENCY_A, role: str = "preparer", at: datetime.datetime = NOW) -> bytes:
        key, cert = pki.person(agency, role)
        data = voucher if isinstance(voucher, bytes) else voucher_to_xml(voucher)
        return sign_document(data, key, cert, at)
    return sign
