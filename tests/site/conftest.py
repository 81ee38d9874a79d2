"""Fixtures of the site tests: a migrated SQLite state database and a live ``SiteReceiver``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from bridge.simulator.site import SiteReceiver
from bridge.store.db import make_engine, upgrade
from tests.site.site_kit import SECRET


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    eng = make_engine(sqlite_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def site() -> Iterator[SiteReceiver]:
    with SiteReceiver(SECRET) as receiver:
        yield receiver
