"""A `vgw pki init` folder copied elsewhere (out of a container's volume) still names files that exist."""

import datetime
import json
import shutil
from pathlib import Path

import pytest

from adapters.pki_manifest import read_pki_manifest
from simulators.pki.layout import init_pki


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_a_copied_pki_folder_names_its_own_files(tmp_path):
    made = tmp_path / "etc" / "vgw" / "pki"
    init_pki(made, agencies=1, now=datetime.datetime.now(datetime.timezone.utc))
    copied = tmp_path / "elsewhere" / "pki"
    shutil.copytree(made, copied)
    shutil.rmtree(made)

    written = json.loads((copied / "manifest.json").read_text(encoding="utf-8"))
    paths = [s for s in _strings(written) if s.startswith(str(made) + "/")]
    assert paths, "the manifest names files by absolute path"
    assert not any(Path(p).exists() for p in paths)

    manifest = read_pki_manifest(copied)
    moved = [s for s in _strings(manifest) if s.startswith(str(copied) + "/")]
    assert len(moved) == len(paths)
    assert all(Path(p).exists() for p in moved)
    assert not any(s.startswith(str(made)) for s in _strings(manifest))
    assert manifest["dir"] == str(copied)


def test_a_folder_without_a_manifest_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        read_pki_manifest(tmp_path)
