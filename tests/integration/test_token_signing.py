"""Signing on a PKCS#11 token (SoftHSM2, a real PKCS#11 module, as a citizen card's would be): people's keys
made on their tokens by `vgw pki enroll`, non-extractable, the certificate beside them; vouchers and actions
signed through `vgw voucher sign` / `vgw action sign` verify with the gateway's own checks and with xmlsec1
(an independent XML-DSig implementation); wrong PIN, missing token and a key that may not sign each give
their code and sign nothing."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive

from adapters.clock import utc_now
from adapters.tokens.keys import library
from adapters.tokens.uri import parse_pkcs11_uri
from gateway.workflow.actions import check_signed_action
from simulators.pki.authority import IssueOptions, Profile, name
from simulators.pki.layout import init_pki, load_authority, load_cert
from tests.conftest import Pki

from ..conftest import AGENCY_A, NOW
from .softhsm import MODULE, PIN, softhsm  # noqa: F401  (a fixture)

VGW = str(Path(sys.executable).parent / "vgw")



def vgw(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([VGW, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def carded(softhsm, tmp_path_factory):
    """A PKI whose preparer (RSA-2048), reviewer (RSA) and deputy (ECDSA P-256) sign with keys on their tokens."""
    base = tmp_path_factory.mktemp("carded")
    init_pki(base / "pki", agencies=1, now=NOW)
    for role, label, kind in (("preparer", "preparer-card", "rsa"), ("reviewer", "reviewer-card", "rsa"),
                              ("deputy", "deputy-card", "ec")):
        made = softhsm.enroll(base / "pki", AGENCY_A, role, label, "--key-kind", kind)
        assert made["token"] == {"module": MODULE, "token_label": label, "key_label": "signature"}
    manifest = json.loads((base / "pki" / "manifest.json").read_text(encoding="utf-8"))
    unsigned = base / "voucher.xml"
    unsigned.write_text(vgw("voucher", "new", "--pki", str(base / "pki"), "--agency", AGENCY_A, "--lines", "3",
                            "--seed", "5").stdout, encoding="utf-8")
    return base, manifest, unsigned


def xmlsec1_verifies(pki_dir: Path, signed: Path) -> bool:
    done = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", str(pki_dir / "root/cert.pem"),
                           "--untrusted-pem", str(pki_dir / "intermediate/cert.pem"),
                           "--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties", str(signed)],
                          capture_output=True, text=True, timeout=60)
    return done.returncode == 0


def test_enrolled_people_keep_no_key_on_disk_and_the_token_key_is_non_extractable(carded, softhsm):
    base, manifest, _ = carded
    for role in ("preparer", "reviewer", "deputy"):
        entry = manifest["agencies"][AGENCY_A]["people"][role]
        assert "key" not in entry and not (Path(entry["cert"]).parent / "key.pem").exists()
    token = library(MODULE).get_token(token_label="preparer-card")
    with token.open(user_pin=PIN) as session:
        [key] = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        assert key[Attribute.EXTRACTABLE] is False and key[Attribute.SENSITIVE] is True
        assert key[Attribute.NEVER_EXTRACTABLE] is True and key[Attribute.SIGN] is True
        with pytest.raises(AttributeSensitive):
            key[Attribute.PRIVATE_EXPONENT]
        [cert_object] = session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})
        assert cert_object[Attribute.ID] == key[Attribute.ID]
        on_card = cert_object[Attribute.VALUE]
    card_cert = load_cert(Path(manifest["agencies"][AGENCY_A]["people"]["preparer"]["cert"]))
    assert card_cert.public_bytes(serialization.Encoding.DER) == on_card
    # no PEM private key anywhere under the PKI matches the card's public key
    card_public = card_cert.public_key().public_numbers()
    for pem in (base / "pki").rglob("key.pem"):
        key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
        assert key.public_key().public_numbers() != card_public, pem


@pytest.mark.parametrize("role, label", [("preparer", "preparer-card"), ("deputy", "deputy-card")])
def test_a_voucher_signed_on_a_token_verifies_with_the_gateway_and_with_xmlsec1(carded, softhsm, role, label,
                                                                                  tmp_path):
    base, manifest, unsigned = carded
    signed = tmp_path / "signed.xml"
    signed.write_bytes(subprocess.run([VGW, "voucher", "sign", "--key", softhsm.uri(label), str(unsigned)],
                                      capture_output=True, check=True, timeout=120).stdout)
    wanted = "preparer" if role == "preparer" else "reviewer"  # the deputy stands in for the reviewer
    report = json.loads(vgw("voucher", "verify", "--pki", str(base / "pki"), "--role", wanted, "--json",
                            str(signed)).stdout)
    cert = load_cert(Path(manifest["agencies"][AGENCY_A]["people"][role]["cert"]))
    assert report["ok"] and report["signer"]["serial"] == format(cert.serial_number, "X")
    assert xmlsec1_verifies(base / "pki", signed)
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(signed.read_bytes().replace(b"<Purpose>", b"<Purpose>X", 1))
    assert not xmlsec1_verifies(base / "pki", tampered)
    assert vgw("voucher", "verify", "--pki", str(base / "pki"), str(tampered), check=False).returncode == 1


def test_an_action_signed_on_a_token_verifies_as_the_reviewers(carded, softhsm, tmp_path):
    base, manifest, unsigned = carded
    voucher = tmp_path / "voucher.xml"
    voucher.write_bytes(subprocess.run([VGW, "voucher", "sign", "--key", softhsm.uri("preparer-card"),
                                        str(unsigned)], capture_output=True, check=True, timeout=120).stdout)
    action = tmp_path / "reviewer.xml"
    vgw("action", "sign", "--pkcs11-module", MODULE, "--token-label", "reviewer-card", "--key-label", "signature",
        "--pin-file", str(softhsm.pin_file), "--voucher", str(voucher), "--stage", "reviewer", "--approve",
        "--out", str(action))
    # judged now: the action was signed just now, after the session's NOW
    verified = check_signed_action(action.read_bytes(), platform=Pki(base / "pki", manifest).platform(),
                                   now=utc_now())
    cert = load_cert(Path(manifest["agencies"][AGENCY_A]["people"]["reviewer"]["cert"]))
    assert verified.signer.serial_hex.lstrip("0") == format(cert.serial_number, "X").lstrip("0")
    assert xmlsec1_verifies(base / "pki", action)


def test_a_wrong_pin_a_missing_token_and_a_key_that_may_not_sign_each_refuse_with_their_code(carded, softhsm,
                                                                                              tmp_path):
    _, _, unsigned = carded
    cases = {
        "token-pin-incorrect": ("--pkcs11-module", MODULE, "--token-label", "preparer-card", "--pin-file",
                                str(softhsm.wrong_pin_file)),
        "token-not-found": ("--pkcs11-module", MODULE, "--token-label", "no-such-card", "--pin-file",
                            str(softhsm.pin_file)),
        "token-key-not-found": ("--key", softhsm.uri("preparer-card", key="encryption")),
        "token-no-signing-key": ("--key", softhsm.uri("encryption-card")),
        "token-pin-missing": ("--key", softhsm.uri("preparer-card", pin=False)),
        "token-uri-invalid": ("--key", "pkcs11:token=preparer-card;colour=red?module-path=" + MODULE),
        "token-pin-locked": ("--key", softhsm.uri("locked-card")),
    }
    _encryption_only_card(softhsm)
    softhsm.lock("locked-card")
    for code, args in cases.items():
        done = subprocess.run([VGW, "voucher", "sign", *args, str(unsigned)], capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 1 and f"refused: {code}:" in done.stderr, (code, done.stderr)
        assert done.stdout == "" and "Traceback" not in done.stderr, code
    wrong = subprocess.run([VGW, "voucher", "sign", *cases["token-pin-incorrect"], str(unsigned)],
                           capture_output=True, text=True, timeout=120)
    assert "tries are left" in wrong.stderr and "nothing was signed" in wrong.stderr


def _encryption_only_card(softhsm) -> None:
    """The encryption card holds a key whose certificate may only encipher keys (no signing usage)."""
    from adapters.tokens.enroll import enrol_key
    from adapters.tokens.keys import find_token

    ref = parse_pkcs11_uri(softhsm.uri("encryption-card"))
    with find_token(ref).open(user_pin=PIN) as session:
        if list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})):
            return
    ca_dir = softhsm.base / "encryption-pki"
    init_pki(ca_dir, agencies=1, now=NOW)
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=True,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    with enrol_key(ref, PIN, label="encryption") as made:
        made.store_certificate(load_authority(ca_dir, "intermediate").issue(
            name(cn="王小明", serial="TEST12340000"), made.public_key, Profile.CITIZEN,
            IssueOptions(not_before=NOW - datetime.timedelta(days=1), not_after=NOW + datetime.timedelta(days=30),
                         key_usage_override=usage)))
