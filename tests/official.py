"""Where the official-format fixtures are (files saved by the original authors' code, with its outputs).

``ATTNFER_OFFICIAL_FIXTURES`` names the folder (default: ``../shared/fixtures/official`` beside the repository).
A test that needs one skips with the reason when it is absent; with ``ATTNFER_REQUIRE_OFFICIAL_FIXTURES=1``
(``.ci/run`` sets it when the folder exists) it fails instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"


def official_dir(name: str) -> Path:
    """The fixture folder ``name`` (e.g. ``patt_lite_keras``), or skip / fail as the module docstring says."""
    root = Path(os.environ.get("ATTNFER_OFFICIAL_FIXTURES") or DEFAULT)
    folder = root / name
    if not folder.is_dir():
        reason = f"official fixtures not found at {folder} (set ATTNFER_OFFICIAL_FIXTURES)"
        if os.environ.get("ATTNFER_REQUIRE_OFFICIAL_FIXTURES") == "1":
            pytest.fail(reason + ", but ATTNFER_REQUIRE_OFFICIAL_FIXTURES=1")
        pytest.skip(reason)
    return folder


def only_file(folder: Path, pattern: str) -> Path:
    """The one file of ``folder`` matching ``pattern`` (fixture sets name their checkpoint files freely)."""
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {folder}, found {[p.name for p in found]}"
    return found[0]
