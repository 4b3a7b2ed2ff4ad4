"""Composition root: builds the core's objects from configuration. Nothing connects at import time.

Trust configuration is a set of files: root and intermediate certificates, the role registry (TOML),
and where revocation evidence comes from (CRL files and/or the OCSP URLs in certificates).
``PlatformConfig.from_pki_dir`` reads a folder as ``vgw pki init`` lays it out.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from adapters.serve.revocation_fetchers import FileCrlFetcher, HttpOcspFetcher
from gateway.trust.certificates import TrustStore
from gateway.trust.platform import CertificatePlatform
from gateway.trust.registry import RegistryError, RoleRegistry
from gateway.trust.revocation import DEFAULT_MAX_CACHE_AGE, RevocationChecker


class ConfigError(Exception):
    """The configuration names a file that is missing or unreadable."""


@dataclass(frozen=True)
class PlatformConfig:
    roots: tuple[Path, ...]
    intermediates: tuple[Path, ...]
    registry: Path
    crl_dir: Path | None = None
    use_ocsp: bool = False
    soft_fail: bool = False
    ocsp_timeout: float = 5.0
    revocation_max_age: float = DEFAULT_MAX_CACHE_AGE.total_seconds()
    """Seconds a revocation answer or CRL is reused at most (also bounded by its nextUpdate)."""

    @classmethod
    def from_pki_dir(cls, directory: Path, *, use_ocsp: bool = False, soft_fail: bool = False,
                     revocation_max_age: float = DEFAULT_MAX_CACHE_AGE.total_seconds()) -> PlatformConfig:
        base = Path(directory)
        return cls(roots=(base / "root/cert.pem",), intermediates=(base / "intermediate/cert.pem",),
                   registry=base / "registry.toml", crl_dir=base / "crl", use_ocsp=use_ocsp, soft_fail=soft_fail,
                   revocation_max_age=revocation_max_age)


def load_certificates(paths: tuple[Path, ...]) -> list[x509.Certificate]:
    certs = []
    for path in paths:
        try:
            certs.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
        except FileNotFoundError:
            raise ConfigError(f"certificate file not found: {path}") from None
        except ValueError as exc:
            raise ConfigError(f"not a PEM certificate file: {path}: {exc}") from None
    return certs


def load_registry(path: Path) -> RoleRegistry:
    try:
        return RoleRegistry.from_toml(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"role registry not found: {path}") from None
    except RegistryError as exc:
        raise ConfigError(f"role registry {path}: {exc}") from None


def build_platform(config: PlatformConfig) -> CertificatePlatform:
    trust = TrustStore(load_certificates(config.roots), load_certificates(config.intermediates))
    revocation = RevocationChecker(
        ocsp_fetcher=HttpOcspFetcher(timeout=config.ocsp_timeout) if config.use_ocsp else None,
        crl_fetcher=FileCrlFetcher(config.crl_dir) if config.crl_dir is not None else None,
        soft_fail=config.soft_fail,
        max_cache_age=datetime.timedelta(seconds=config.revocation_max_age),
    )
    return CertificatePlatform(trust, revocation, load_registry(config.registry))
