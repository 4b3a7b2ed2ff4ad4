"""The whole check of a signed voucher: bytes in, a verified voucher (or a refusal with codes) out.

Order matters for both safety and cost: cheap structural refusals first (size, DTD, depth, schema), then
the signature, then the signer's certificate and role, and the business rules last, on the signed
content only. Nothing here touches the network or the clock: revocation evidence arrives through the
platform's ports, and ``now`` is an argument.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from gateway.business_time import TAIPEI
from gateway.errors import Problem, Refusal
from gateway.trust.certificates import CertificateIdentity
from gateway.trust.platform import CertificatePlatform, CheckedCertificate
from gateway.trust.registry import Grant
from gateway.trust.roles import Role
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.model import Voucher
from gateway.vouchers.rules import voucher_problems
from gateway.vouchers.xml_mapping import read_voucher
from gateway.xmlsec.parsing import DEFAULT_LIMITS, XmlLimits, parse_untrusted
from gateway.xmlsec.signed_document import DEFAULT_SIGNATURE_POLICY, SignaturePolicy, check_signed_document
from gateway.xmlsec.validation import schema_problems

VOUCHER_SCHEMA = "voucher.xsd"


VoucherPolicy = SignaturePolicy
"""Deployment choices for voucher checks: those of every signed document (kept under this name for callers)."""
DEFAULT_POLICY = DEFAULT_SIGNATURE_POLICY


@dataclass(frozen=True)
class Signer:
    identity: CertificateIdentity
    agency: str
    role: Role
    grant: Grant


@dataclass(frozen=True)
class VerifiedVoucher:
    voucher: Voucher
    signer: Signer
    signing_time: datetime.datetime
    received_sha256: str  # of the exact bytes received
    certificate: CheckedCertificate

    @property
    def revocation_soft_failed(self) -> bool:
        return self.certificate.soft_failed


def validate_document(data: bytes, *, today: datetime.date, banks: BankDirectory,
                      limits: XmlLimits = DEFAULT_LIMITS) -> tuple[Voucher | None, list[Problem]]:
    """Schema and business rules of a voucher document, signed or not (``vgw voucher validate``).

    Refusals of the XML itself (malformed, DTD, too large) come back as a single problem.
    """
    try:
        root = parse_untrusted(data, limits)
    except Refusal as refusal:
        return None, refusal.problems
    problems = schema_problems(root, VOUCHER_SCHEMA)
    if problems:
        return None, problems
    voucher = read_voucher(root)
    return voucher, voucher_problems(voucher, today=today, banks=banks)


def check_signed_voucher(data: bytes, *, platform: CertificatePlatform, banks: BankDirectory, role: Role,
                         now: datetime.datetime, policy: VoucherPolicy = DEFAULT_POLICY) -> VerifiedVoucher:
    """Accept ``data`` as a voucher signed by someone holding ``role`` for its agency, or raise Refusal."""
    signed = check_signed_document(data, VOUCHER_SCHEMA, platform=platform, now=now, policy=policy)
    checked = signed.certificate
    voucher = read_voucher(signed.signed_root)
    grant = platform.registry.authorise(checked.validated.identity, voucher.agency_code, role, signed.signing_time)
    rule_problems = voucher_problems(voucher, today=_local_date(now), banks=banks)
    if rule_problems:
        raise Refusal(rule_problems)
    signer = Signer(checked.validated.identity, voucher.agency_code, role, grant)
    return VerifiedVoucher(voucher, signer, signed.signing_time, signed.received_sha256, checked)




def _local_date(now: datetime.datetime) -> datetime.date:
    """Business dates are Taipei dates (UTC+8, no daylight saving)."""
    return now.astimezone(TAIPEI).date()
