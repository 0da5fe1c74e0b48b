"""Fixtures for the sender's integration tests: each store-backed test runs on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL: a SQLite file, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'tiergate.db'}"
    return str(request.getfixturevalue("postgres_dsn"))
