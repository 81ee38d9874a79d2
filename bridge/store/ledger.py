"""The ledger repository: rebuild a customer's book from the database and insert what changed.

Balances are never stored: a book is rebuilt from the insert-only ``entries`` and ``allocations``
each time (through ``Book.absorb``, the same code that applies new entries in memory), so there
is no cached balance to drift. ``save_book`` inserts the unit of work's new entries, allocations,
level history and events, and upserts the working facts (orders, level state).

The statements every unit of work runs (``order_state``, ``lock_customer``, ``load_book``,
``save_book``, ``mark_processed``) go to the DBAPI connection under SQLAlchemy's, inside its
transaction, in the dialect's paramstyle: through SQLAlchemy Core each cost several times the
statement itself. They bind and read values with the column types' own conversions
(``schema.decimal_param`` & co.), so the rows are byte-identical to what the typed tables write.
Everything else stays on SQLAlchemy Core.

Concurrency: every unit of work calls ``lock_customer`` first. On PostgreSQL that takes the
customer's row lock (``SELECT … FOR UPDATE``), so two writers can never spend the same point;
SQLite transactions start with ``BEGIN IMMEDIATE`` (see ``bridge.store.db``) and so are already
serial. Must not import bridge.onec, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from bridge.domain.book import Book, OrderFacts
from bridge.domain.ledger import Allocation, EntryKind, LotDates, canonical_key
from bridge.domain.levels import HistoryEntry, LevelState
from bridge.domain.levels import Reason as LevelReason
from bridge.domain.model import Card, CardStatus, ReturnDoc
from bridge.store import schema as t
from bridge.store.codec import order_from_json, order_to_json, return_from_json, return_to_json
from bridge.store.schema import decimal_param, decimal_value, time_param, time_value


def upsert(conn: Connection, table: Any, values: dict[str, Any], keys: list[str]) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE, on SQLite and PostgreSQL alike."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**values)
    updates = {k: v for k, v in values.items() if k not in keys}
    if updates:
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates))
    else:
        conn.execute(stmt.on_conflict_do_nothing(index_elements=keys))


def _level_to_json(state: LevelState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "level_code": state.level_code,
        "valid_until": state.valid_until.isoformat() if state.valid_until else None,
        "since": state.since.isoformat() if state.since else None,
        "promoted_by": state.promoted_by,
        "previous": _level_to_json(state.previous),
    }


def _level_from_json(data: dict[str, Any] | None) -> LevelState | None:
    if data is None:
        return None
    return LevelState(
        data["level_code"],
        datetime.fromisoformat(data["valid_until"]) if data.get("valid_until") else None,
        datetime.fromisoformat(data["since"]) if data.get("since") else None,
        data.get("promoted_by"),
        _level_from_json(data.get("previous")),
    )


# --- the hot statements, on the driver ------------------------------------------------------------

_STATEMENTS = {
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
    "c.level_previous, k.number, k.status, k.onec_id "
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
}
_CUSTOMER_COLUMNS = tuple(
    "level_code level_valid_until level_since level_promoted_by level_previous next_due_at updated_at".split()
)
# The customer's level state, next due moment and stamp. SQLite leaves the row alone (no page
# written to the WAL) when every stored value already is the one being written; PostgreSQL always
# writes it: a skipped update there would keep the row's place in the heap, and with it the order
# in which ``due_customers`` returns customers due at the very same moment.
_SAVE_CUSTOMER = {
    True: "UPDATE customers SET " + ", ".join(f"{c} = ?" for c in _CUSTOMER_COLUMNS) + " WHERE id = ?",
    False: "UPDATE customers SET "
    + ", ".join(f"{c} = ?" for c in _CUSTOMER_COLUMNS)
    + " WHERE id = ? AND NOT ("
    + " AND ".join(f"{c} IS ?" for c in _CUSTOMER_COLUMNS)
    + ")",
}
# PostgreSQL also names the customer on the allocations' side: without it the planner may hash
# the whole allocations table for every book (its estimate of 118 index probes looks dearer than a
# scan of a smallish table: 3–8 ms per book at 1 M entries / 17 k allocations, 0.2 ms with it).
# Every allocation row carries its entry's customer (``_save`` writes ``entry.customer_id``).
_ENTRIES_PG = _STATEMENTS["entries"].replace(
    "ON a.entry_id = e.id", "ON a.entry_id = e.id AND a.customer_id = ?"
)
# The facts of the unit's orders and the returns against them, in one statement (kind 0 / 1).
_FACTS_AND_RETURNS = (
    "SELECT 0, id, customer_id, first_seen_at, close_time, earned_tier, redeem_decided, "
    "redeem_requested, redeem_accepted, message, snapshot FROM orders WHERE id IN {ids} "
    "UNION ALL SELECT 1, id, order_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, snapshot "
    "FROM returns WHERE order_id IN {ids}"
)
_INSERT_ENTRIES = (
    "INSERT INTO entries (customer_id, kind, order_id, lot_id, points, money, debt_delta, "
    "effective_at, recorded_at, accrued_at, available_at, expires_at, cause) VALUES "
)
_FACT_COLUMNS = tuple(
    (
        "customer_id number doc_date first_seen_at close_time earned_tier redeem_decided "
        "redeem_requested redeem_accepted message version status snapshot updated_at"
    ).split()
)
_STATEMENTS["save_facts"] = (
    f"INSERT INTO orders (id, {', '.join(_FACT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(_FACT_COLUMNS) + 1))}) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _FACT_COLUMNS)
)
_CHUNK = 500  # rows per multi-row INSERT (SQLite allows 32 766 parameters per statement)
_KINDS = {kind.value: kind for kind in EntryKind}
_LEVEL_REASONS = {reason.value: reason for reason in LevelReason}


class _Sql:
    """One dialect's hot statements (``?`` on SQLite, ``%s`` on psycopg) and its JSON binding."""

    def __init__(self, pg: bool) -> None:
        self.pg = pg
        self.s = {name: self._q(text) for name, text in _STATEMENTS.items()}
        self.s["save_customer"] = self._q(_SAVE_CUSTOMER[pg])
        if pg:
            self.s["entries"] = self._q(_ENTRIES_PG)
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
        text = self._sized.get((_FACTS_AND_RETURNS, rows))
        if text is None:
            ids = "(" + ", ".join("?" * rows) + ")"
            text = self._sized[(_FACTS_AND_RETURNS, rows)] = self._q(_FACTS_AND_RETURNS.format(ids=ids))
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
_CACHE_LIMIT = 4_096
_PARAMS: dict[bool, dict[Any, Any]] = {False: {}, True: {}}
_VALUES: dict[str, datetime | None] = {}


