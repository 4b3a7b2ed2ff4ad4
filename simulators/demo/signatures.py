"""Part 1 of ``vgw demo``: signed vouchers checked in-process as the gateway checks them (XSD, business rules,
XAdES signature, certificate chain, OCSP/CRL revocation, role registry), and forgeries refused with their
stable error codes: a tampered amount or account, another agency's signer, the wrong role, a bad payee ID
checksum, an entity bomb, a revoked deputy."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

from gateway.errors import Refusal
from gateway.trust.roles import Role
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.check import check_signed_voucher
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.demo.report import DemoReport, Outcome
from simulators.pki.layout import load_cert, load_key, revoke
from simulators.voucher_factory import VoucherFactory

PART = "in-process"


def check_signatures(pki_dir: Path, manifest: dict, report: DemoReport, signed_dir: Path, *, genuine_agencies: list[str],
                     forger: str, payroll_lines: int = 200) -> None:
    """Vouchers of ``genuine_agencies`` accepted; forgeries refused. ``forger`` is an agency kept out of the
    business day: its deputy's certificate is revoked here."""
    from adapters.serve.bootstrap import PlatformConfig, build_platform

    now = datetime.datetime.now(datetime.timezone.utc)
    banks = BankDirectory.shipped()
    factory = VoucherFactory(banks, seed=2026)
    platform = build_platform(PlatformConfig.from_pki_dir(pki_dir, use_ocsp=True))
    signed_dir.mkdir(parents=True, exist_ok=True)

    def person(agency: str, role: str):
        entry = manifest["agencies"][agency]["people"][role]
        return load_key(Path(entry["key"])), load_cert(Path(entry["cert"]))

    def sign(voucher_or_bytes, agency: str, role: str = "preparer") -> bytes:
        data = voucher_or_bytes if isinstance(voucher_or_bytes, bytes) else voucher_to_xml(voucher_or_bytes)
        return sign_document(data, *person(agency, role), now)

    def check(name: str, data: bytes, expected: str, role: Role = Role.PREPARER) -> None:
        (signed_dir / f"{name}.xml").write_bytes(data)
        try:
            result = check_signed_voucher(data, platform=platform, banks=banks, role=role,
                                          now=datetime.datetime.now(datetime.timezone.utc))
        except Refusal as refusal:
            report.outcomes.append(Outcome(name, expected, refusal.code, refusal.message, PART))
            return
        report.outcomes.append(Outcome(name, expected, "accepted",
                                       f"{len(result.voucher.lines)} lines, NT${result.voucher.total_amount:,}, "
                                       f"signed by {result.signer.identity.common_name}", PART))

    for agency in genuine_agencies:
        voucher = factory.voucher(agency, today=now.date())
        check(voucher.voucher_id, sign(voucher, agency), "accepted")
    a = genuine_agencies[0]
    payroll = factory.voucher(a, today=now.date(), lines=payroll_lines, payroll=True)
    check(f"{payroll.voucher_id}-payroll", sign(payroll, a), "accepted")
    check("deputy-reviews", sign(factory.voucher(a, today=now.date()), a, "deputy"), "accepted", Role.REVIEWER)

    genuine = factory.voucher(a, today=now.date(), lines=2)
    signed = sign(genuine, a)
    first = genuine.lines[0]
    check("tampered-amount", signed.replace(f"<Amount>{first.amount}</Amount>".encode(),
                                            f"<Amount>{first.amount + 100000}</Amount>".encode(), 1),
          "signature-invalid")
    check("tampered-account", signed.replace(first.account_number.encode(), b"99999999999", 1), "signature-invalid")
    check("other-agency-signer", sign(genuine, forger), "signer-not-authorised")
    check("wrong-role", sign(genuine, a, "reviewer"), "signer-not-authorised")
    bad_id = replace(genuine, lines=(first._replace(payee_id=first.payee_id[:-1] +
                                                    str((int(first.payee_id[-1]) + 1) % 10)),) + genuine.lines[1:])
    check("payee-id-checksum", sign(bad_id, a), "payee-id-invalid")
    check("dtd-entity-bomb", b'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaaaaaaaa">'
          b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><v>&b;</v>', "xml-forbidden-construct")
    # A deputy whose card is reported lost before they ever sign: OCSP answers revoked. (A certificate
    # already seen stays cached as good until its answer's nextUpdate, as with any OCSP client.)
    revoked_cert = load_cert(Path(manifest["agencies"][forger]["people"]["deputy"]["cert"]))
    revoke(pki_dir, revoked_cert, now=now)
    check("revoked-signer", sign(factory.voucher(forger, today=now.date()), forger, "deputy"), "certificate-revoked",
          Role.REVIEWER)
