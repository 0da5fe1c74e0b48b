"""Fixtures for the sender's integration tests: each store-backed test runs on both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tiergate.store import Store, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL: a SQLite file, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'tiergate.db'}"
    return str(request.getfixturevalue("postgres_dsn"))


@pytest.fixture
async def store(engine_url: str) -> AsyncIterator[Store]:
    """An open store on ``engine_url``, closed after the test."""
    s = await open_store(engine_url)
    try:
        yield s
    finally:
        await s.close()
