"""Shared fixtures: a fresh migrated database per test, and the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analytics import store

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EMPREINTE_SHARED", ROOT.parent / "shared" / "data"))


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "test.duckdb"


@pytest.fixture
def con(db_path):
    """A fresh, migrated database file with the reference views attached."""
    c = store.connect(db_path)
    yield c
    c.close()


@pytest.fixture
def shared() -> Path:
    """../shared/data (real samples); tests using it are skipped where it is absent."""
    if not SHARED.exists():
        pytest.skip("../shared/data absent")
    return SHARED
