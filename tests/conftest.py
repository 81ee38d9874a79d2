"""Shared fixtures: state databases on SQLite (always) and PostgreSQL (when reachable).

PostgreSQL is taken from ``$BRIDGE_TEST_PG_URL`` (default: the trust-auth server at
127.0.0.1:5432, database ``test``). Each test gets its own schema, dropped afterwards, so tests
never see each other's rows. Without a reachable server those tests skip with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import lru_cache

import pytest
from sqlalchemy import Engine, create_engine, text

PG_URL = os.environ.get("BRIDGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", help="run long suites (crash matrices, big property runs)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long suite: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands under test configure logging for the whole process; put the test process's back."""
    import logging

    import structlog

    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@lru_cache(maxsize=1)
def pg_unavailable_reason() -> str | None:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure means: no PostgreSQL here
        return f"PostgreSQL not reachable at {PG_URL} ({type(exc).__name__}); set BRIDGE_TEST_PG_URL"
    return None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema of this test's own."""
    reason = pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{tmp_path}/state.db"


def _migrated(url: str) -> Iterator[Engine]:
    """An engine on ``url`` with the schema at head, disposed of afterwards."""
    from bridge.store.db import make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite state database."""
    yield from _migrated(sqlite_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test on both databases: the ledger must behave identically on each."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """A migrated state database, SQLite and PostgreSQL in turn."""
    yield from _migrated(db_url)
