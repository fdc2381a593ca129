"""Shared helpers for the simulator tests: every seeded scenario names its seed on failure."""
from __future__ import annotations

import pytest


def seeds(count: int, base: int = 1000) -> list[int]:
    """Deterministic seeds for "over many seeds" scenarios."""
    return list(range(base, base + count))


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d
