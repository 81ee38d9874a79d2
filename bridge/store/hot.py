"""The ledger's hot path on the DBAPI driver: its statements, each dialect's form of them, and the
memoised conversions it binds and reads values with.

``bridge.store.ledger`` runs these statements on the DBAPI connection under SQLAlchemy's, inside
its transaction, in the dialect's paramstyle (through SQLAlchemy Core each cost several times the
statement itself); so do ``bridge.store.tracking`` and ``bridge.store.outbox`` for what they run
per document or per delivered message (``customer_known``, ``mark_sent`` & co.). Values go
through the column types' own conversions (``schema.time_param``, ``schema.decimal_param`` & co.),
memoised here, so the rows are byte-identical to what the typed tables write. Must not import
bridge.onec, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, overload

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from bridge.domain.ledger import EntryKind
from bridge.domain.levels import LevelState
from bridge.domain.levels import Reason as LevelReason
from bridge.store.schema import time_param, time_value


def level_to_json(state: LevelState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "level_code": state.level_code,
        "valid_until": state.valid_until.isoformat() if state.valid_until else None,
        "since": state.since.isoformat() if state.since else None,
        "promoted_by": state.promoted_by,
        "previous": level_to_json(state.previous),
    }


def level_from_json(data: dict[str, Any] | None) -> LevelState | None:
    if data is None:
        return None
    return LevelState(
        data["level_code"],
        datetime.fromisoformat(data["valid_until"]) if data.get("valid_until") else None,
        datetime.fromisoformat(data["since"]) if data.get("since") else None,
        data.get("promoted_by"),
        level_from_json(data.get("previous")),
    )


# --- the hot statements, on the driver ------------------------------------------------------------

STATEMENTS = {
    "order_state": "SELECT EXISTS (SELECT 1 FROM processed WHERE doc_id = ? AND version = ?), "
    "(SELECT customer_id FROM orders WHERE id = ?)",
    "processed": "SELECT 1 FROM processed WHERE doc_id = ? AND version = ?",
    "new_customer": "INSERT INTO customers (id, name, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING",
    "lock": "SELECT id FROM customers WHERE id = ? FOR UPDATE",
    "entries": "SELECT e.id, e.kind, e.order_id, e.lot_id, e.points, e.money, e.debt_delta, "
    "e.effective_at, e.accrued_at, e.available_at, e.expires_at, a.lot_id, a.points "
    "FROM entries AS e LEFT OUTER JOIN allocations AS a ON a.entry_id = e.id "
    "WHERE e.customer_id = ? ORDER BY e.id, a.id",
    "customer": "SELECT c.level_code, c.level_valid_until, c.level_since, c.level_promoted_by, "
    "c.level_previous, c.tier_seen_at, k.number, k.status, k.onec_id "
    "FROM customers AS c LEFT OUTER JOIN cards AS k ON k.customer_id = c.id WHERE c.id = ?",
    "card": "SELECT number, status, onec_id FROM cards WHERE customer_id = ?",
    "history": 'SELECT "at", old_code, new_code, period_sum, reason, order_id FROM level_history '
    "WHERE customer_id = ? ORDER BY id",
    "event_keys": 'SELECT "key" FROM events WHERE customer_id = ?',
    "insert_allocation": "INSERT INTO allocations (entry_id, customer_id, lot_id, points) "
    "VALUES (?, ?, ?, ?)",
    "insert_history": 'INSERT INTO level_history (customer_id, "at", old_code, new_code, period_sum, '
    "reason, order_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "insert_event": 'INSERT INTO events (customer_id, "key", reason, "at", order_id, points, when_at, '
    "detail, history) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "new_counter": "INSERT INTO counters (name, value) VALUES (?, 0) ON CONFLICT (name) DO NOTHING",
    "next_counter": "UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value",
    "add_card": "INSERT INTO cards (number, serial, customer_id, status, onec_id, onec_version, "
    "created_at, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "card_number": "SELECT number FROM cards WHERE number = ?",
    "mark_processed": "INSERT INTO processed (doc_id, version, customer_id, processed_at) "
    "VALUES (?, ?, ?, ?)",
    # The bookkeeping of a delivered message (``outbox.mark_sent``, ``tracking.record_own_version``):
    # one short transaction per write-back, after 1C answered.
    "mark_sent": "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
    "last_error = '' WHERE id = ?",
    "own_processed": "INSERT INTO processed (doc_id, version, customer_id, processed_at) "
    "VALUES (?, ?, NULL, ?) ON CONFLICT (doc_id, version) DO UPDATE SET "
    "customer_id = excluded.customer_id, processed_at = excluded.processed_at",
    "own_order_version": "UPDATE orders SET version = ? WHERE id = ?",
    "own_partner_version": "UPDATE customers SET onec_version = ? WHERE id = ?",
    "own_card_version": "UPDATE cards SET onec_version = ? WHERE onec_id = ?",
    "card_onec_id": "UPDATE cards SET onec_id = ? WHERE number = ?",
    # What the cycle asks before every order (``tracking.customer_known``) and writes for a partner
    # it read (``tracking.set_contacts``).
    "customer_known": "SELECT (SELECT onec_version FROM customers WHERE id = ?), "
    "EXISTS (SELECT 1 FROM cards WHERE customer_id = ?)",
    "set_contacts": "UPDATE customers SET name = ?, phone = ?, email = ?, onec_version = ? WHERE id = ?",
}
CUSTOMER_COLUMNS = tuple(
    "level_code level_valid_until level_since level_promoted_by level_previous next_due_at tier_seen_at "
    "updated_at".split()
)
# The customer's level state, next due moment and stamp. SQLite leaves the row alone (no page
# written to the WAL) when every stored value already is the one being written; PostgreSQL always
# writes it: a skipped update there would keep the row's place in the heap, and with it the order
# in which ``due_customers`` returns customers due at the very same moment.
SAVE_CUSTOMER = {
    True: "UPDATE customers SET " + ", ".join(f"{c} = ?" for c in CUSTOMER_COLUMNS) + " WHERE id = ?",
    False: "UPDATE customers SET "
    + ", ".join(f"{c} = ?" for c in CUSTOMER_COLUMNS)
    + " WHERE id = ? AND NOT ("
    + " AND ".join(f"{c} IS ?" for c in CUSTOMER_COLUMNS)
    + ")",
}
# PostgreSQL also names the customer on the allocations' side: without it the planner may hash
# the whole allocations table for every book (its estimate of 118 index probes looks dearer than a
# scan of a smallish table: 3–8 ms per book at 1 M entries / 17 k allocations, 0.2 ms with it).
# Every allocation row carries its entry's customer (``_save`` writes ``entry.customer_id``).
ENTRIES_PG = STATEMENTS["entries"].replace(
    "ON a.entry_id = e.id", "ON a.entry_id = e.id AND a.customer_id = ?"
)
# The facts of the unit's orders and the returns against them, in one statement (kind 0 / 1).
FACTS_AND_RETURNS = (
    "SELECT 0, id, customer_id, first_seen_at, close_time, earned_tier, redeem_decided, "
    "redeem_requested, redeem_accepted, message, snapshot FROM orders WHERE id IN {ids} "
    "UNION ALL SELECT 1, id, order_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, snapshot "
    "FROM returns WHERE order_id IN {ids}"
)
INSERT_ENTRIES = (
    "INSERT INTO entries (customer_id, kind, order_id, lot_id, points, money, debt_delta, "
    "effective_at, recorded_at, accrued_at, available_at, expires_at, cause) VALUES "
)
FACT_COLUMNS = tuple(
    (
        "customer_id number doc_date first_seen_at close_time earned_tier redeem_decided "
        "redeem_requested redeem_accepted message version status snapshot updated_at"
    ).split()
)
STATEMENTS["save_facts"] = (
    f"INSERT INTO orders (id, {', '.join(FACT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(FACT_COLUMNS) + 1))}) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in FACT_COLUMNS)
)
CHUNK = 500  # rows per multi-row INSERT (SQLite allows 32 766 parameters per statement)
KINDS = {kind.value: kind for kind in EntryKind}
LEVEL_REASONS = {reason.value: reason for reason in LevelReason}


class Sql:
    """One dialect's hot statements (``?`` on SQLite, ``%s`` on psycopg) and its JSON binding."""

    def __init__(self, pg: bool) -> None:
        self.pg = pg
        self.s = {name: self._q(text) for name, text in STATEMENTS.items()}
        self.s["save_customer"] = self._q(SAVE_CUSTOMER[pg])
        if pg:
            self.s["entries"] = self._q(ENTRIES_PG)
        self._sized: dict[tuple[str, int], str] = {}
        if pg:
            from psycopg.types.json import Json  # how SQLAlchemy's psycopg dialect binds JSON

            self.json: Callable[[Any], Any] = Json
            self.loads: Callable[[Any], Any] = _same  # psycopg parses json columns itself
        else:
            self.json = json.dumps  # SQLAlchemy's JSON on SQLite: json.dumps (None → 'null')
            self.loads = _loads

    def _q(self, text: str) -> str:
        return text.replace("?", "%s") if self.pg else text

    def sized(self, head: str, rows: int, width: int) -> str:
        """``head`` followed by ``rows`` groups of ``width`` placeholders (built once per size)."""
        text = self._sized.get((head, rows))
        if text is None:
            group = "(" + ", ".join("?" * width) + ")"
            text = self._sized[(head, rows)] = self._q(head + ", ".join([group] * rows))
        return text

    def facts_and_returns(self, rows: int) -> str:
        text = self._sized.get((FACTS_AND_RETURNS, rows))
        if text is None:
            ids = "(" + ", ".join("?" * rows) + ")"
            text = self._sized[(FACTS_AND_RETURNS, rows)] = self._q(FACTS_AND_RETURNS.format(ids=ids))
        return text


