"""``SimStore``: the simulated infobase, in memory and thread-safe.

Owns the rows of every entity set (typed per ``schema.py``), ``DataVersion`` (a fresh opaque string
on every write, as 1C does — including writes that change nothing), the exchange plan's change
registration with message numbers (``changes_since`` / ``acknowledge``), the counters tests assert
on (``effective_writes``, ``requests``, ``log``, ``if_match``) and helpers for additional
attributes (``property_key``, ``attribute``, ``set_attribute``).

Stored rows are never mutated in place (every write stores a new dict), so readers may iterate a
snapshot without holding the lock. Sets with a ``Date`` field keep a date index (``dated``), kept
current by every write, so a date-window read visits only the rows of its window.
Must not import anything of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import itertools
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.simulator.schema import DATETIME, EMPTY_GUID, PROPERTIES, UNDEFINED_TYPE, Schema, build_schema
from bridge.simulator.wire import coerce_composite, coerce_row

EXCHANGE_PLAN = "ExchangePlan_ОбменСайтом"
# What the site exchange plan registers (its "content" in 1C terms).
EXCHANGE_CONTENT = frozenset(
    {
        "Document_ЗаказКлиента",
        "Document_ВозвратТоваровОтКлиента",
        "Document_РеализацияТоваровУслуг",
        "Catalog_Партнеры",
        "Catalog_КартыЛояльности",
        "Catalog_Номенклатура",
    }
)
ATTRIBUTES = "ДополнительныеРеквизиты"
DATE = "Date"  # the field every document set is indexed on (as 1C's document tables are)


@dataclass(slots=True)
class Change:
    """One registered change for a node: the object, whether it was deleted, its message number."""

    entity_set: str
    key: str
    deleted: bool
    seq: int
    message_no: int | None = None  # None until a SelectChanges sends it


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One HTTP request the server saw (decoded path and query string)."""

    method: str
    kind: str
    path: str
    query: str


