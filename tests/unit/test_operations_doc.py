"""docs/operations.md keeps up with the code: every setting of ``vgw serve`` (adapters/serve/settings.py) has its
row in the configuration reference with its environment variable and default, every option of ``vgw serve``
is listed, and every Prometheus series the code defines is in "Metrics and alerts". A setting, option or
metric added without its line in the operations manual fails here, naming it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from adapters.serve.command import add_serve_arguments
from adapters.serve.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs/operations.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text under the ``##`` heading ``title`` up to the next ``##`` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.S | re.M)
    assert match, f"docs/operations.md has no section '## {title}'"
    return match.group(1)


def shown_default(default: object) -> str:
    if default in (None, (), {}):
        return "—"
    if default == "":
        return '""'
    return str(default)


def test_every_setting_has_its_row_with_environment_variable_and_default():
    rows = set(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \| `([^`]*)` \|", DOC, re.M))
    missing = [f"| `{s.name}` | `{s.env}` | `{shown_default(s.default)}` |" for s in SETTINGS
               if (s.name, s.env, shown_default(s.default)) not in rows]
    assert not missing, "add these rows to docs/operations.md '`vgw serve` settings':\n" + "\n".join(missing)


def test_every_option_of_vgw_serve_is_in_the_reference():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    reference = section("`vgw serve` settings (configuration reference)")
    options = [o for action in parser._actions for o in action.option_strings if o.startswith("--") and o != "--help"]
    missing = [o for o in options if f"`{o}" not in reference]
    assert not missing, f"document these options of vgw serve in docs/operations.md: {missing}"


def metric_names() -> set[str]:
    """Every ``vgw_*`` series the code defines with prometheus_client."""
    pattern = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary)\(\s*(?:name=)?[\"'](vgw_[a-z0-9_]+)[\"']")
    names = set()
    for folder in ("adapters", "gateway", "simulators"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(pattern.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_metric_is_in_metrics_and_alerts():
    names = metric_names()
    assert {"vgw_vouchers_accepted", "vgw_bank_lines_unconfirmed", "vgw_http_request_duration_seconds"} <= names
    listed = section("Metrics and alerts")
    missing = sorted(n for n in names if not re.search(rf"`{n}(_total|_bucket)?[`{{]", listed))
    assert not missing, f"add these series to docs/operations.md 'Metrics and alerts': {missing}"
