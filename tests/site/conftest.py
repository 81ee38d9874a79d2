"""Fixtures of the site tests: a migrated SQLite state database and a live ``SiteReceiver``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.simulator.site import SiteReceiver
from tests.site.site_kit import SECRET


@pytest.fixture
def site() -> Iterator[SiteReceiver]:
    with SiteReceiver(SECRET) as receiver:
        yield receiver
