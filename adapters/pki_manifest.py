"""Reading the ``manifest.json`` of a ``vgw pki init`` folder wherever that folder now is.

The manifest names every file by the absolute path it was written to (``"dir"`` is that folder). A folder
copied elsewhere — out of a container's volume with ``docker compose cp``, or onto a tester's machine — would
send every reader back to paths that no longer exist, so the paths are re-rooted under the folder actually
read. Paths outside the original folder are left as they are.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePath


def read_pki_manifest(pki_dir: str | Path) -> dict:
    """The manifest of ``pki_dir`` with its paths moved under ``pki_dir``. Raises OSError when there is no
    manifest and ValueError when it is not JSON."""
    folder = Path(pki_dir)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    made_in = manifest.get("dir")
    if not isinstance(made_in, str):
        return manifest
    return _rerooted(manifest, PurePath(made_in), folder)


def _rerooted(value, made_in: PurePath, folder: Path):
    if isinstance(value, dict):
        return {key: _rerooted(item, made_in, folder) for key, item in value.items()}
    if isinstance(value, list):
        return [_rerooted(item, made_in, folder) for item in value]
    if isinstance(value, str) and value.startswith(str(made_in)):
        try:
            return str(folder / PurePath(value).relative_to(made_in))
        except ValueError:
            return value
    return value