class SimStore:
    """The simulated infobase. All methods are safe to call from the server's threads."""

    def __init__(self, schema: Schema | None = None) -> None:
        self.schema = schema or build_schema()
        self._lock = threading.RLock()
        self._data: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schema.entity_sets}
        # Sets with a ``Date`` field: (Date, Ref_Key) in order, and the keys whose Date is not a
        # datetime at all (none in practice; kept so a range read can never miss a row).
        self._by_date: dict[str, list[tuple[datetime, str]]] = {
            es.name: [] for es in self.schema.entity_sets.values() if _dated(es)
        }
        self._undated: dict[str, set[str]] = {name: set() for name in self._by_date}
        self._versions = itertools.count(1)
        self._seq = itertools.count(1)
        self._numbers = itertools.count(1)
        self._changes: dict[str, dict[tuple[str, str], Change]] = {}
        self._hash: dict[str, str] = {}
        self.effective_writes: Counter[tuple[str, str]] = Counter()
        self.writes: Counter[tuple[str, str]] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.log: list[RequestRecord] = []
        self.if_match: list[tuple[str, str, str]] = []  # (entity set, key, header value)

    # -- rows ------------------------------------------------------------------------------------

    def put(self, entity_set: str, row: Mapping[str, Any], *, track: bool = True) -> dict[str, Any]:
        """Create or wholly replace an object; assigns ``Ref_Key`` if absent, bumps ``DataVersion``.

        ``track=False`` skips exchange-plan registration (bulk loading). Returns a copy.
        """
        with self._lock:
            return copy.deepcopy(self._data[entity_set][self.insert(entity_set, row, track=track)])

    def insert(self, entity_set: str, row: Mapping[str, Any], *, track: bool = True) -> str:
        """``put`` for bulk loading: returns only the ``Ref_Key`` (no copy)."""
        es = self.schema[entity_set]
        with self._lock:
            stored = coerce_row(es, row, lenient=self.schema.dropped)
            if stored.get("Ref_Key", EMPTY_GUID) == EMPTY_GUID:
                stored["Ref_Key"] = str(uuid.uuid4())
            if es.is_document and not stored.get("Number"):
                stored["Number"] = f"УТ-{next(self._numbers):08d}"
            stored["DataVersion"] = self._next_version()
            self._store(entity_set, stored["Ref_Key"], stored)
            if track:
                self._register(entity_set, stored["Ref_Key"], deleted=False)
            return str(stored["Ref_Key"])

    def get(self, entity_set: str, key: str) -> dict[str, Any] | None:
        """A copy of one object, or ``None``."""
        with self._lock:
            row = self._data[entity_set].get(str(key).lower())
            return copy.deepcopy(row) if row is not None else None

    def rows(self, entity_set: str) -> list[dict[str, Any]]:
        """Copies of every object of a set (insertion order)."""
        return copy.deepcopy(self.snapshot(entity_set))

    def snapshot(self, entity_set: str) -> list[dict[str, Any]]:
        """The stored rows themselves (read-only by convention: writes replace, never mutate)."""
        with self._lock:
            return list(self._data[entity_set].values())

    def row(self, entity_set: str, key: str) -> dict[str, Any] | None:
        """The stored row itself (read-only, like ``snapshot``'s), or ``None``."""
        with self._lock:
            return self._data[entity_set].get(key)

    def count(self, entity_set: str) -> int:
        with self._lock:
            return len(self._data[entity_set])

    def delete(self, entity_set: str, key: str, *, track: bool = True) -> bool:
        """Delete an object outright (1C's immediate deletion); registered as a deletion."""
        with self._lock:
            gone = self._drop(entity_set, str(key).lower())
            if gone and track:
                self._register(entity_set, str(key).lower(), deleted=True)
            return gone

    def patch(
        self, entity_set: str, key: str, fields: Mapping[str, Any], *, track: bool = True, count: bool = True
    ) -> dict[str, Any]:
        """Apply changed fields (tabular sections replace whole); ``KeyError`` if absent.

        Bumps ``DataVersion`` even when nothing changed; ``effective_writes`` counts only the
        writes that changed something (``count=False``: not a PATCH, e.g. posting).
        """
        es = self.schema[entity_set]
        key = str(key).lower()
        with self._lock:
            old = self._data[entity_set].get(key)
            if old is None:
                raise KeyError(key)
            new = coerce_row(es, fields, base=old, lenient=self.schema.dropped)
            new["Ref_Key"] = key
            if count:
                self.writes[(entity_set, key)] += 1
            if count and {k: v for k, v in new.items() if k != "DataVersion"} != {
                k: v for k, v in old.items() if k != "DataVersion"
            }:
                self.effective_writes[(entity_set, key)] += 1
            new["DataVersion"] = self._next_version()
            self._store(entity_set, key, new)
            if track:
                self._register(entity_set, key, deleted=False)
            return copy.deepcopy(new)

    def dated(
        self,
        entity_set: str,
        low: datetime | None,
        high: datetime | None,
        *,
        low_strict: bool = False,
        high_strict: bool = False,
    ) -> list[dict[str, Any]] | None:
        """The stored rows whose ``Date`` is a datetime within ``low``…``high`` (``None``: open end;
        inclusive unless strict), through the set's date index; ``None`` when the set has no
        ``Date``. Rows whose ``Date`` is no datetime are in ``undated``. In date order."""
        with self._lock:
            index = self._by_date.get(entity_set)
            if index is None:
                return None
            if low is None:
                start = 0
            elif low_strict:
                start = bisect.bisect_right(index, low, key=_first)
            else:
                start = bisect.bisect_left(index, low, key=_first)
            if high is None:
                stop = len(index)
            elif high_strict:
                stop = bisect.bisect_left(index, high, key=_first)
            else:
                stop = bisect.bisect_right(index, high, key=_first)
            rows = self._data[entity_set]
            return [rows[key] for _, key in index[start:stop]]

    def undated(self, entity_set: str) -> list[dict[str, Any]]:
        """The stored rows of a dated set whose ``Date`` is not a datetime (none in practice)."""
        with self._lock:
            rows = self._data[entity_set]
            return [rows[key] for key in self._undated.get(entity_set, ())]

    def _store(self, entity_set: str, key: str, row: dict[str, Any]) -> None:
        """Store a row (new or replacing), keeping the date index current. Under the lock."""
        index = self._by_date.get(entity_set)
        if index is not None:
            old = self._data[entity_set].get(key)
            if old is None or old.get(DATE) != row.get(DATE):
                if old is not None:
                    self._unindex(entity_set, key, old)
                when = row.get(DATE)
                if isinstance(when, datetime):
                    bisect.insort(index, (when, key))
                else:
                    self._undated[entity_set].add(key)
        self._data[entity_set][key] = row

    def _drop(self, entity_set: str, key: str) -> bool:
        """Remove a row (and its index entry); False when there was none. Under the lock."""
        old = self._data[entity_set].pop(key, None)
        if old is None:
            return False
        if entity_set in self._by_date:
            self._unindex(entity_set, key, old)
        return True

    def _unindex(self, entity_set: str, key: str, row: dict[str, Any]) -> None:
        when = row.get(DATE)
        if not isinstance(when, datetime):
            self._undated[entity_set].discard(key)
            return
        index = self._by_date[entity_set]
        at = bisect.bisect_left(index, (when, key))
        if at < len(index) and index[at] == (when, key):
            del index[at]

    def order_hash(self, key: str) -> str:
        """The stable but not-GUID order 1C's ``$orderby=Ref_Key`` follows here."""
        h = self._hash.get(key)
        if h is None:
            h = self._hash[key] = hashlib.md5(key.encode()).hexdigest()
        return h

    def _next_version(self) -> str:
        n = next(self._versions)
        return base64.b64encode(n.to_bytes(8, "big")).decode()

    def next_number(self) -> int:
        return next(self._numbers)

    # -- exchange plan ---------------------------------------------------------------------------

    def _register(self, entity_set: str, key: str, *, deleted: bool) -> None:
        if entity_set not in EXCHANGE_CONTENT or EXCHANGE_PLAN not in self._data:
            return
        for node in self._data[EXCHANGE_PLAN]:
            # Re-registering clears the message number: the object must be sent again.
            self._changes.setdefault(node, {})[(entity_set, key)] = Change(
                entity_set, key, deleted, next(self._seq)
            )

    def changes_since(self, node: str, message_no: int) -> list[Change]:
        """Select the node's registered changes into message ``message_no`` (1C ``SelectChanges``).

        Returns every change not yet acknowledged, oldest first; unsent ones get ``message_no``.
        """
        node = node.lower()
        with self._lock:
            if node not in self._data.get(EXCHANGE_PLAN, {}):
                raise KeyError(node)
            changes = sorted(self._changes.get(node, {}).values(), key=lambda c: c.seq)
            for change in changes:
                if change.message_no is None:
                    change.message_no = message_no
            self._set_node_counter(node, "SentNo", message_no)
            return [copy.copy(c) for c in changes]

    def acknowledge(self, node: str, message_no: int) -> int:
        """Forget changes sent in messages up to ``message_no`` (``NotifyChangesReceived``)."""
        node = node.lower()
        with self._lock:
            if node not in self._data.get(EXCHANGE_PLAN, {}):
                raise KeyError(node)
            registered = self._changes.get(node, {})
            done = [
                k for k, c in registered.items() if c.message_no is not None and c.message_no <= message_no
            ]
            for k in done:
                del registered[k]
            self._set_node_counter(node, "ReceivedNo", message_no)
            return len(done)

    def pending_changes(self, node: str) -> list[Change]:
        with self._lock:
            return sorted(
                (copy.copy(c) for c in self._changes.get(node.lower(), {}).values()), key=lambda c: c.seq
            )

    def clear_changes(self) -> None:
        with self._lock:
            self._changes.clear()

    def _set_node_counter(self, node: str, name: str, value: int) -> None:
        row = dict(self._data[EXCHANGE_PLAN][node])
        row[name] = max(int(row.get(name, 0)), int(value))
        row["DataVersion"] = self._next_version()
        self._store(EXCHANGE_PLAN, node, row)

    # -- additional attributes -------------------------------------------------------------------

    def property_key(self, description: str) -> str | None:
        """The ``Ref_Key`` of the additional attribute with this ``Description``."""
        for row in self.snapshot(PROPERTIES):
            if row.get("Description") == description and not row.get("DeletionMark"):
                return str(row["Ref_Key"])
        return None

    def drop_attribute(self, description: str) -> bool:
        """Delete an additional attribute (as if the administrator never created it)."""
        key = self.property_key(description)
        return key is not None and self.delete(PROPERTIES, key, track=False)

    def attribute(self, entity_set: str, key: str, description: str) -> Any:
        """The value of an object's additional attribute, or ``None`` when it has no row."""
        prop = self.property_key(description)
        row = self.get(entity_set, key)
        if prop is None or row is None:
            return None
        for r in row.get(ATTRIBUTES, []):
            if r["Свойство_Key"] == prop:
                return r["Значение"]
        return None

    def set_attribute(self, entity_set: str, key: str, description: str, value: Any) -> dict[str, Any]:
        """Write one additional attribute the way a 1C user would (whole section, new version).

        Not counted in ``writes``/``effective_writes``, which are for the client's PATCHes.
        """
        prop = self.property_key(description)
        if prop is None:
            raise KeyError(description)
        with self._lock:
            row = self.get(entity_set, key)
            if row is None:
                raise KeyError(key)
            section = [r for r in row.get(ATTRIBUTES, []) if r["Свойство_Key"] != prop]
            prop_row = self.get(PROPERTIES, prop) or {}
            type_name = prop_row.get("ТипЗначения") or None
            if value is not None:
                val, type_name = coerce_composite(value, type_name)
                section.append(
                    {
                        "Свойство_Key": prop,
                        "Значение": val,
                        "Значение_Type": type_name,
                        "ТекстоваяСтрока": val if isinstance(val, str) and len(val) > 1024 else "",
                    }
                )
            for r in section:
                r.pop("LineNumber", None)
                if r.get("Значение_Type") == UNDEFINED_TYPE:
                    r["Значение_Type"] = type_name or UNDEFINED_TYPE
            return self.patch(entity_set, key, {ATTRIBUTES: section}, count=False)

    def touch(self, entity_set: str, key: str) -> dict[str, Any]:
        """Re-save an object unchanged, as a user pressing «Записать»: only ``DataVersion`` moves."""
        return self.patch(entity_set, key, {}, count=False)

    # -- request accounting ----------------------------------------------------------------------

    def record_request(self, method: str, kind: str, path: str, query: str) -> None:
        with self._lock:
            self.requests[(method, kind)] += 1
            self.log.append(RequestRecord(method, kind, path, query))

    def request_count(self, method: str | None = None, kinds: Iterable[str] | None = None) -> int:
        """Requests seen, optionally only one method and/or some kinds."""
        wanted = set(kinds) if kinds is not None else None
        with self._lock:
            return sum(
                n
                for (m, k), n in self.requests.items()
                if (method is None or m == method) and (wanted is None or k in wanted)
            )

    def reset_counters(self) -> None:
        with self._lock:
            self.effective_writes.clear()
            self.writes.clear()
            self.requests.clear()
            self.log.clear()
            self.if_match.clear()


def _dated(es: Any) -> bool:
    f = es.field(DATE)
    return f is not None and f.type == DATETIME


def _first(entry: tuple[datetime, str]) -> datetime:
    return entry[0]


def now() -> datetime:
    """The simulated server's wall clock (naive, like 1C's)."""
    return datetime.now().replace(microsecond=0)
