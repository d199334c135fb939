"""The vendored front-end files are exactly those VENDOR.md lists, byte for byte (sha256), each
package pinned to one version with its licence beside it; pages load them from our own static route."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

VENDOR = Path(__file__).resolve().parents[3] / "web" / "static" / "vendor"
ROW = re.compile(r"^\| ([\w./-]+) \| ([\w./-]+) \| ([0-9a-f]{64}) \|$")
PACKAGE = re.compile(r"^\| ([\w.-]+) \| (\d+\.\d+\.\d+) \| (sha512-\S+) \| (\S+) \|$")


def _table(pattern: re.Pattern[str]) -> list[tuple[str, ...]]:
    text = (VENDOR / "VENDOR.md").read_text()
    return [m.groups() for line in text.splitlines() if (m := pattern.match(line))]


def test_every_vendored_file_matches_its_recorded_sha256() -> None:
    rows = _table(ROW)
    assert len(rows) >= 4
    for file, _source, sha256 in rows:
        assert hashlib.sha256((VENDOR / file).read_bytes()).hexdigest() == sha256, file


def test_nothing_is_vendored_without_a_row_and_each_package_has_its_licence() -> None:
    listed = {file for file, _, _ in _table(ROW)}
    present = {str(p.relative_to(VENDOR)) for p in VENDOR.rglob("*") if p.is_file()}
    assert present - {"VENDOR.md", "refresh.sh"} == listed
    packages = {name for name, _version, _integrity, _licence in _table(PACKAGE)}
    assert packages == {"htmx.org", "uplot", "axe-core"}
    for name in packages:
        assert f"{name}/LICENSE" in listed, name
