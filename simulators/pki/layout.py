"""Lay out a whole test PKI in a folder, and change it (revoke) the way a CA operator would.

``init_pki`` writes keys, certificates, the role registry, CRLs and a manifest of absolute paths;
``revoke`` adds a certificate to the intermediate's CRL and to the state the OCSP responder answers from
(``ca-state.json``), so a revocation shows up through both channels at once.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.trust.roles import STAGE_ORDER, TREASURY_AGENCY, Role
from gateway.vouchers.identifiers import make_national_id
from simulators.names import ID_LETTERS, person_name
from simulators.pki.authority import CertificateAuthority, IssueOptions, PrivateKey, Profile, name, new_key

ROOT_SUBJECT = dict(o="Government Root Certification Authority (TEST)")
INTERMEDIATE_SUBJECT = dict(o="行政院", ou="內政部憑證管理中心")
DEFAULT_OCSP_URL = "http://127.0.0.1:28960/ocsp"
STATE_FILE = "ca-state.json"
DEPUTY_ROLE = Role.REVIEWER


def agency_code(index: int) -> str:
    """Test agency codes in the Taipei range: 379000001A, 379000002A, ..."""
    return f"3790{index + 1:05d}A"


def write_pem_key(path: Path, key: PrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_pem_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_key(path: Path) -> PrivateKey:
    """A key this test PKI made itself. The RSA consistency check that loading runs by default costs ~40 ms
    a key (a 401-agency year loads 2,400 of them) and guards against keys from elsewhere; these are ours."""
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None,
                                              unsafe_skip_rsa_key_validation=True)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


@dataclass
class _Writer:
    """Issues and writes certificates, remembering every serial for the OCSP responder's state."""

    base: Path
    now: datetime.datetime
    issued: dict

    def pair(self, rel: str, ca: CertificateAuthority, subject: x509.Name, profile: Profile, *, key_kind="rsa",
             days=730, **options) -> dict:
        key = new_key(key_kind)
        cert = ca.issue(subject, key.public_key(), profile, IssueOptions(
            not_before=self.now - datetime.timedelta(days=1),
            not_after=self.now + datetime.timedelta(days=days), **options))
        cert_path, key_path = self.base / rel / "cert.pem", self.base / rel / "key.pem"
        write_pem_cert(cert_path, cert)
        write_pem_key(key_path, key)
        self.issued[format(cert.serial_number, "X")] = {"subject": cert.subject.rfc4514_string(), "cert": rel}
        return {"cert": str(cert_path), "key": str(key_path)}


GATEWAY_KEY_KINDS = ("ec", "rsa")