def _time_param(value: datetime | None, pg: bool) -> Any:
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
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = result
    return result


def _time_value(value: Any) -> datetime | None:
    """``schema.time_value``, memoised for stored text (SQLite)."""
    if value.__class__ is not str:
        return time_value(value)
    try:
        return _VALUES[value]
    except KeyError:
        pass
    result = time_value(value)
    if len(_VALUES) >= _CACHE_LIMIT:
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


def _previous_state(sql: _Sql, stored: Any) -> LevelState | None:
    if sql.pg or stored.__class__ is not str:
        return _level_from_json(sql.loads(stored))
    try:
        return _PREVIOUS_STATES[stored]
    except KeyError:
        pass
    state = _level_from_json(sql.loads(stored))
    if len(_PREVIOUS_STATES) >= _CACHE_LIMIT:
        _PREVIOUS_STATES.clear()
    _PREVIOUS_STATES[stored] = state
    return state


def _previous_param(sql: _Sql, state: LevelState | None) -> Any:
    if sql.pg:
        return sql.json(_level_to_json(state))
    hit = _PREVIOUS_TEXTS.get(id(state))
    if hit is not None and hit[0] is state:
        return hit[1]
    text = sql.json(_level_to_json(state))
    if len(_PREVIOUS_TEXTS) >= _CACHE_LIMIT:
        _PREVIOUS_TEXTS.clear()
    _PREVIOUS_TEXTS[id(state)] = (state, text)
    return text


