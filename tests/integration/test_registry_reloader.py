"""The registry file is re-read on change; a broken edit never replaces a working registry."""

from __future__ import annotations

import datetime
import os
import shutil

import pytest

from adapters.serve.registry_reloader import RegistryReloader
from gateway.errors import Refusal
from gateway.trust.roles import Role
from gateway.vouchers.check import check_signed_voucher

from ..conftest import AGENCY_A, NOW


def _touch_later(path, seconds: int) -> None:
    """Give the edited file a distinct mtime even on filesystems with coarse timestamps."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


def test_grants_added_to_the_file_take_effect_and_bad_edits_do_not(pki, tmp_path, factory, banks, sign_voucher):
    registry_file = tmp_path / "registry.toml"
    shutil.copy(pki.manifest["registry"], registry_file)
    original = registry_file.read_text(encoding="utf-8")
    platform = pki.platform(registry_text=original)
    reloader = RegistryReloader(registry_file, platform)
    assert reloader.reload_if_changed().changed is False

    # The head of agency A signing as preparer is refused ...
    signed = sign_voucher(factory.voucher(AGENCY_A, today=NOW.date()), role="head")
    with pytest.raises(Refusal) as exc:
        check_signed_voucher(signed, platform=platform, banks=banks, role=Role.PREPARER, now=NOW)
    assert exc.value.code == "signer-not-authorised"

    # ... until the operator adds a preparer grant for the head's certificate.
    _, head_cert = pki.person(AGENCY_A, "head")
    grant = (f'\n[[grant]]\nagency = "{AGENCY_A}"\nrole = "preparer"\nperson = "stand-in"\nkind = "authorised"\n'
             f'acting_for = "the preparer"\ncert_issuer = "{head_cert.issuer.rfc4514_string()}"\n'
             f'cert_serial = "{head_cert.serial_number:X}"\n'
             f'valid_from = {(NOW - datetime.timedelta(days=1)).isoformat()}\n'
             f'valid_to = {(NOW + datetime.timedelta(days=1)).isoformat()}\n')
    registry_file.write_text(original + grant, encoding="utf-8")
    _touch_later(registry_file, 1)
    result = reloader.reload_if_changed()
    assert result.changed and result.error is None and result.grants == len(platform.registry.grants)
    accepted = check_signed_voucher(signed, platform=platform, banks=banks, role=Role.PREPARER, now=NOW)
    assert accepted.signer.grant.kind.value == "authorised"

    # A broken edit is reported and the working registry stays.
    registry_file.write_text(original + "\n[[grant]]\nagency = 'x'\n", encoding="utf-8")
    _touch_later(registry_file, 2)
    result = reloader.reload_if_changed()
    assert result.changed is False and "missing role" in result.error
    assert check_signed_voucher(signed, platform=platform, banks=banks, role=Role.PREPARER, now=NOW)
