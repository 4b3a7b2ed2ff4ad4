"""The `vgw` verbs as outside tests call them: real processes, files, exit codes and JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VGW = shutil.which("vgw", path=str(Path(sys.executable).parent)) or "vgw"


def vgw(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([VGW, *args], input=input, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def cli_pki(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("cli-pki")
    done = vgw("pki", "init", str(directory), "--agencies", "2", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _signed(cli_pki: dict, tmp_path: Path, *, agency: str = "379000001A", role: str = "preparer",
            lines: str = "3", seed: str = "5") -> Path:
    unsigned = tmp_path / f"v-{agency}-{role}-{seed}.xml"
    done = vgw("voucher", "new", "--pki", cli_pki["dir"], "--agency", agency, "--lines", lines, "--seed", seed)
    assert done.returncode == 0, done.stderr
    unsigned.write_bytes(done.stdout)
    person = cli_pki["agencies"][agency]["people"][role]
    done = vgw("voucher", "sign", "--key", person["key"], "--cert", person["cert"], str(unsigned))
    assert done.returncode == 0, done.stderr
    signed = unsigned.with_suffix(".signed.xml")
    signed.write_bytes(done.stdout)
    return signed


def test_pki_manifest_has_the_contract_shape(cli_pki):
    for key in ("root", "intermediate", "gateway", "bank"):
        assert Path(cli_pki[key]["cert"]).is_file() and Path(cli_pki[key]["key"]).is_file()
    assert Path(cli_pki["registry"]).is_file() and Path(cli_pki["crl"]).is_file()
    assert sorted(cli_pki["agencies"]) == ["379000001A", "379000002A"]
    people = cli_pki["agencies"]["379000001A"]["people"]
    assert set(people) == {"preparer", "reviewer", "accountant", "head", "releaser", "deputy"}
    assert people["deputy"]["role"] in {"preparer", "reviewer", "accountant", "head", "releaser"}
    assert all(Path(p).is_absolute() for p in (cli_pki["registry"], people["head"]["cert"]))


def test_signed_voucher_verifies_with_json_report(cli_pki, tmp_path):
    signed = _signed(cli_pki, tmp_path)
    done = vgw("voucher", "verify", "--pki", cli_pki["dir"], "--json", str(signed))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["agency"] == "379000001A"
    assert report["line_count"] == 3 == len(report["lines"])
    assert report["control_total"] == sum(line["amount"] for line in report["lines"])
    assert report["signer"]["role"] == "preparer" and report["signer"]["agency"] == "379000001A"
    assert report["signer"]["serial"]


def test_tampered_voucher_is_refused_with_code_and_no_traceback(cli_pki, tmp_path):
    signed = _signed(cli_pki, tmp_path, seed="6")
    text = signed.read_text(encoding="utf-8")
    tampered = tmp_path / "tampered.xml"
    tampered.write_text(text.replace("<Amount>", "<Amount>1", 1), encoding="utf-8")
    done = vgw("voucher", "verify", "--pki", cli_pki["dir"], "--json", str(tampered))
    assert done.returncode == 1
    assert json.loads(done.stdout)["code"] == "signature-invalid"
    done = vgw("voucher", "verify", "--pki", cli_pki["dir"], str(tampered))
    assert done.returncode == 1 and b"signature-invalid" in done.stderr and b"Traceback" not in done.stderr


def test_wrong_role_is_refused(cli_pki, tmp_path):
    signed = _signed(cli_pki, tmp_path, role="reviewer", seed="7")
    done = vgw("voucher", "verify", "--pki", cli_pki["dir"], "--json", str(signed))
    assert done.returncode == 1 and json.loads(done.stdout)["code"] == "signer-not-authorised"
    done = vgw("voucher", "verify", "--pki", cli_pki["dir"], "--role", "reviewer", "--json", str(signed))
    assert done.returncode == 0, done.stdout


def test_revoked_signer_is_refused_through_the_crl(tmp_path):
    directory = tmp_path / "pki"
    manifest = json.loads(vgw("pki", "init", str(directory), "--agencies", "1", "--json").stdout)
    signed = _signed(manifest, tmp_path, seed="8")
    assert vgw("voucher", "verify", "--pki", str(directory), str(signed)).returncode == 0
    person = manifest["agencies"]["379000001A"]["people"]["preparer"]
    done = vgw("pki", "revoke", str(directory), person["cert"])
    assert done.returncode == 0, done.stderr
    done = vgw("voucher", "verify", "--pki", str(directory), "--json", str(signed))
    assert done.returncode == 1 and json.loads(done.stdout)["code"] == "certificate-revoked"


def test_validate_reports_line_path_and_code(cli_pki, tmp_path):
    done = vgw("voucher", "new", "--pki", cli_pki["dir"], "--agency", "379000001A", "--lines", "2")
    good = tmp_path / "good.xml"
    good.write_bytes(done.stdout)
    ok = vgw("voucher", "validate", str(good))
    assert ok.returncode == 0 and b"valid" in ok.stdout
    bad = tmp_path / "bad.xml"
    bad.write_text(good.read_text(encoding="utf-8").replace("<BankCode>", "<BankCode>X", 1), encoding="utf-8")
    done = vgw("voucher", "validate", str(bad))
    assert done.returncode == 1
    line = done.stdout.decode().splitlines()[0]
    file_part, line_no, path, code, _ = line.split(":", 4)
    assert int(line_no) > 1 and "BankCode" in path and code.strip() == "schema-invalid"


def test_usage_errors_exit_2_without_traceback(tmp_path):
    done = vgw("voucher", "verify", "--pki", str(tmp_path / "nope"), str(tmp_path / "missing.xml"))
    assert done.returncode == 2 and b"Traceback" not in done.stderr
    garbage = tmp_path / "garbage.xml"
    garbage.write_bytes(b"\x00\xff not xml")
    done = vgw("voucher", "validate", str(garbage))
    assert done.returncode == 1 and b"xml-malformed" in done.stdout


def test_count_writes_distinct_vouchers_and_batch_sign(cli_pki, tmp_path):
    out = tmp_path / "batch"
    done = vgw("voucher", "new", "--pki", cli_pki["dir"], "--agency", "379000002A", "--count", "5",
               "--out-dir", str(out))
    assert done.returncode == 0, done.stderr
    files = sorted(out.glob("*.xml"))
    assert len(files) == 5 and len({f.read_bytes() for f in files}) == 5
    person = cli_pki["agencies"]["379000002A"]["people"]["preparer"]
    signed_dir = tmp_path / "signed"
    done = vgw("voucher", "sign", "--key", person["key"], "--cert", person["cert"], "--out-dir", str(signed_dir),
               *map(str, files))
    assert done.returncode == 0, done.stderr
    for f in sorted(signed_dir.glob("*.xml")):
        assert vgw("voucher", "verify", "--pki", cli_pki["dir"], str(f)).returncode == 0


def test_sign_refuses_dtds_without_reading_files(cli_pki, tmp_path):
    person = cli_pki["agencies"]["379000001A"]["people"]["preparer"]
    for body in (b'<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///dev/urandom"> %p;]><r/>',
                 b'<!DOCTYPE r [<!ENTITY a SYSTEM "file:///etc/hostname">]><r>&a;</r>', b"<r><"):
        source = tmp_path / "evil.xml"
        source.write_bytes(body)
        done = vgw("voucher", "sign", "--key", person["key"], "--cert", person["cert"], str(source))
        assert done.returncode == 2 and done.stdout == b"" and b"Traceback" not in done.stderr