def _detail_param(sql: _Sql, detail: dict[str, str]) -> Any:
    """An event's ``detail`` as bound: few distinct ones (tier and level names), encoded once each
    on SQLite; the key is the items in order, and only plain strings are taken by value."""
    if sql.pg:
        return sql.json(detail)
    key = tuple(detail.items())
    text = _DETAIL_TEXTS.get(key)
    if text is None:
        text = sql.json(detail)
        if all(k.__class__ is str and v.__class__ is str for k, v in key):
            if len(_DETAIL_TEXTS) >= _CACHE_LIMIT:
                _DETAIL_TEXTS.clear()
            _DETAIL_TEXTS[key] = text
    return text


def _same(value: Any) -> Any:
    return value


def _loads(value: Any) -> Any:
    return None if value is None else json.loads(value)


_SQL: dict[bool, _Sql] = {}


def _driver(conn: Connection) -> tuple[Any, _Sql]:
    """The DBAPI connection under ``conn`` (its transaction begun) and its dialect's statements."""
    if not conn.in_transaction():
        conn.begin()  # what SQLAlchemy does before its first statement (BEGIN IMMEDIATE on SQLite)
    pg = conn.dialect.name == "postgresql"
    sql = _SQL.get(pg)
    if sql is None:
        sql = _SQL[pg] = _Sql(pg)
    return conn.connection.driver_connection, sql


class _errors:  # lower case: used as a function, ``with _errors(conn, what):``
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


