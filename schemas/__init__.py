"""The XML schemas the gateway speaks, shipped as package data so a wheel carries them."""

from importlib import resources
from pathlib import Path


def schema_path(name: str) -> Path:
    """Filesystem path of a schema shipped in this package (e.g. ``voucher.xsd``)."""
    return Path(str(resources.files(__name__).joinpath(name)))
