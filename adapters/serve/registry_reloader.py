"""Reload the role registry when its file changes, without ever running on a half-valid one.

Operators edit ``registry.toml`` to add a deputy or end a grant; the running gateway picks the change up
on its next check (the service calls :meth:`RegistryReloader.reload_if_changed` on a timer; the CLI loads
once). A file that does not parse or validate is refused whole: the platform keeps the registry it had,
and the error is reported so it can be logged and alerted on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gateway.trust.platform import CertificatePlatform
from gateway.trust.registry import RegistryError, RoleRegistry


@dataclass(frozen=True)
class ReloadResult:
    changed: bool
    error: str | None = None
    grants: int | None = None


class RegistryReloader:
    def __init__(self, path: Path, platform: CertificatePlatform) -> None:
        self.path = Path(path)
        self.platform = platform
        self._seen = self._signature()

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload_if_changed(self) -> ReloadResult:
        """Swap in the file's registry if the file changed since the last look and is valid."""
        signature = self._signature()
        if signature == self._seen:
            return ReloadResult(changed=False)
        self._seen = signature
        if signature is None:
            return ReloadResult(changed=False, error=f"{self.path} has disappeared; keeping the loaded registry")
        try:
            registry = RoleRegistry.from_toml(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, RegistryError) as exc:
            return ReloadResult(changed=False, error=f"{self.path}: {exc}; keeping the loaded registry")
        self.platform.replace_registry(registry)
        return ReloadResult(changed=True, grants=len(registry.grants))
