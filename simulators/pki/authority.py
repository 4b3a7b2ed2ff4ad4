"""Issue certificates and CRLs of the shapes the gateway meets in production.

The profiles mirror the real ones: MOICA citizen certificates (RSA-2048/SHA-256, issuer
``C=TW, O=行政院, OU=內政部憑證管理中心`` without CN, the holder's last four ID digits in Subject Directory
Attributes), agency TLS client certificates, the gateway's and the bank's service certificates, and a
delegated OCSP responder. Tests use :class:`CertificateAuthority` directly to mint the odd ones
(expired, wrong key usage, foreign CA).
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import char, univ
from pyasn1_modules import rfc5280

from gateway.trust.certificates import ID_LAST_FOUR, SUBJECT_DIRECTORY_ATTRIBUTES

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class Profile(enum.Enum):
    ROOT = "root"
    INTERMEDIATE = "intermediate"
    CITIZEN = "citizen"  # a person's signing certificate (自然人憑證)
    TLS_CLIENT = "tls-client"  # an agency system's client certificate
    SERVICE = "service"  # the gateway's / bank's certificate: TLS server + client + message signing
    OCSP_RESPONDER = "ocsp-responder"


def new_key(kind: str = "rsa") -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key kind {kind!r}")


def name(*, cn: str | None = None, o: str | None = None, ou: str | None = None,
         serial: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "TW")]
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    if cn:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    if serial:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    return x509.Name(attrs)


def subject_directory_attributes(id_last_four: str) -> x509.UnrecognizedExtension:
    """The MOICA extension: attribute 2.16.886.1.100.2.51 = last four ID digits (PrintableString)."""
    attrs = rfc5280.SubjectDirectoryAttributes()
    attr = rfc5280.Attribute()
    attr["type"] = univ.ObjectIdentifier(ID_LAST_FOUR)
    attr["values"].append(univ.Any(der_encoder.encode(char.PrintableString(id_last_four))))
    attrs.append(attr)
    return x509.UnrecognizedExtension(SUBJECT_DIRECTORY_ATTRIBUTES, der_encoder.encode(attrs))


@dataclass(frozen=True)
class IssueOptions:
    """What varies between certificates of one profile. Tests set the odd values."""

    not_before: datetime.datetime
    not_after: datetime.datetime
    ocsp_url: str | None = None
    crl_url: str | None = None
    id_last_four: str | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    key_usage_override: x509.KeyUsage | None = None
    serial: int | None = None


def _ku(*, ds=False, nr=False, ke=False, cert_sign=False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=ds, content_commitment=nr, key_encipherment=ke, data_encipherment=False,
                         key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False,
                         decipher_only=False)


class CertificateAuthority:
    """A CA that can issue certificates and CRLs. ``cert`` is None only while a root signs itself."""

    def __init__(self, key: PrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @classmethod
    def new_root(cls, subject: x509.Name, now: datetime.datetime, key: PrivateKey | None = None,
                 years: int = 20) -> CertificateAuthority:
        key = key or new_key("rsa")
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365 * years))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ku(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        return cls(key, builder.sign(key, hashes.SHA256()))

    def issue(self, subject: x509.Name, public_key, profile: Profile, options: IssueOptions) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self.cert.subject).public_key(public_key)
            .serial_number(options.serial or x509.random_serial_number())
            .not_valid_before(options.not_before).not_valid_after(options.not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        is_ca = profile is Profile.INTERMEDIATE
        builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None),
                                        critical=True)
        builder = builder.add_extension(options.key_usage_override or _key_usage(profile, public_key), critical=True)
        eku = _PROFILE_EKU.get(profile)
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        if profile is Profile.OCSP_RESPONDER:
            builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
        access = []
        if options.ocsp_url:
            access.append(x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP,
                                                 x509.UniformResourceIdentifier(options.ocsp_url)))
        if access:
            builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
        if options.crl_url:
            builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(options.crl_url)], relative_name=None, reasons=None,
                crl_issuer=None)]), critical=False)
        if options.id_last_four:
            builder = builder.add_extension(subject_directory_attributes(options.id_last_four), critical=False)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in options.dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in options.ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def crl(self, revoked: list[tuple[int, datetime.datetime, x509.ReasonFlags | None]], *,
            this_update: datetime.datetime, next_update: datetime.datetime,
            number: int) -> x509.CertificateRevocationList:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject).last_update(this_update).next_update(next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        for serial, when, reason in revoked:
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
            if reason is not None:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self.key, hashes.SHA256())


_PROFILE_KU = {
    Profile.INTERMEDIATE: _ku(cert_sign=True),
    Profile.CITIZEN: _ku(ds=True, nr=True),
    Profile.TLS_CLIENT: _ku(ds=True),
    Profile.SERVICE: _ku(ds=True, nr=True, ke=True),
    Profile.OCSP_RESPONDER: _ku(ds=True),
}


def _key_usage(profile: Profile, public_key) -> x509.KeyUsage:
    """The profile's key usage; for an EC key keyAgreement stands in for keyEncipherment, which RFC 5480
    forbids on EC keys (an EC key never encrypts a TLS premaster secret; it takes part in ECDH)."""
    usage = _PROFILE_KU[profile]
    if isinstance(public_key, ec.EllipticCurvePublicKey) and usage.key_encipherment:
        usage = x509.KeyUsage(digital_signature=usage.digital_signature, content_commitment=usage.content_commitment,
                              key_encipherment=False, data_encipherment=False, key_agreement=True,
                              key_cert_sign=usage.key_cert_sign, crl_sign=usage.crl_sign, encipher_only=False,
                              decipher_only=False)
    return usage


_PROFILE_EKU = {
    Profile.TLS_CLIENT: [ExtendedKeyUsageOID.CLIENT_AUTH],
    Profile.SERVICE: [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    Profile.OCSP_RESPONDER: [ExtendedKeyUsageOID.OCSP_SIGNING],
}