class LedgerStore:
    """Reads and writes customers' books; one instance per engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._kept = threading.local()  # SQLite: each thread's connection, kept between units

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One unit of work: everything inside commits together or not at all.

        On SQLite each thread keeps its connection from one unit of work to the next: checking one
        out of the pool and back in costs ~0.07 ms of SQLAlchemy's machinery, as much as a few of
        the unit's statements. The transaction itself is the same (``Connection.begin``: the same
        events, BEGIN IMMEDIATE, COMMIT or ROLLBACK). A connection that was closed or invalidated
        is replaced; a nested unit on the same thread gets a pooled connection of its own, as
        before; the kept one goes back to the pool when its thread ends or the store is dropped.
        PostgreSQL checks a connection out per unit as before: the pool pings it first
        (``pool_pre_ping``), so a server restart costs no unit of work.
        """
        kept = self._kept
        if self.engine.dialect.name != "sqlite" or getattr(kept, "busy", False):
            with self.engine.begin() as pooled:
                yield pooled
            return
        conn: Connection | None = getattr(kept, "conn", None)
        if conn is None or conn.closed or conn.invalidated or conn.in_transaction():
            if conn is not None and not conn.closed:
                conn.close()  # left in a transaction somehow: rolled back, back to the pool
            conn = kept.conn = self.engine.connect()
        kept.busy = True
        try:
            with conn.begin():
                yield conn
        finally:
            kept.busy = False

    # --- locking and identity ----------------------------------------------------------------------

    def lock_customer(self, conn: Connection, customer_id: str, now: datetime, name: str = "") -> None:
        """Create the customer's row if needed and hold its lock until the transaction ends."""
        db, sql = _driver(conn)
        with _errors(conn, "lock_customer"):
            if not sql.pg:
                # The transaction's BEGIN IMMEDIATE already holds the database's write lock.
                db.execute(sql.s["new_customer"], (customer_id, name, _time_param(now, False)))
                return
            key = (customer_id,)
            if db.execute(sql.s["lock"], key).fetchone() is None:  # a known customer: one round trip
                db.execute(sql.s["new_customer"], (customer_id, name, _time_param(now, True)))
                db.execute(sql.s["lock"], key).fetchone()

    def is_processed(self, conn: Connection, doc_id: str, version: str) -> bool:
        db, sql = _driver(conn)
        with _errors(conn, "is_processed"):
            return db.execute(sql.s["processed"], (doc_id, version)).fetchone() is not None

    def order_state(self, conn: Connection, order_id: str, version: str) -> tuple[bool, str | None]:
        """``is_processed`` and ``order_customer`` in one round trip."""
        db, sql = _driver(conn)
        with _errors(conn, "order_state"):
            done, owner = db.execute(sql.s["order_state"], (order_id, version, order_id)).fetchone()
        return bool(done), owner

    def mark_processed(
        self, conn: Connection, doc_id: str, version: str, customer_id: str | None, now: datetime
    ) -> None:
        db, sql = _driver(conn)
        with _errors(conn, "mark_processed"):
            db.execute(sql.s["mark_processed"], (doc_id, version, customer_id, _time_param(now, sql.pg)))

    def order_customer(self, conn: Connection, order_id: str) -> str | None:
        return conn.execute(select(t.orders.c.customer_id).where(t.orders.c.id == order_id)).scalar()

    def return_order(self, conn: Connection, return_id: str) -> str | None:
        return conn.execute(select(t.returns.c.order_id).where(t.returns.c.id == return_id)).scalar()

    # --- loading -------------------------------------------------------------------------------------

    def load_book(
        self,
        conn: Connection,
        customer_id: str,
        order_ids: Iterable[str] = (),
        *,
        history: bool = True,
        keys: bool = True,
    ) -> Book:
        """Rebuild ``customer_id``'s book from the ledger, with the facts of ``order_ids``.

        ``history=False`` leaves ``book.level_history`` empty and ``keys=False`` ``book.sent_keys``,
        for callers that never read them (the level history only feeds views; the event keys
        only the rules' ``emit``).
        """
        db, sql = _driver(conn)
        with _errors(conn, "load_book"):
            return _load(db, sql, customer_id, list(dict.fromkeys(order_ids)), history, keys)

    # --- saving --------------------------------------------------------------------------------------

    def save_book(
        self,
        conn: Connection,
        book: Book,
        now: datetime,
        *,
        history: bool = False,
        next_due: datetime | None = None,
    ) -> None:
        """Insert the unit of work's entries, history and events; upsert facts and level state."""
        db, sql = _driver(conn)
        with _errors(conn, "save_book"):
            _save(db, sql, book, now, history, next_due)
        book.new_entries.clear()
        book.new_history.clear()
        book.new_events.clear()

    def save_return(self, conn: Connection, ret: ReturnDoc, customer_id: str | None, now: datetime) -> None:
        upsert(
            conn,
            t.returns,
            {
                "id": ret.id,
                "order_id": ret.order_id,
                "customer_id": customer_id,
                "version": ret.version,
                "snapshot": return_to_json(ret),
                "updated_at": now,
            },
            ["id"],
        )

    # --- cards ---------------------------------------------------------------------------------------

    def next_serial(self, conn: Connection, name: str = "card_serial") -> int:
        """The next value of a never-reused counter (held under the transaction's lock)."""
        db, sql = _driver(conn)
        with _errors(conn, "next_serial"):
            db.execute(sql.s["new_counter"], (name,))
            value: int = db.execute(sql.s["next_counter"], (name,)).fetchone()[0]
        return value

    def add_card(
        self,
        conn: Connection,
        card: Card,
        serial: int | None,
        now: datetime,
        *,
        onec_version: str | None = None,
    ) -> None:
        db, sql = _driver(conn)
        stamp = _time_param(now, sql.pg)
        with _errors(conn, "add_card"):
            db.execute(
                sql.s["add_card"],
                (
                    card.number,
                    serial,
                    card.customer_id,
                    card.status.value,
                    card.onec_id,
                    onec_version,
                    stamp,
                    stamp if card.status is CardStatus.ISSUED else None,
                ),
            )

    def card_number_taken(self, conn: Connection, number: str) -> bool:
        db, sql = _driver(conn)
        with _errors(conn, "card_number_taken"):
            return db.execute(sql.s["card_number"], (number,)).fetchone() is not None

    def set_card_status(self, conn: Connection, customer_id: str, status: CardStatus, now: datetime) -> None:
        conn.execute(
            t.cards.update()
            .where(t.cards.c.customer_id == customer_id)
            .values(status=status.value, issued_at=now if status is CardStatus.ISSUED else None)
        )

    def customer_card(self, conn: Connection, customer_id: str) -> str | None:
        return conn.execute(select(t.cards.c.number).where(t.cards.c.customer_id == customer_id)).scalar()

    def open_orders(self, conn: Connection, customer_id: str) -> list[str]:
        query = select(t.orders.c.id).where(
            t.orders.c.customer_id == customer_id, t.orders.c.status == "open"
        )
        return list(conn.execute(query).scalars())

    def customer_by_card(self, conn: Connection, number: str) -> str | None:
        return conn.execute(select(t.cards.c.customer_id).where(t.cards.c.number == number)).scalar()

    # --- time-driven work ----------------------------------------------------------------------------

    def due_customers(self, conn: Connection, now: datetime) -> list[str]:
        """Customers whose book time alone changes by ``now`` (holds ending, warnings, expiries,
        level terms): one indexed query on ``next_due_at``, cheap enough for every cycle."""
        query = (
            select(t.customers.c.id)
            .where(t.customers.c.next_due_at.is_not(None), t.customers.c.next_due_at <= now)
            .order_by(t.customers.c.next_due_at)
        )
        return list(conn.execute(query).scalars())

    # --- reading for views -----------------------------------------------------------------------------

    def customer_ids(self, conn: Connection) -> list[str]:
        return list(conn.execute(select(t.customers.c.id).order_by(t.customers.c.id)).scalars())


