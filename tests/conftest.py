"""Shared fixtures: where the outside reference data lives (tests/data, read-only; see its NOTICE)."""

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
REF_DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def ref_data() -> Path:
    """The outside reference data, in the repo. Missing data is an error, never a silent skip."""
    if not (REF_DATA / "NOTICE").is_file():
        raise RuntimeError(f"reference data not found at {REF_DATA}")
    return REF_DATA
