"""``vgw bench verify``: voucher verification throughput next to the bare lxml + signxml ceiling.

Both are measured in the same run, interleaved round by round, so machine noise hits both alike and the
ratio means something. The ceiling is what any gateway must pay: parse the bytes and let a fresh
signxml XAdES verifier check the signature. Ours adds the hardened parse, the XSD, the profile, the
chain, revocation (cached), the role registry and the business rules.
"""

from __future__ import annotations

import datetime
import json
import tempfile
from pathlib import Path

from lxml import etree
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier

from gateway.trust.roles import Role
from gateway.vouchers.bank_directory import BankDirectory
from gateway.vouchers.check import check_signed_voucher
from gateway.vouchers.xml_mapping import voucher_to_xml
from gateway.xmlsec.signing import sign_document
from gateway.xmlsec.validation import compiled_schema
from simulators.bench.common import interleaved, machine, voucher_of_size
from simulators.pki.layout import agency_code, init_pki, load_cert, load_key
from simulators.voucher_factory import VoucherFactory


def bench_verify(rounds: int = 5, seconds: float = 1.0) -> dict:
    from adapters.serve.bootstrap import PlatformConfig, build_platform

    now = datetime.datetime.now(datetime.timezone.utc)
    banks = BankDirectory.shipped()
    with tempfile.TemporaryDirectory(prefix="vgw-bench-") as tmp:
        init_pki(Path(tmp), agencies=1, now=now)
        platform = build_platform(PlatformConfig.from_pki_dir(Path(tmp)))
        person = Path(tmp) / "agencies" / agency_code(0) / "people" / "preparer"
        key, cert = load_key(person / "key.pem"), load_cert(person / "cert.pem")
        factory = VoucherFactory(banks, seed=42)
        cases = {
            "voucher_3kb": voucher_of_size(factory, 3000, now),
            "payroll_500": factory.voucher(agency_code(0), today=now.date(), lines=500, payroll=True),
        }
        result: dict = {"benchmark": "verify", "machine": machine(), "rounds": rounds, "seconds_per_round": seconds}
        for name, voucher in cases.items():
            signed = sign_document(voucher_to_xml(voucher), key, cert, now)

            def ceiling(data: bytes) -> None:
                parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
                root = etree.fromstring(data, parser)
                XAdESVerifier().verify(root, x509_cert=cert,
                                       expect_config=XAdESSignatureConfiguration(verification_time=now))

            def gateway(data: bytes) -> None:
                check_signed_voucher(data, platform=platform, banks=banks, role=Role.PREPARER, now=now)

            rates = interleaved({"ceiling": ceiling, "gateway": gateway}, signed, rounds, seconds)
            result[name] = {
                "bytes": len(voucher_to_xml(voucher)), "signed_bytes": len(signed), "lines": len(voucher.lines),
                "ceiling_per_s": round(rates["ceiling"], 1), "gateway_per_s": round(rates["gateway"], 1),
                "ratio": round(rates["gateway"] / rates["ceiling"], 3),
            }
        result["schema_validation"] = _bench_schema(factory, now, rounds, seconds)
    result["target_ratio"] = 0.8
    result["meets_target"] = all(result[n]["ratio"] >= 0.8 for n in cases)
    return result


def _bench_schema(factory: VoucherFactory, now: datetime.datetime, rounds: int, seconds: float) -> dict:
    """lxml (libxml2) against xmlschema on the same 500-line voucher, to justify lxml on the hot path."""
    import xmlschema

    from schemas import schema_path

    data = voucher_to_xml(factory.voucher(agency_code(0), today=now.date(), lines=500, payroll=True))
    root = etree.fromstring(data)
    py_schema = xmlschema.XMLSchema(str(schema_path("voucher.xsd")))
    with compiled_schema("voucher.xsd") as lxml_schema:
        rates = interleaved({
            "lxml": lambda _: lxml_schema.validate(root),
            "xmlschema": lambda _: py_schema.is_valid(root),
        }, data, max(1, rounds // 2), seconds)
    return {"lines": 500, "lxml_per_s": round(rates["lxml"], 1), "xmlschema_per_s": round(rates["xmlschema"], 1),
            "lxml_speedup": round(rates["lxml"] / rates["xmlschema"], 1)}


def _verify_cmd(args) -> int:
    print(json.dumps(bench_verify(rounds=args.rounds, seconds=args.seconds), ensure_ascii=False, indent=2))
    return 0


def register(registry) -> None:
    p = registry.command("bench", "verify", help="voucher verification throughput vs the bare signxml ceiling "
                         "(JSON)", handler=_verify_cmd, group_help="benchmarks, printing JSON")
    p.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds (default 5)")
    p.add_argument("--seconds", type=float, default=1.0, help="seconds per round and case (default 1)")