# --- conversions, memoised ------------------------------------------------------------------------
# A unit of work binds the same few moments many times (its clock, the close time, a lot's dates)
# and reads the same stored texts back: each distinct value is converted once (by ``schema``'s own
# functions, so the bytes are theirs) and found by value afterwards. The key is the datetime itself:
# aware datetimes that compare equal denote the same instant, so they convert to the same value;
# the one exception, two wall times of one zone that differ only in ``fold`` (compared without it),
# is kept apart by keying a folded one with its fold. A naive value raises and is never cached.

# Bounded small: a few moments and texts recur (within a unit of work, across a cycle), the rest
# is cleared now and then. 50 000 entries per cache (five of them) held ~70 MB in a long catch-up
# for no measurable speed (1 103-1 131 against 1 127-1 167 orders/s at 5 000 orders).
CACHE_LIMIT = 4_096
_PARAMS: dict[bool, dict[Any, Any]] = {False: {}, True: {}}
_VALUES: dict[str, datetime | None] = {}


def bind_time(value: datetime | None, pg: bool) -> Any:
    """``schema.time_param``, memoised."""
    if value is None:
        return None
    cache = _PARAMS[pg]
    key = (value, 1) if value.fold else value
    try:
        return cache[key]
    except KeyError:
        pass
    result = time_param(value, pg)
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[key] = result
    return result