def _load(db: Any, sql: _Sql, customer_id: str, ids: list[str], history: bool, keys: bool) -> Book:
    book = Book(customer_id)
    key = (customer_id,)
    replay = book.replay
    dec, tm, kinds = decimal_value, _time_value, _KINDS
    # each entry with its allocations, by id
    rows = db.execute(sql.s["entries"], (customer_id, customer_id) if sql.pg else key).fetchall()
    last = len(rows) - 1
    allocations: list[Allocation] = []
    for i, r in enumerate(rows):
        if r[11] is not None:
            allocations.append(Allocation(r[11], dec(r[12])))
        if i < last and rows[i + 1][0] == r[0]:
            continue  # more allocations of this entry follow
        replay(
            kinds[r[1]],
            r[2],
            r[3],
            None if r[8] is None else LotDates(tm(r[8]), tm(r[9]), tm(r[10])),
            dec(r[4]),
            dec(r[5]),
            dec(r[6]),
            tm(r[7]),
            allocations,
        )
        if allocations:
            allocations = []
    if ids:
        for o in db.execute(sql.facts_and_returns(len(ids)), ids + ids).fetchall():
            if o[0]:  # a return: id, order, snapshot
                book.returns.setdefault(o[2], {})[o[1]] = return_from_json(sql.loads(o[10]))
                continue
            book.orders[o[1]] = OrderFacts(
                order_id=o[1],
                customer_id=o[2],
                first_seen_at=tm(o[3]),
                order=order_from_json(sql.loads(o[10])),
                close_time=tm(o[4]),
                earned_tier=o[5],
                redeem_decided=bool(o[6]),
                redeem_requested=dec(o[7]),
                redeem_accepted=dec(o[8]),
                message=o[9],
            )
    cust = db.execute(sql.s["customer"], key).fetchone()
    card = cust if cust is not None else db.execute(sql.s["card"], key).fetchone()
    if cust is not None and cust[0] is not None:
        book.level = LevelState(cust[0], tm(cust[1]), tm(cust[2]), cust[3], _previous_state(sql, cust[4]))
    if card is not None:
        number, status, onec_id = card[-3], card[-2], card[-1]
        if number is not None:
            book.card = Card(number, customer_id, CardStatus(status), onec_id)
    if history:
        book.level_history = [
            HistoryEntry(tm(h[0]), h[1], h[2], dec(h[3]), _LEVEL_REASONS[h[4]], h[5])
            for h in db.execute(sql.s["history"], key).fetchall()
        ]
    if keys:
        # In canonical form: a key an older version stored in another form still counts as sent.
        book.sent_keys = {canonical_key(r[0]) for r in db.execute(sql.s["event_keys"], key).fetchall()}
    return book


