"""`vgw serve` settings: file < environment < options, types checked, the PKI folder fills the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.serve.settings import SettingsError, load_settings


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vgw.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_pki_folder_fill_everything(tmp_path):
    s = load_settings(None, {}, {"pki": tmp_path})
    assert s["listen"] == "127.0.0.1:8443" and s["limits.max_body"] == 8 * 1024 * 1024
    assert s["tls.cert"] == tmp_path / "gateway/cert.pem" and s["trust.roots"] == (tmp_path / "root/cert.pem",)


def test_file_then_environment_then_options(tmp_path):
    config = _config(tmp_path, f'pki = "{tmp_path}"\nlisten = "127.0.0.1:9000"\nstore = "sqlite:///a.db"\n'
                               "[limits]\nthreads = 3\nmax_body = 1000\n[trust]\nrevocation_max_age = 60\n")
    s = load_settings(config, {"VGW_LISTEN": "127.0.0.1:9100", "VGW_LIMITS_THREADS": "5"},
                      {"listen": None, "limits.threads": 7})
    assert s["listen"] == "127.0.0.1:9100"  # environment over file
    assert s["limits.threads"] == 7  # option over environment
    assert s["limits.max_body"] == 1000 and s["store"] == "sqlite:///a.db"  # file over default
    assert s["trust.revocation_max_age"] == 60.0


def test_explicit_files_win_over_the_pki_folder(tmp_path):
    s = load_settings(None, {"VGW_TLS_CERT": "/etc/vgw/cert.pem", "VGW_TRUST_ROOTS": "/a.pem:/b.pem"},
                      {"pki": tmp_path})
    assert s["tls.cert"] == Path("/etc/vgw/cert.pem") and s["trust.roots"] == (Path("/a.pem"), Path("/b.pem"))
    assert s["tls.key"] == tmp_path / "gateway/key.pem"


@pytest.mark.parametrize("text, message", [
    ('lisen = "x"', "unknown setting 'lisen'"),
    ("[limits]\nthreads = \"8\"", "limits.threads: expected int"),
    ("[trust]\nocsp = 1", "trust.ocsp: expected bool"),
    ("[trust]\nroots = \"/a.pem\"", "trust.roots: expected a list of paths"),
    ("listen = [", "not valid TOML"),
])
def test_a_wrong_file_is_refused_with_the_settings_name(tmp_path, text, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(_config(tmp_path, text), {}, {"pki": tmp_path})


def test_a_wrong_environment_value_names_its_variable(tmp_path):
    with pytest.raises(SettingsError, match="VGW_TRUST_OCSP"):
        load_settings(None, {"VGW_TRUST_OCSP": "maybe"}, {"pki": tmp_path})


def test_without_pki_the_trust_files_are_required():
    with pytest.raises(SettingsError, match="missing: tls.cert, tls.key, trust.registry, trust.roots"):
        load_settings(None, {}, {})


def test_the_bank_exchange_in_serve_needs_a_bank_link_and_the_banks_certificate(tmp_path):
    from adapters.serve.command import bank_exchange_problem

    (tmp_path / "bank").mkdir()
    s = load_settings(None, {"VGW_BANK_EXCHANGE": "true"}, {"pki": tmp_path})
    assert s["bank.cert"] == tmp_path / "bank/cert.pem" and s["bank.resend_seconds"] == 1800.0
    assert "bank.amqp" in bank_exchange_problem(s)  # no bank on the other end of an in-process queue
    assert "bank.cert" in bank_exchange_problem(s, embedded=True)  # the bank's certificate is not there
    (tmp_path / "bank/cert.pem").write_text("pinned", encoding="utf-8")
    assert bank_exchange_problem(s, embedded=True) is None
    s = load_settings(None, {"VGW_BANK_EXCHANGE": "1", "VGW_BANK_AMQP": "amqp://h/", "VGW_BANK_BATCH_SECONDS": "0"},
                      {"pki": tmp_path})
    assert "bank.batch_seconds" in bank_exchange_problem(s)
    s = load_settings(None, {"VGW_BANK_EXCHANGE": "1", "VGW_BANK_AMQP": "amqp://h/", "VGW_BANK_RESEND_SECONDS": "-1"},
                      {"pki": tmp_path})
    assert "resend" in bank_exchange_problem(s)
    assert bank_exchange_problem(load_settings(None, {}, {"pki": tmp_path})) is None  # off: nothing to check