@overload
def read_time(value: None) -> None: ...
@overload
def read_time(value: str | datetime) -> datetime: ...
def read_time(value: Any) -> datetime | None:
    """``schema.time_value``, memoised for stored text (SQLite)."""
    if value.__class__ is not str:
        other: datetime | None = time_value(value)
        return other
    try:
        return _VALUES[value]
    except KeyError:
        pass
    result = time_value(value)
    if len(_VALUES) >= CACHE_LIMIT:
        _VALUES.clear()
    _VALUES[value] = result
    return result


# The level state before the last promotion, stored as JSON on the customer's row: read and written
# by every unit of work of a customer with a level, and mostly unchanged. On SQLite the stored text
# is parsed once (the state is immutable, so the same text gives the same object) and an object's
# text is encoded once; the encode cache holds the object itself, so its id cannot be reused while
# cached. PostgreSQL binds and parses the dicts itself (``Json``), so it takes the plain path.
_PREVIOUS_STATES: dict[str, LevelState | None] = {}
_PREVIOUS_TEXTS: dict[int, tuple[LevelState | None, Any]] = {}
_DETAIL_TEXTS: dict[tuple[tuple[str, str], ...], str] = {}


def previous_state(sql: Sql, stored: Any) -> LevelState | None:
    if sql.pg or stored.__class__ is not str:
        return level_from_json(sql.loads(stored))
    try:
        return _PREVIOUS_STATES[stored]
    except KeyError:
        pass
    state = level_from_json(sql.loads(stored))
    if len(_PREVIOUS_STATES) >= CACHE_LIMIT:
        _PREVIOUS_STATES.clear()
    _PREVIOUS_STATES[stored] = state
    return state


def previous_param(sql: Sql, state: LevelState | None) -> Any:
    if sql.pg:
        return sql.json(level_to_json(state))
    hit = _PREVIOUS_TEXTS.get(id(state))
    if hit is not None and hit[0] is state:
        return hit[1]
    text = sql.json(level_to_json(state))
    if len(_PREVIOUS_TEXTS) >= CACHE_LIMIT:
        _PREVIOUS_TEXTS.clear()
    _PREVIOUS_TEXTS[id(state)] = (state, text)
    return text


def detail_param(sql: Sql, detail: dict[str, str]) -> Any:
    """An event's ``detail`` as bound: few distinct ones (tier and level names), encoded once each
    on SQLite; the key is the items in order, and only plain strings are taken by value."""
    if sql.pg:
        return sql.json(detail)
    key = tuple(detail.items())
    text = _DETAIL_TEXTS.get(key)
    if text is None:
        text = sql.json(detail)
        if all(k.__class__ is str and v.__class__ is str for k, v in key):
            if len(_DETAIL_TEXTS) >= CACHE_LIMIT:
                _DETAIL_TEXTS.clear()
            _DETAIL_TEXTS[key] = text
    return text


def _same(value: Any) -> Any:
    return value


def _loads(value: Any) -> Any:
    return None if value is None else json.loads(value)


_SQL: dict[bool, Sql] = {}


def driver(conn: Connection) -> tuple[Any, Sql]:
    """The DBAPI connection under ``conn`` (its transaction begun) and its dialect's statements."""
    if not conn.in_transaction():
        conn.begin()  # what SQLAlchemy does before its first statement (BEGIN IMMEDIATE on SQLite)
    pg = conn.dialect.name == "postgresql"
    sql = _SQL.get(pg)
    if sql is None:
        sql = _SQL[pg] = Sql(pg)
    return conn.connection.driver_connection, sql


class errors:  # lower case: used as a function, ``with errors(conn, what):``
    """Driver errors surface as SQLAlchemy's (``DBAPIError`` and kin), as on the typed path.

    A class rather than a ``contextmanager`` generator: it wraps every hot statement, and a
    generator costs several times as much to enter and leave.
    """

    __slots__ = ("conn", "what")

    def __init__(self, conn: Connection, what: str) -> None:
        self.conn = conn
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            error = self.conn.dialect.loaded_dbapi.Error
            if isinstance(exc, error):
                raise DBAPIError.instance(self.what, None, exc, error) from exc
