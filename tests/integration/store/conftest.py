"""Fixtures for the store suite: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from store_helpers import FakeClock

from tiergate.store import Store, open_store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/store.db"
    return str(request.getfixturevalue("postgres_dsn"))


OpenStore = Callable[..., Awaitable[Store]]


@pytest.fixture
async def open_more(store_url: str, clock: FakeClock) -> AsyncIterator[OpenStore]:
    """Open further stores on the same database (separate connections); closed at the end."""
    opened: list[Store] = []

    async def opener(**kwargs: object) -> Store:
        kwargs.setdefault("clock", clock)
        store = await open_store(store_url, **kwargs)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_more: OpenStore) -> Store:
    return await open_more()