def init_pki(directory: Path, *, agencies: int = 2, now: datetime.datetime, ocsp_url: str = DEFAULT_OCSP_URL,
             seed: int = 1, gateway_key: str = "ec") -> dict:
    """Create the PKI under ``directory`` and return the manifest (also written as manifest.json).

    The gateway's key (TLS server and receipt signing) is ECDSA P-256 by default: the gateway signs one
    receipt per accepted voucher, and an RSA-2048 signature costs ~0.8 ms of CPU against ~0.05 ms for
    P-256 (``vgw bench intake`` prints both). ``gateway_key="rsa"`` keeps an RSA-2048 gateway.
    """
    if gateway_key not in GATEWAY_KEY_KINDS:
        raise ValueError(f"gateway_key must be one of {GATEWAY_KEY_KINDS}, not {gateway_key!r}")
    base = Path(directory).resolve()
    base.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    root = CertificateAuthority.new_root(name(**ROOT_SUBJECT), now)
    intermediate_key = new_key("rsa")
    intermediate = CertificateAuthority(intermediate_key, root.issue(
        name(**INTERMEDIATE_SUBJECT), intermediate_key.public_key(), Profile.INTERMEDIATE,
        IssueOptions(not_before=now - datetime.timedelta(days=1), not_after=now + datetime.timedelta(days=3650))))
    for rel, ca in (("root", root), ("intermediate", intermediate)):
        write_pem_cert(base / rel / "cert.pem", ca.cert)
        write_pem_key(base / rel / "key.pem", ca.key)
    crl_url = ocsp_url.rsplit("/", 1)[0] + "/crl/intermediate.crl"
    writer = _Writer(base, now, issued={})
    leaf = dict(ocsp_url=ocsp_url, crl_url=crl_url)
    manifest: dict = {
        "dir": str(base),
        "root": {"cert": str(base / "root/cert.pem"), "key": str(base / "root/key.pem")},
        "intermediate": {"cert": str(base / "intermediate/cert.pem"), "key": str(base / "intermediate/key.pem")},
        "ocsp": {**writer.pair("ocsp", intermediate, name(cn="MOICA OCSP Responder (TEST)", o="行政院"),
                               Profile.OCSP_RESPONDER, key_kind="ec"), "url": ocsp_url},
        "gateway": writer.pair("gateway", intermediate, name(cn="localhost", o="臺北市政府財政局",
                                                             ou="voucher-gateway"),
                               Profile.SERVICE, key_kind=gateway_key, dns_names=("localhost",),
                               ip_addresses=("127.0.0.1", "::1"), **leaf),
        "bank": writer.pair("bank", intermediate, name(cn="treasury-agent-bank", o="台北富邦商業銀行",
                                                       ou="代庫部 012-2102"),
                            Profile.SERVICE, dns_names=("localhost",), ip_addresses=("127.0.0.1",), **leaf),
        "agencies": {},
    }
    grants = []
    valid_from = now - datetime.timedelta(days=1)
    valid_to = now + datetime.timedelta(days=365)
    for index in range(agencies):
        code = agency_code(index)
        people: dict = {}
        agency = {"tls": writer.pair(f"agencies/{code}/tls", intermediate,
                                     name(cn=f"{code} accounting system", o="臺北市政府", ou=code),
                                     Profile.TLS_CLIENT, key_kind="ec", **leaf), "people": people}
        holders = {}
        for role in STAGE_ORDER:
            holders[role] = _person(rng)
        deputy = _person(rng)
        for role, (person, national_id) in list(holders.items()) + [("deputy", deputy)]:
            key_kind = "ec" if role == "deputy" else "rsa"  # the deputies use ECDSA P-256 cards
            role_name = role if role == "deputy" else role.value
            entry = writer.pair(f"agencies/{code}/people/{role_name}", intermediate,
                                name(cn=person, serial=f"TEST{national_id[-4:]}{index:04d}"), Profile.CITIZEN,
                                key_kind=key_kind, days=5 * 365, id_last_four=national_id[-4:], **leaf)
            cert = load_cert(Path(entry["cert"]))
            grant = {
                "agency": code, "person": person, "kind": "principal",
                "cert_issuer": cert.issuer.rfc4514_string(), "cert_serial": format(cert.serial_number, "X"),
                "valid_from": valid_from, "valid_to": valid_to,
            }
            if role == "deputy":
                entry["role"] = DEPUTY_ROLE.value
                grant.update(role=DEPUTY_ROLE.value, kind="deputy", acting_for=holders[DEPUTY_ROLE][0],
                             valid_to=now + datetime.timedelta(days=30))
            else:
                grant["role"] = role.value
            people[role_name] = entry
            grants.append(grant)
        manifest["agencies"][code] = agency
    manifest["treasury"] = _treasury(writer, intermediate, rng, leaf, grants, valid_from, valid_to)
    registry_path = base / "registry.toml"
    registry_path.write_text(tomli_w.dumps({"version": 1, "grant": grants}), encoding="utf-8")
    manifest["registry"] = str(registry_path)
    state = {"issued": writer.issued, "revoked": {}, "crl_number": 0, "ocsp_url": ocsp_url, "crl_url": crl_url}
    _save_state(base, state)
    write_crls(base, now)
    manifest["crl"] = str(base / "crl/intermediate.crl")
    manifest["crls"] = {"intermediate": str(base / "crl/intermediate.crl"), "root": str(base / "crl/root.crl")}
    (base / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return manifest


def _treasury(writer: _Writer, intermediate: CertificateAuthority, rng: random.Random, leaf: dict, grants: list,
              valid_from: datetime.datetime, valid_to: datetime.datetime) -> dict:
    """The Finance Bureau's operations console (TLS) and one treasury operator, who decides held vouchers."""
    code = TREASURY_AGENCY
    person, national_id = _person(rng)
    operator = writer.pair(f"treasury/people/{Role.TREASURY.value}", intermediate,
                           name(cn=person, serial=f"TEST{national_id[-4:]}9999"), Profile.CITIZEN, days=5 * 365,
                           id_last_four=national_id[-4:], **leaf)
    cert = load_cert(Path(operator["cert"]))
    grants.append({"agency": code, "person": person, "kind": "principal", "role": Role.TREASURY.value,
                   "cert_issuer": cert.issuer.rfc4514_string(), "cert_serial": format(cert.serial_number, "X"),
                   "valid_from": valid_from, "valid_to": valid_to})
    tls = writer.pair("treasury/tls", intermediate, name(cn=f"{code} treasury console", o="臺北市政府財政局", ou=code),
                      Profile.TLS_CLIENT, key_kind="ec", **leaf)
    return {"code": code, "tls": tls, "people": {Role.TREASURY.value: operator}}


def _person(rng: random.Random) -> tuple[str, str]:
    person = person_name(rng)
    national_id = make_national_id(rng.choice(ID_LETTERS), rng.choice("12"),
                                   f"{rng.randrange(10**7):07d}")
    return person, national_id


def load_state(directory: Path) -> dict:
    return json.loads((Path(directory) / STATE_FILE).read_text(encoding="utf-8"))


def _save_state(directory: Path, state: dict) -> None:
    path = Path(directory) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)  # the OCSP responder never sees a half-written file


