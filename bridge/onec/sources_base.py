"""What every change source shares: ``Change``, the ``TrackingState`` it reads, the source protocol,
and reading the objects changed documents refer to (customers, cards, sales).

A source yields :class:`Change` items; the cycle applies them, commits them together with
``cursor_updates()`` in one transaction, and only then calls ``acknowledge()``. A source never
touches the state database: what it needs to know (cursors, the documents still tracked and the
``DataVersion`` last applied to each) comes through :class:`TrackingState`, which the cycle
implements over ``bridge.store``. Within one batch the objects a document refers to are yielded
before the document (the cycle needs the customer's contacts and the sale's order when it applies
an order or a return).

Must not import bridge.store, bridge.site or bridge.service.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from bridge.onec.mapping import REF_KEY, Mapping
from bridge.onec.odata import ODataClient
from bridge.onec.translate import ref, return_sale_key

__all__ = [
    "DOCUMENTS",
    "OBJECTS",
    "Change",
    "ChangeSource",
    "Entity",
    "Related",
    "TrackingState",
    "entity_of_set",
    "version_of",
]

Entity = Literal["order", "return", "sale", "customer", "card"]

#: entity -> the mapping's object name (``mapping.entity_sets()`` key).
OBJECTS: dict[str, str] = {
    "order": "orders",
    "return": "returns",
    "sale": "sales",
    "customer": "partners",
    "card": "cards",
}
DOCUMENTS = ("order", "return")
VERSION = "DataVersion"  # the platform's version property, present on every catalog and document


@dataclass(frozen=True, slots=True)
class Change:
    """One object to (re-)apply: ``row`` is the normalised OData row, ``None`` when 1C deleted it.

    Attributes:
        entity: ``order``, ``return``, ``sale``, ``customer`` or ``card``.
        key: the object's ``Ref_Key``.
        row: as :meth:`ODataClient.get_entity` returns it (aware datetimes, ``Decimal``), or None.
        version: the row's ``DataVersion`` (``""`` for a deletion or when 1C did not send one).
    """

    entity: str
    key: str
    row: dict[str, Any] | None
    version: str


class TrackingState(Protocol):
    """What a source may ask the cycle's state (read-only; the cycle owns every write).

    ``tracked`` and ``versions`` must include the ``DataVersion`` of the bridge's own write-backs,
    so that reading one back is not a change.
    """

    def cursor(self, name: str) -> str | None:
        """A committed cursor value (see each source for its names), None before the first commit."""
        ...

    def tracked(self, entity: str, now: datetime) -> dict[str, str]:
        """Documents still re-checked: ``Ref_Key`` -> last ``DataVersion`` applied.

        Orders not closed, or closed (or last changed) within ``poll.track_days`` of ``now``;
        returns changed within it; optionally cards (e.g. not yet handed out) and customers.
        """
        ...

    def tracked_since(self, entity: str, now: datetime) -> datetime | None:
        """The earliest document ``Date`` among ``tracked(entity, now)`` (aware), None if unknown."""
        ...

    def versions(self, entity: str, keys: Collection[str]) -> dict[str, str]:
        """``DataVersion`` last applied (or written) for those of ``keys`` the bridge knows."""
        ...


class ChangeSource(Protocol):
    """A change source the cycle drives: ``read``, commit, then ``acknowledge``."""

    name: str

    def read(self, state: TrackingState, now: datetime) -> Iterator[Change]:
        """Yield what changed since the committed cursors (lazily: memory stays bounded)."""
        ...

    def cursor_updates(self) -> dict[str, str]:
        """Cursor values covering everything yielded so far; commit them with those changes."""
        ...

    def acknowledge(self) -> None:
        """Tell 1C the changes are committed (call only after the local commit)."""
        ...


def version_of(row: dict[str, Any] | None) -> str:
    return str((row or {}).get(VERSION) or "")


def entity_of_set(mapping: Mapping) -> dict[str, str]:
    """Entity set name -> entity, for the sets a change source reports."""
    sets = mapping.entity_sets()
    return {sets[obj]: entity for entity, obj in OBJECTS.items()}


def select_of(mapping: Mapping, entity: str) -> list[str]:
    """The mapping's fields for ``entity`` plus ``Ref_Key`` and ``DataVersion``."""
    fields = list(mapping.select_fields(OBJECTS[entity]))
    return [*fields, *(f for f in (REF_KEY, VERSION) if f not in fields)]


class Related:
    """Reads the customers, cards and sales that changed documents refer to, when unknown or changed.

    Args:
        client: the OData client.
        mapping: names of the fields that refer to them.
    """

    def __init__(self, client: ODataClient, mapping: Mapping) -> None:
        self.client = client
        self.mapping = mapping
        self.sets = mapping.entity_sets()

    def references(self, docs: Iterable[Change]) -> dict[str, set[str]]:
        """Entity -> keys that the document rows refer to."""
        m = self.mapping
        out: dict[str, set[str]] = {"customer": set(), "card": set(), "sale": set()}
        for change in docs:
            row = change.row
            if row is None:
                continue
            if change.entity == "order":
                out["customer"].add(ref(row.get(m.orders.fields.customer)) or "")
                if m.orders.fields.card:
                    out["card"].add(ref(row.get(m.orders.fields.card)) or "")
            elif change.entity == "return":
                out["customer"].add(ref(row.get(m.returns.fields.customer)) or "")
                out["sale"].add(return_sale_key(row, m) or "")
        return {entity: {k for k in keys if k} for entity, keys in out.items()}

    def expand(self, state: TrackingState, docs: list[Change], done: set[str]) -> Iterator[Change]:
        """Yield the referenced objects the state does not know at their current version.

        ``done`` holds keys already yielded in this read (updated here).
        """
        for entity, keys in self.references(docs).items():
            yield from self.changed(entity, keys - done, state, done)

    def changed(
        self, entity: str, keys: Collection[str], state: TrackingState, done: set[str]
    ) -> Iterator[Change]:
        """Read ``keys`` fully and yield those whose ``DataVersion`` the state does not have."""
        if not keys:
            return
        known = state.versions(entity, keys)
        entity_set = self.sets[OBJECTS[entity]]
        for row in self.client.iter_by_keys(entity_set, sorted(keys), select=select_of(self.mapping, entity)):
            key = str(row.get(REF_KEY) or "")
            version = version_of(row)
            if key in done or (key in known and known[key] == version and version):
                continue
            done.add(key)
            yield Change(entity, key, row, version)