def _save(db: Any, sql: _Sql, book: Book, now: datetime, history: bool, next_due: datetime | None) -> None:
    pg = sql.pg
    s = sql.s
    stamp = _time_param(now, pg)
    if book.new_entries:
        # Multi-row INSERTs, the ids back (RETURNING) when allocations need them: the rows are
        # inserted in parameter order, so the ids in ascending order are the entries' in order.
        ids: list[int] = []
        entries = book.new_entries
        returning = any(e.allocations for e in entries)
        for i in range(0, len(entries), _CHUNK):
            chunk = entries[i : i + _CHUNK]
            params: list[Any] = []
            for e in chunk:
                lot = e.lot
                params += (
                    e.customer_id,
                    e.kind.value,
                    e.order_id,
                    e.lot_id,
                    decimal_param(e.points, pg),
                    decimal_param(e.money, pg),
                    decimal_param(e.debt_delta, pg),
                    _time_param(e.effective_at, pg),
                    stamp,
                    _time_param(lot.accrued_at, pg) if lot else None,
                    _time_param(lot.available_at, pg) if lot else None,
                    _time_param(lot.expires_at, pg) if lot else None,
                    e.cause[:200],
                )
            text = sql.sized(_INSERT_ENTRIES, len(chunk), 13)
            if returning:
                ids += sorted(r[0] for r in db.execute(text + " RETURNING id", params).fetchall())
            else:
                db.execute(text, params)
        if returning:
            rows = [
                (entry_id, e.customer_id, a.lot_id, decimal_param(a.points, pg))
                for e, entry_id in zip(entries, ids, strict=True)
                for a in e.allocations
            ]
            db.cursor().executemany(s["insert_allocation"], rows)
    if book.new_history:
        db.cursor().executemany(
            s["insert_history"],
            [
                (
                    book.customer_id,
                    _time_param(h.at, pg),
                    h.old_code,
                    h.new_code,
                    decimal_param(h.period_sum, pg),
                    h.reason.value,
                    h.order_id,
                    stamp,
                )
                for h in book.new_history
            ],
        )
    if book.new_events:
        db.cursor().executemany(
            s["insert_event"],
            [
                (
                    ev.customer_id,
                    ev.key[:200],
                    ev.reason.value,
                    _time_param(ev.at, pg),
                    ev.order_id,
                    decimal_param(ev.points, pg),
                    _time_param(ev.when, pg),
                    _detail_param(sql, ev.detail),
                    history,
                )
                for ev in book.new_events
            ],
        )
    for facts in book.orders.values():
        order = facts.order
        if order is None:
            continue
        db.execute(
            s["save_facts"],
            (
                facts.order_id,
                facts.customer_id,
                order.number,
                _time_param(order.date, pg),
                _time_param(facts.first_seen_at, pg),
                _time_param(facts.close_time, pg),
                facts.earned_tier,
                facts.redeem_decided,
                decimal_param(facts.redeem_requested, pg),
                decimal_param(facts.redeem_accepted, pg),
                facts.message,
                order.version,
                order.status.value,
                sql.json(order_to_json(order)),
                stamp,
            ),
        )
    state = book.level
    values = (
        state.level_code if state else None,
        _time_param(state.valid_until, pg) if state else None,
        _time_param(state.since, pg) if state else None,
        state.promoted_by if state else None,
        _previous_param(sql, state.previous) if state else sql.json(None),
        _time_param(next_due, pg),
        stamp,
    )
    db.execute(
        s["save_customer"], (*values, book.customer_id) if pg else (*values, book.customer_id, *values)
    )
