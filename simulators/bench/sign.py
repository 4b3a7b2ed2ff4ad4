"""``vgw bench sign``: signatures per second through a PKCS#11 token (SoftHSM2) beside the same kind of key in
memory, RSA-2048 (the citizen cards) and ECDSA P-256, in one run.

Two figures per key kind, interleaved round by round (simulators/bench/common.py) so the machine's noise
hits both alike: the bare signature operation (``key.sign`` over 200 bytes, what a card does), and a whole
XAdES-BES signature of a 3 KB voucher through the gateway's signing profile, which is what a person's
approval costs the agent. The token is a throw-away SoftHSM2 store of this run's own (its config named by
SOFTHSM2_CONF before the module is first loaded, as SoftHSM2 requires). A real card is far slower than
SoftHSM2 (a smart card's RSA signature takes a good part of a second); this measures our path around it.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from adapters.command_line import CliError
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from simulators.bench.common import interleaved, machine, voucher_of_size
from simulators.voucher_factory import VoucherFactory

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "123456"


def _self_signed(public_key, signer) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bench signer")])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(signer, hashes.SHA256()))


def bench_sign(rounds: int = 5, seconds: float = 1.0) -> dict:
    if not Path(MODULE).exists() or not shutil.which("softhsm2-util"):
        raise CliError("SoftHSM2 is not installed (Debian softhsm2; `make bench` installs it when run as root)")
    with tempfile.TemporaryDirectory(prefix="vgw-bench-sign-") as tmp:
        base = Path(tmp)
        (base / "tokens").mkdir()
        (base / "softhsm2.conf").write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n"
                                            "log.level = ERROR\n", encoding="utf-8")
        os.environ["SOFTHSM2_CONF"] = str(base / "softhsm2.conf")
        for kind in ("rsa", "ec"):
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", f"bench-{kind}", "--pin", PIN,
                            "--so-pin", "12345678"], check=True, capture_output=True)
        from adapters.tokens.enroll import enrol_key
        from adapters.tokens.keys import open_signer
        from adapters.tokens.uri import TokenRef

        now = datetime.datetime.now(datetime.timezone.utc)
        voucher = voucher_to_xml(voucher_of_size(VoucherFactory(BankDirectory.shipped(), seed=42), 3000, now))
        issuer = ec.generate_private_key(ec.SECP256R1())
        result: dict = {"benchmark": "sign", "machine": machine(), "token": "SoftHSM2 " + _softhsm_version(),
                        "rounds": rounds, "seconds_per_round": seconds, "voucher_bytes": len(voucher)}
        for kind in ("rsa", "ec"):
            ref = TokenRef(module=MODULE, token_label=f"bench-{kind}", key_label="signature")
            with enrol_key(ref, PIN, kind=kind) as made:
                made.store_certificate(_self_signed(made.public_key, issuer))
            with open_signer(ref, PIN) as signer:
                result[kind] = _measure(kind, signer, voucher, issuer, now, rounds, seconds)
    return result


def _measure(kind: str, signer, voucher: bytes, issuer, now, rounds: int, seconds: float) -> dict:
    """One key kind: the token's key beside a fresh in-memory key of the same kind."""
    memory_key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" \
        else ec.generate_private_key(ec.SECP256R1())
    memory_cert = _self_signed(memory_key.public_key(), issuer)

    def raw(key):
        if kind == "rsa":
            return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))

    raw_rates = interleaved({"token": raw(signer.key), "memory": raw(memory_key)}, os.urandom(200), rounds, seconds)
    xades_rates = interleaved({"token": lambda data: sign_document(data, signer.key, signer.cert, now),
                               "memory": lambda data: sign_document(data, memory_key, memory_cert, now)},
                              voucher, rounds, seconds)
    return {name: {"token": round(rates["token"], 1), "memory": round(rates["memory"], 1),
                   "ratio": round(rates["token"] / rates["memory"], 3)}
            for name, rates in (("signature_per_s", raw_rates), ("xades_voucher_per_s", xades_rates))}


def _softhsm_version() -> str:
    done = subprocess.run(["softhsm2-util", "--version"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def _sign_cmd(args) -> int:
    print(json.dumps(bench_sign(rounds=args.rounds, seconds=args.seconds), ensure_ascii=False, indent=2))
    return 0


def register(registry) -> None:
    p = registry.command("bench", "sign", help="signatures per second through a PKCS#11 token (SoftHSM2) beside "
                         "in-memory keys, RSA-2048 and P-256 (JSON)", handler=_sign_cmd,
                         group_help="benchmarks, printing JSON")
    p.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds (default 5)")
    p.add_argument("--seconds", type=float, default=1.0, help="seconds per round and case (default 1)")
