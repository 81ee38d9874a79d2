"""The ledger repository: rebuild a customer's book from the database and insert what changed.

Balances are never stored: a book is rebuilt from the insert-only ``entries`` and ``allocations``
each time (through ``Book.absorb``, the same code that applies new entries in memory), so there
is no cached balance to drift. ``save_book`` inserts the unit of work's new entries, allocations,
level history and events, and upserts the working facts (orders, level state).

The statements every unit of work runs (``order_state``, ``lock_customer``, ``load_book``,
``save_book``, ``mark_processed``) go to the DBAPI connection under SQLAlchemy's (statements and
memoised conversions in ``bridge.store.hot``), so the rows are byte-identical to what the typed
tables write. Everything else stays on SQLAlchemy Core.

Concurrency: every unit of work calls ``lock_customer`` first. On PostgreSQL that takes the
customer's row lock (``SELECT … FOR UPDATE``), so two writers can never spend the same point;
SQLite transactions start with ``BEGIN IMMEDIATE`` (see ``bridge.store.db``) and so are already
serial. Must not import bridge.onec, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from bridge.domain.book import Book, OrderFacts
from bridge.domain.ledger import Allocation, LotDates, canonical_key
from bridge.domain.levels import HistoryEntry, LevelState
from bridge.domain.model import Card, CardStatus, OrderStatus, ReturnDoc
from bridge.store import schema as t
from bridge.store.codec import order_from_json, order_to_json, return_from_json, return_to_json
from bridge.store.hot import (
    CHUNK,
    INSERT_ENTRIES,
    KINDS,
    LEVEL_REASONS,
    Sql,
    bind_time,
    detail_param,
    driver,
    errors,
    previous_param,
    previous_state,
    read_time,
)
from bridge.store.schema import decimal_param, decimal_value


def upsert(conn: Connection, table: Any, values: dict[str, Any], keys: list[str]) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE, on SQLite and PostgreSQL alike."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**values)
    updates = {k: v for k, v in values.items() if k not in keys}
    if updates:
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates))
    else:
        conn.execute(stmt.on_conflict_do_nothing(index_elements=keys))


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
        db, sql = driver(conn)
        with errors(conn, "lock_customer"):
            if not sql.pg:
                # The transaction's BEGIN IMMEDIATE already holds the database's write lock.
                db.execute(sql.s["new_customer"], (customer_id, name, bind_time(now, False)))
                return
            key = (customer_id,)
            if db.execute(sql.s["lock"], key).fetchone() is None:  # a known customer: one round trip
                db.execute(sql.s["new_customer"], (customer_id, name, bind_time(now, True)))
                db.execute(sql.s["lock"], key).fetchone()

    def is_processed(self, conn: Connection, doc_id: str, version: str) -> bool:
        db, sql = driver(conn)
        with errors(conn, "is_processed"):
            return db.execute(sql.s["processed"], (doc_id, version)).fetchone() is not None

    def order_state(self, conn: Connection, order_id: str, version: str) -> tuple[bool, str | None]:
        """``is_processed`` and ``order_customer`` in one round trip."""
        db, sql = driver(conn)
        with errors(conn, "order_state"):
            done, owner = db.execute(sql.s["order_state"], (order_id, version, order_id)).fetchone()
        return bool(done), owner

    def mark_processed(
        self, conn: Connection, doc_id: str, version: str, customer_id: str | None, now: datetime
    ) -> None:
        db, sql = driver(conn)
        with errors(conn, "mark_processed"):
            db.execute(sql.s["mark_processed"], (doc_id, version, customer_id, bind_time(now, sql.pg)))

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
        db, sql = driver(conn)
        with errors(conn, "load_book"):
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
        db, sql = driver(conn)
        with errors(conn, "save_book"):
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
        db, sql = driver(conn)
        with errors(conn, "next_serial"):
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
        db, sql = driver(conn)
        stamp = bind_time(now, sql.pg)
        with errors(conn, "add_card"):
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
        db, sql = driver(conn)
        with errors(conn, "card_number_taken"):
            return db.execute(sql.s["card_number"], (number,)).fetchone() is not None

    def set_card_status(self, conn: Connection, customer_id: str, status: CardStatus, now: datetime) -> None:
        conn.execute(
            t.cards.update()
            .where(t.cards.c.customer_id == customer_id)
            .values(status=status.value, issued_at=now if status is CardStatus.ISSUED else None)
        )

    def customer_card(self, conn: Connection, customer_id: str) -> str | None:
        return conn.execute(select(t.cards.c.number).where(t.cards.c.customer_id == customer_id)).scalar()

    def customer_by_card(self, conn: Connection, number: str) -> str | None:
        return conn.execute(select(t.cards.c.customer_id).where(t.cards.c.number == number)).scalar()

    # --- time-driven work ----------------------------------------------------------------------------

    def due_customers(self, conn: Connection, now: datetime) -> list[str]:
        """Customers whose book time alone changes by ``now`` (holds ending, warnings, expiries,
        level terms): one indexed query on ``next_due_at``, cheap enough for every cycle."""
        query = (
            select(t.customers.c.id)
            .where(t.customers.c.next_due_at.is_not(None), t.customers.c.next_due_at <= now)
            .order_by(t.customers.c.next_due_at, t.customers.c.id)  # ties in a fixed order, any database
        )
        return list(conn.execute(query).scalars())

    # --- reading for views -----------------------------------------------------------------------------

    def customer_ids(self, conn: Connection) -> list[str]:
        return list(conn.execute(select(t.customers.c.id).order_by(t.customers.c.id)).scalars())


def _load(db: Any, sql: Sql, customer_id: str, ids: list[str], history: bool, keys: bool) -> Book:
    book = Book(customer_id)
    key = (customer_id,)
    replay = book.replay
    dec, tm, kinds = decimal_value, read_time, KINDS
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
        book.level = LevelState(cust[0], tm(cust[1]), tm(cust[2]), cust[3], previous_state(sql, cust[4]))
    if cust is not None and cust[5] is not None:
        book.tier_seen_at = tm(cust[5])
    if card is not None:
        number, status, onec_id = card[-3], card[-2], card[-1]
        if number is not None:
            book.card = Card(number, customer_id, CardStatus(status), onec_id)
    if history:
        book.level_history = [
            HistoryEntry(tm(h[0]), h[1], h[2], dec(h[3]), LEVEL_REASONS[h[4]], h[5])
            for h in db.execute(sql.s["history"], key).fetchall()
        ]
    if keys:
        # In canonical form: a key an older version stored in another form still counts as sent.
        book.sent_keys = {canonical_key(r[0]) for r in db.execute(sql.s["event_keys"], key).fetchall()}
    return book


def _save(db: Any, sql: Sql, book: Book, now: datetime, history: bool, next_due: datetime | None) -> None:
    pg = sql.pg
    s = sql.s
    stamp = bind_time(now, pg)
    if book.new_entries:
        # Multi-row INSERTs, the ids back (RETURNING) when allocations need them: the rows are
        # inserted in parameter order, so the ids in ascending order are the entries' in order.
        ids: list[int] = []
        entries = book.new_entries
        returning = any(e.allocations for e in entries)
        for i in range(0, len(entries), CHUNK):
            chunk = entries[i : i + CHUNK]
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
                    bind_time(e.effective_at, pg),
                    stamp,
                    bind_time(lot.accrued_at, pg) if lot else None,
                    bind_time(lot.available_at, pg) if lot else None,
                    bind_time(lot.expires_at, pg) if lot else None,
                    e.cause[:200],
                )
            text = sql.sized(INSERT_ENTRIES, len(chunk), 13)
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
                    bind_time(h.at, pg),
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
                    ev.key,  # at most 200 characters (``Book.emit``: ``stored_key``)
                    ev.reason.value,
                    bind_time(ev.at, pg),
                    ev.order_id,
                    decimal_param(ev.points, pg),
                    bind_time(ev.when, pg),
                    detail_param(sql, ev.detail),
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
                bind_time(order.date, pg),
                bind_time(facts.first_seen_at, pg),
                bind_time(facts.close_time, pg),
                facts.earned_tier,
                facts.redeem_decided,
                decimal_param(facts.redeem_requested, pg),
                decimal_param(facts.redeem_accepted, pg),
                facts.message,
                order.version,
                # Marked for deletion: not open (no longer re-checked every cycle as one being
                # assembled, nor given the level discount), tracked like a cancelled order.
                OrderStatus.CANCELLED.value if order.deleted else order.status.value,
                sql.json(order_to_json(order)),
                # never earlier than the close time (tracking seeks on it: ``schema.orders``)
                stamp
                if facts.close_time is None or facts.close_time <= now
                else bind_time(facts.close_time, pg),
            ),
        )
    state = book.level
    values = (
        state.level_code if state else None,
        bind_time(state.valid_until, pg) if state else None,
        bind_time(state.since, pg) if state else None,
        state.promoted_by if state else None,
        previous_param(sql, state.previous) if state else sql.json(None),
        bind_time(next_due, pg),
        bind_time(book.tier_seen_at, pg),
        stamp,
    )
    db.execute(
        s["save_customer"], (*values, book.customer_id) if pg else (*values, book.customer_id, *values)
    )
