"""Many vouchers checked at once from several threads against one shared platform: no cross-talk, no forgery in.

signxml keeps per-verification state on its verifier, lxml schemas keep their error log on themselves, and the
platform's chain and revocation caches are filled while other threads read them; any sharing mistake there
shows up here as a verification reading another's certificate or voucher. Every genuine voucher must come
back with its own agency, signer and total; every forgery must be refused.
"""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.errors import Refusal
from gateway.trust.roles import Role
from gateway.vouchers.check import TAIPEI, check_signed_voucher
from gateway.vouchers.model import Voucher
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.voucher_factory import VoucherFactory
from tests.conftest import AGENCY_A, AGENCY_B, NOW

NS = "urn:taipei:treasury:voucher:1"
DS = "http://www.w3.org/2000/09/xmldsig#"
NSMAP = {"v": NS, "ds": DS}
TODAY = NOW.astimezone(TAIPEI).date()
PER_AGENCY = 20
THREADS = 8
ROUNDS = 4


@dataclass(frozen=True)
class Case:
    label: str
    data: bytes
    voucher: Voucher
    genuine: bool
    agency: str = ""
    signer_serial: str = ""
    refusal_code: str = ""


def _pem_body(cert) -> str:
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return "".join(line + "\n" for line in pem.splitlines() if not line.startswith("-----"))


def _tamper_amount(data: bytes, line: int) -> bytes:
    root = etree.fromstring(data)
    amount = root.xpath(f"v:Payees/v:Line[@number='{line}']/v:Amount", namespaces=NSMAP)[0]
    amount.text = str(int(amount.text) + 1)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _swap_certificate(data: bytes, cert) -> bytes:
    root = etree.fromstring(data)
    node = root.xpath("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NSMAP)[0]
    node.text = _pem_body(cert)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.fixture(scope="module")
def cases(pki, banks) -> list[Case]:
    factory = VoucherFactory(banks, seed=20260101)
    people = {agency: pki.person(agency, "preparer") for agency in (AGENCY_A, AGENCY_B)}
    serials = {agency: format(cert.serial_number, "X") for agency, (_, cert) in people.items()}
    assert serials[AGENCY_A] != serials[AGENCY_B]
    out: list[Case] = []
    genuine_by_agency: dict[str, list[Case]] = {AGENCY_A: [], AGENCY_B: []}
    for i in range(PER_AGENCY):
        for agency in (AGENCY_A, AGENCY_B):
            voucher = factory.voucher(agency, today=TODAY, lines=1 + i % 6)
            key, cert = people[agency]
            case = Case(f"genuine-{agency}-{i}", sign_document(voucher_to_xml(voucher), key, cert, NOW), voucher,
                        True, agency, serials[agency])
            out.append(case)
            genuine_by_agency[agency].append(case)

    key_b, cert_b = people[AGENCY_B]
    key_a, cert_a = people[AGENCY_A]
    for i in range(PER_AGENCY // 2):
        # AGENCY_A's voucher, signed by AGENCY_B's preparer with B's own (valid, registered) certificate.
        voucher = factory.voucher(AGENCY_A, today=TODAY, lines=2)
        out.append(Case(f"a-signed-by-b-{i}", sign_document(voucher_to_xml(voucher), key_b, cert_b, NOW), voucher,
                        False, refusal_code="signer-not-authorised"))
        voucher = factory.voucher(AGENCY_B, today=TODAY, lines=2)
        out.append(Case(f"b-signed-by-a-{i}", sign_document(voucher_to_xml(voucher), key_a, cert_a, NOW), voucher,
                        False, refusal_code="signer-not-authorised"))
        # A genuine voucher with one amount raised after signing.
        for agency in (AGENCY_A, AGENCY_B):
            source = genuine_by_agency[agency][i]
            out.append(Case(f"tampered-{agency}-{i}", _tamper_amount(source.data, 1 + i % len(source.voucher.lines)),
                            source.voucher, False, refusal_code="signature-invalid"))
        # AGENCY_A's genuinely signed voucher whose KeyInfo now offers AGENCY_B's certificate.
        source = genuine_by_agency[AGENCY_A][PER_AGENCY - 1 - i]
        out.append(Case(f"a-cert-swapped-to-b-{i}", _swap_certificate(source.data, cert_b), source.voucher, False,
                        refusal_code="signature-invalid"))
    return out


def _check(platform, banks, case: Case):
    try:
        return case, check_signed_voucher(case.data, platform=platform, banks=banks, role=Role.PREPARER, now=NOW)
    except Refusal as refusal:
        return case, refusal
    except Exception as exc:  # noqa: BLE001 - any other exception is a bug; report it with its case
        return case, exc


def test_the_mix_is_what_it_claims(cases) -> None:
    kinds = Counter(c.refusal_code or "genuine" for c in cases)
    assert kinds == {"genuine": 2 * PER_AGENCY, "signer-not-authorised": PER_AGENCY,
                     "signature-invalid": 3 * (PER_AGENCY // 2)}
    assert len({c.data for c in cases}) == len(cases)


def test_concurrent_checks_accept_every_genuine_voucher_and_no_forgery(pki, banks, cases) -> None:
    platform = pki.platform()  # fresh: its chain and revocation caches fill while the threads race
    rng = random.Random(7)
    accepted_forgeries = []
    wrong = []
    seen = Counter()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for _ in range(ROUNDS):
            order = cases[:]
            rng.shuffle(order)
            for case, outcome in pool.map(lambda c: _check(platform, banks, c), order):
                seen[case.label] += 1
                if case.genuine:
                    if isinstance(outcome, BaseException):
                        wrong.append((case.label, repr(outcome)))
                        continue
                    if (outcome.voucher != case.voucher or outcome.signer.agency != case.agency
                            or outcome.signer.identity.serial_hex != case.signer_serial
                            or outcome.voucher.total_amount != case.voucher.total_amount
                            or outcome.signer.role is not Role.PREPARER):
                        wrong.append((case.label, outcome.signer.agency, outcome.signer.identity.serial_hex,
                                      outcome.voucher.voucher_number))
                elif not isinstance(outcome, BaseException):
                    accepted_forgeries.append((case.label, outcome.voucher.voucher_number))
                elif not isinstance(outcome, Refusal) or outcome.code != case.refusal_code:
                    wrong.append((case.label, repr(outcome)))
    assert accepted_forgeries == []
    assert wrong == []
    assert set(seen.values()) == {ROUNDS} and len(seen) == len(cases)


def test_concurrent_results_match_sequential_results(pki, banks, cases) -> None:
    # The same inputs give the same answers (codes, signers, digests) whether checked alone or in a crowd.
    def summary(outcome):
        if isinstance(outcome, Refusal):
            return ("refused", outcome.code)
        if isinstance(outcome, BaseException):
            return ("error", repr(outcome))
        return ("accepted", outcome.signer.identity.serial_hex, outcome.received_sha256, outcome.voucher.voucher_id)

    sequential = {case.label: summary(outcome) for case, outcome in
                  (_check(pki.platform(), banks, c) for c in cases)}
    shared = pki.platform()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        concurrent = {case.label: summary(outcome) for case, outcome in
                      pool.map(lambda c: _check(shared, banks, c), cases[::-1])}
    assert concurrent == sequential
    assert sum(1 for s in sequential.values() if s[0] == "accepted") == 2 * PER_AGENCY
