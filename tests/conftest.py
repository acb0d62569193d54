"""Shared fixtures: where the outside reference data lives (../shared/data, read-only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI must be repeatable: property tests draw the same examples every run (no example database).
# Explore locally with HYPOTHESIS_PROFILE=explore.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KESTREL_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The outside reference data. Missing data is an error, never a silent skip."""
    if not (SHARED_DATA / "README.md").is_file():
        raise RuntimeError(f"reference data not found at {SHARED_DATA}; set KESTREL_SHARED_DATA")
    return SHARED_DATA
