"""Helpers for the adapter proofs (no tests here): an in-memory ``TrackingState`` that applies what a
source yields the way the cycle would, a client factory for the simulator, and the encoded length
of a logged query string."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from bridge.onec.literals import encode
from bridge.onec.mapping import Mapping, load_mapping
from bridge.onec.odata import ODataClient
from bridge.onec.sources import Change, ChangeSource
from bridge.simulator import SimStore, Simulator

MSK = ZoneInfo("Europe/Moscow")
ROOT = Path(__file__).parents[2]
ORDERS = "Document_ЗаказКлиента"
PARTNERS = "Catalog_Партнеры"


def mapping() -> Mapping:
    return load_mapping(ROOT / "mappings" / "ut11.yaml")


def client(sim: Simulator, **kwargs: Any) -> ODataClient:
    kwargs.setdefault("timeout_s", 10)
    return ODataClient(sim.odata_url, sim.username, sim.password, MSK, **kwargs)


def poll(start: datetime, **kwargs: Any) -> SimpleNamespace:
    """The ``poll:`` keys a ScanSource reads."""
    values = {"start": start, "overlap_s": 600, "reconcile_days": 90, "reconcile_at": time(3, 30)}
    return SimpleNamespace(**{**values, **kwargs})


class MemoryState:
    """``TrackingState`` in memory: every order seen is tracked (``track=None``) or only open ones."""

    def __init__(self, *, track_closed: bool = True) -> None:
        self.cursors: dict[str, str] = {}
        self.docs: dict[str, dict[str, tuple[str, datetime | None, bool]]] = {}
        self.track_closed = track_closed

    def cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    def _tracked(self, entity: str) -> dict[str, tuple[str, datetime | None, bool]]:
        docs = self.docs.get(entity, {}) if entity == "order" else {}
        return {k: v for k, v in docs.items() if self.track_closed or not v[2]}

    def tracked(self, entity: str, now: datetime) -> dict[str, str]:
        return {k: v[0] for k, v in self._tracked(entity).items()}

    def tracked_since(self, entity: str, now: datetime) -> datetime | None:
        dates = [v[1] for v in self._tracked(entity).values() if v[1] is not None]
        return min(dates) if dates else None

    def versions(self, entity: str, keys: Collection[str]) -> dict[str, str]:
        docs = self.docs.get(entity, {})
        return {k: docs[k][0] for k in keys if k in docs}

    def apply(self, change: Change) -> None:
        docs = self.docs.setdefault(change.entity, {})
        if change.row is None:
            docs.pop(change.key, None)
            return
        closed = change.row.get("Статус") == "Закрыт"
        docs[change.key] = (change.version, change.row.get("Date"), closed)

    def remember(self, store: SimStore, entity_set: str = ORDERS, entity: str = "order") -> None:
        """Know every row of the store at its current version (as if a cycle had applied them)."""
        docs = self.docs.setdefault(entity, {})
        for row in store.snapshot(entity_set):
            docs[row["Ref_Key"]] = (row["DataVersion"], row["Date"].replace(tzinfo=MSK), False)

    def commit(self, source: ChangeSource, changes: Iterable[Change]) -> None:
        for change in changes:
            self.apply(change)
        self.cursors.update(source.cursor_updates())


def cycle(source: ChangeSource, state: MemoryState, now: datetime, *, ack: bool = True) -> list[Change]:
    """One cycle: read, commit, acknowledge."""
    changes = list(source.read(state, now))
    state.commit(source, changes)
    if ack:
        source.acknowledge()
    return changes


def encoded_length(query: str) -> int:
    """Bytes of a logged (decoded) query string once percent-encoded as the client sends it."""
    total = 0
    for i, part in enumerate(query.split("&")):
        key, _, value = part.partition("=")
        total += len(encode(key)) + 1 + len(encode(value)) + (1 if i else 0)
    return total
