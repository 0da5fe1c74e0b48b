"""A real PostgreSQL server for the tests, started once per session.

Uses ``TIERGATE_TEST_POSTGRES_DSN`` (a superuser DSN) when set. Otherwise it runs Debian's
server binaries (``/usr/lib/postgresql/*/bin``) in a temporary directory on a free
loopback port, as the ``postgres`` OS user when the tests run as root (the server refuses
root), and stops it at the end. Every test gets its own fresh database from
`postgres_dsn`, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.plugins.tools import SETUP, missing_tool
from tiergate_kits.postgres import LocalPostgres, postgres_bindir

ENV_DSN = "TIERGATE_TEST_POSTGRES_DSN"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A superuser DSN of a running PostgreSQL server."""
    dsn = os.environ.get(ENV_DSN)
    if dsn:
        yield dsn
        return
    bindir = postgres_bindir()
    if bindir is None:
        missing_tool(
            "PostgreSQL server binaries (initdb, pg_ctl)", f"{SETUP} (Debian's postgresql), or set {ENV_DSN}"
        )
    server = LocalPostgres(bindir)
    try:
        dsn = server.start()
    except subprocess.CalledProcessError as exc:
        log = server.root / "server.log"
        detail = log.read_text() if log.exists() else exc.stderr.decode(errors="replace")
        server.stop()
        pytest.fail(f"PostgreSQL did not start: {detail}")
    try:
        yield dsn
    finally:
        server.stop()


def _with_database(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
async def postgres_dsn(postgres_server: str) -> AsyncIterator[str]:
    """The DSN of a fresh, empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(postgres_server, name)
    admin = await asyncpg.connect(postgres_server)
    try:
        for _ in range(50):
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except asyncpg.ObjectInUseError:
                await asyncio.sleep(0.1)
    finally:
        await admin.close()
