"""Fixtures for the simulator's tests: a started ``Simulator`` over the sample, a ``requests``
session with UTF-8 Basic credentials, and URL helpers. Tests speak plain HTTP, never the bridge's
own client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bridge.simulator import SimStore, Simulator, load_sample


@pytest.fixture
def store() -> SimStore:
    store = SimStore()
    load_sample(store)
    return store


@pytest.fixture
def sim(store: SimStore) -> Iterator[Simulator]:
    with Simulator(store) as simulator:
        yield simulator


@pytest.fixture
def http(sim: Simulator) -> Iterator[requests.Session]:
    session = requests.Session()
    session.auth = sim.auth
    yield session
    session.close()


class OData:
    """Tiny helper: GET a set as JSON with params, return (status, parsed body or text)."""

    def __init__(self, sim: Simulator, http: requests.Session) -> None:
        self.sim = sim
        self.http = http

    def url(self, resource: str) -> str:
        return f"{self.sim.odata_url}/{resource}"

    def get(self, resource: str, **params: Any) -> requests.Response:
        params.setdefault("$format", "json")
        return self.http.get(self.url(resource), params=params, timeout=10)

    def values(self, resource: str, **params: Any) -> list[dict[str, Any]]:
        response = self.get(resource, **params)
        assert response.status_code == 200, response.text
        return list(response.json()["value"])


@pytest.fixture
def odata(sim: Simulator, http: requests.Session) -> OData:
    return OData(sim, http)