def load_authority(directory: Path, which: str) -> CertificateAuthority:
    base = Path(directory)
    return CertificateAuthority(load_key(base / which / "key.pem"), load_cert(base / which / "cert.pem"))


CRL_LIFETIME = datetime.timedelta(days=7)


def write_crls(directory: Path, now: datetime.datetime) -> None:
    """Reissue both CRLs (DER) from the state: the intermediate's lists revoked leaves, the root's is empty."""
    base = Path(directory)
    state = load_state(base)
    state["crl_number"] += 1
    revoked = [(int(serial, 16), datetime.datetime.fromisoformat(info["time"]),
                x509.ReasonFlags(info["reason"]) if info.get("reason") else None)
               for serial, info in state["revoked"].items()]
    for which, entries in (("intermediate", revoked), ("root", [])):
        crl = load_authority(base, which).crl(entries, this_update=now - datetime.timedelta(minutes=1),
                                              next_update=now + CRL_LIFETIME, number=state["crl_number"])
        path = base / "crl" / f"{which}.crl"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.DER))
        os.replace(tmp, path)
    _save_state(base, state)


def revoke(directory: Path, cert: x509.Certificate, *, now: datetime.datetime,
           reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise) -> str:
    """Revoke ``cert`` (issued by the intermediate): update the OCSP state and reissue the CRLs."""
    base = Path(directory)
    intermediate = load_cert(base / "intermediate/cert.pem")
    if cert.issuer != intermediate.subject:
        raise ValueError("this certificate was not issued by the PKI's intermediate CA")
    state = load_state(base)
    serial = format(cert.serial_number, "X")
    state["revoked"].setdefault(serial, {"time": now.isoformat(), "reason": reason.value})
    _save_state(base, state)
    write_crls(base, now)
    return serial


def person_entry(manifest: dict, agency: str, role: str) -> dict:
    """The manifest's entry of one person: an agency's role holder (or its ``deputy``), or the treasury's
    operator (agency 379030000A, role ``treasury``). KeyError naming what is not there."""
    if agency == TREASURY_AGENCY:
        people = manifest["treasury"]["people"]
    else:
        if agency not in manifest["agencies"]:
            raise KeyError(f"no agency {agency} in this PKI")
        people = manifest["agencies"][agency]["people"]
    if role not in people:
        raise KeyError(f"no {role} in {agency}: one of {', '.join(sorted(people))}")
    return people[role]


def enroll(directory: Path, agency: str, role: str, public_key, *, now: datetime.datetime,
           token: dict) -> x509.Certificate:
    """Issue a person a new citizen certificate for ``public_key`` — a key made on their token (a card) — in
    place of the one ``init_pki`` gave them: same name and ID digits, a new serial, recorded for the OCSP
    responder; their grant in the role registry moves to the new certificate; ``cert.pem`` is replaced and
    the PEM key deleted, so no copy of a signing key of theirs is left on disk; the manifest names the token
    (``token``: module, token label, key label) instead. Returns the certificate, for the token to store."""
    base = Path(directory)
    manifest = json.loads((base / "manifest.json").read_text(encoding="utf-8"))
    entry = person_entry(manifest, agency, role)
    old = load_cert(Path(entry["cert"]))
    serial_attr = old.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
    id_last_four = serial_attr[0].value[4:8] if serial_attr else None  # TEST + last four ID digits + index
    state = load_state(base)
    cert = load_authority(base, "intermediate").issue(old.subject, public_key, Profile.CITIZEN, IssueOptions(
        not_before=now - datetime.timedelta(days=1), not_after=old.not_valid_after_utc, ocsp_url=state["ocsp_url"],
        crl_url=state["crl_url"], id_last_four=id_last_four))
    state["issued"][format(cert.serial_number, "X")] = {"subject": cert.subject.rfc4514_string(),
                                                         "cert": str(Path(entry["cert"]).parent.relative_to(base))}
    _save_state(base, state)
    registry_path = Path(manifest["registry"])
    registry = tomllib.loads(registry_path.read_text(encoding="utf-8"))
    moved = 0
    for grant in registry["grant"]:
        if grant.get("cert_serial") == format(old.serial_number, "X") and grant.get("agency") == agency:
            grant["cert_serial"] = format(cert.serial_number, "X")
            moved += 1
    if not moved:
        raise ValueError(f"the registry has no grant for {agency} {role}'s certificate")
    tmp = registry_path.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(registry), encoding="utf-8")
    os.replace(tmp, registry_path)  # the gateway's registry reloader never reads half a file
    write_pem_cert(Path(entry["cert"]), cert)
    key_path = entry.pop("key", None)
    if key_path:
        Path(key_path).unlink(missing_ok=True)
    entry["token"] = token
    (base / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return cert
