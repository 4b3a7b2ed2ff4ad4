"""The Dockerfile, compose.yaml and the health check they call.

No Docker daemon runs where the tests run, so the files are checked for what they promise (slim base,
non-root user, a health check, the font the PDF statements need; every service, its health check and the
order they start in) and everything they call is run for real here: each ``vgw`` verb they name exists,
the init service's script makes a PKI once and a settings file ``vgw serve``'s loader accepts, and the health
check answers 0 for a running ``vgw serve`` and 1 when it is not there or the certificate is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adapters.http.health_check import main as health_check
from adapters.serve.settings import load_settings
from simulators.served_gateway import ServedGateway

ROOT = Path(__file__).resolve().parents[2]
VGW = str(Path(sys.executable).parent / "vgw")


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def verb_exists(*words: str) -> bool:
    return subprocess.run([VGW, *words, "--help"], capture_output=True, timeout=60).returncode == 0


def test_the_image_is_slim_multi_stage_non_root_with_a_health_check_and_the_cjk_font():
    steps = dockerfile_instructions()
    bases = [args for op, args in steps if op == "FROM"]
    assert len(bases) == 2 and all(b.startswith("python:3.11-slim") for b in bases)
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM"):]
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    runs = " ".join(args for op, args in final if op == "RUN")
    assert "--no-install-recommends fonts-arphic-uming" in runs and "rm -rf /var/lib/apt/lists/*" in runs
    health = [args for op, args in final if op == "HEALTHCHECK"]
    assert len(health) == 1 and '"adapters.http.health_check"' in health[0]
    assert ("ENTRYPOINT", '["vgw"]') in final
    cmd = next(args for op, args in final if op == "CMD")
    assert cmd == '["serve", "--config", "/etc/vgw/vgw.toml"]' and verb_exists("serve")
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_compose_runs_the_gateway_its_store_broker_ocsp_and_bank_in_order_each_checked():
    services = compose()["services"]
    assert set(services) == {"init", "postgres", "rabbitmq", "ocsp", "bank", "gateway"}
    assert services["postgres"]["image"].startswith("postgres:15")
    assert re.fullmatch(r"rabbitmq:3\.\d+", services["rabbitmq"]["image"])  # no management plugin
    for name in ("postgres", "rabbitmq", "ocsp", "gateway"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    needs = {name: {k: v["condition"] for k, v in s.get("depends_on", {}).items()} for name, s in services.items()}
    assert needs["gateway"] == {"init": "service_completed_successfully", "postgres": "service_healthy",
                                "rabbitmq": "service_healthy", "ocsp": "service_healthy"}
    assert needs["bank"] == {"init": "service_completed_successfully", "rabbitmq": "service_healthy"}
    assert needs["ocsp"] == {"init": "service_completed_successfully"}
    # every verb the services call exists
    assert services["ocsp"]["command"][:2] == ["pki", "ocsp"] and verb_exists("pki", "ocsp")
    assert services["bank"]["command"][:2] == ["sim", "bank"] and verb_exists("sim", "bank")
    assert "vgw pki init /etc/vgw/pki" in services["init"]["command"][0] and verb_exists("pki", "init")
    gateway_env = services["gateway"]["environment"]
    assert gateway_env["VGW_STORE"].startswith("postgresql://") and gateway_env["VGW_BANK_AMQP"].startswith("amqp://")


def test_the_init_service_makes_a_pki_once_and_a_settings_file_vgw_serve_accepts(tmp_path):
    """The init service's own shell script, run here with /etc/vgw moved to a temporary folder."""
    script = compose()["services"]["init"]["command"][0].replace("/etc/vgw", str(tmp_path))
    env = {**os.environ, "PATH": f"{Path(VGW).parent}{os.pathsep}{os.environ['PATH']}"}
    for attempt in range(2):  # a second start keeps the PKI it made
        done = subprocess.run(["sh", "-euc", script], capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        if attempt == 0:
            made = (tmp_path / "pki/manifest.json").stat().st_mtime_ns
    assert (tmp_path / "pki/manifest.json").stat().st_mtime_ns == made
    assert (tmp_path / "pki/agencies/379000001A/tls/cert.pem").is_file()  # the gateway's health check uses it
    gateway_env = compose()["services"]["gateway"]["environment"]
    s = load_settings(tmp_path / "vgw.toml", gateway_env, {})
    assert s["listen"] == "0.0.0.0:8443" and s["bank.exchange"] and s["trust.ocsp"] and s["workers"] == 2
    assert s["store"] == gateway_env["VGW_STORE"] and s["bank.amqp"] == gateway_env["VGW_BANK_AMQP"]
    assert s["tls.cert"] == tmp_path / "pki/gateway/cert.pem" and s["tls.cert"].is_file()


def test_the_health_check_passes_for_a_running_gateway_and_fails_without_one_or_without_a_certificate(
        tmp_path, pki):
    tls = pki.dir / "agencies/379000001A/tls"
    gateway = ServedGateway(pki.dir, f"sqlite:///{tmp_path / 'gw.sqlite3'}", tmp_path / "gateway.log",
                            threads=2, extra=("--metrics-listen", "127.0.0.1:0"))
    try:
        ready = next(line for line in gateway.log.read_text().splitlines() if line.startswith("vgw: ready"))
        metrics = re.search(r"metrics=(\S+)", ready).group(1)
        readyz = f"https://localhost:{gateway.port}/readyz"
        certificate = ["--ca", str(pki.dir / "root/cert.pem"), "--cert", str(tls / "cert.pem"),
                       "--key", str(tls / "key.pem")]
        assert health_check([readyz, *certificate]) == 0
        assert health_check([metrics]) == 0
        assert health_check([readyz, "--ca", str(pki.dir / "root/cert.pem")]) == 1  # no client certificate
    finally:
        gateway.stop()
    assert health_check([readyz, *certificate, "--timeout", "2"]) == 1  # nobody listening
    assert health_check([metrics, "--timeout", "2"]) == 1


@pytest.mark.parametrize("listen, url", [
    (None, "http://127.0.0.1:9100/metrics"),
    ("0.0.0.0:9200", "http://127.0.0.1:9200/metrics"),
    ("10.0.0.7:9300", "http://10.0.0.7:9300/metrics"),
    ("[::]:9400", "http://[::1]:9400/metrics"),
])
def test_the_image_health_check_asks_the_metrics_listener_the_environment_names(monkeypatch, listen, url):
    """VGW_METRICS_LISTEN beats metrics.listen in the file, so the image's check follows the variable."""
    from adapters.http.health_check import _metrics_url

    if listen is None:
        monkeypatch.delenv("VGW_METRICS_LISTEN", raising=False)
    else:
        monkeypatch.setenv("VGW_METRICS_LISTEN", listen)
    assert _metrics_url() == url
