"""The ledger repository: rebuild a customer's book from the database and insert what changed.

Balances are never stored: a book is rebuilt from the insert-only ``entries`` and ``allocations``
each time (through ``Book.absorb``, the same code that applies new entries in memory), so there
is no cached balance to drift. ``save_book`` inserts the unit of work's new entries, allocations,
level history and events, and upserts the working facts (orders, level state).

Concurrency: every unit of work calls ``lock_customer`` first. On PostgreSQL that takes the
customer's row lock (``SELECT … FOR UPDATE``), so two writers can never spend the same point;
SQLite transactions start with ``BEGIN IMMEDIATE`` (see ``bridge.store.db``) and so are already
serial. Must not import bridge.onec, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite

from bridge.domain.book import Book, OrderFacts
from bridge.domain.ledger import Allocation, Entry, EntryKind, Event, LotDates
from bridge.domain.levels import HistoryEntry, LevelState
from bridge.domain.levels import Reason as LevelReason
from bridge.domain.model import Card, CardStatus, ReturnDoc
from bridge.store import schema as t
from bridge.store.codec import order_from_json, order_to_json, return_from_json, return_to_json


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


class _FastUTCDateTime(t.UTCDateTime):
    """``UTCDateTime`` read with ``fromisoformat`` (C) instead of ``strptime``: the same values.

    SQLite stores ``%Y-%m-%dT%H:%M:%S.%f`` (always six fraction digits), which ``fromisoformat``
    reads exactly; anything else falls back to the column type's own parsing.
    """

    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value).replace(tzinfo=UTC)
            except ValueError:
                pass
        return super().process_result_value(value, dialect)


def _fast(column: Any) -> Any:
    if isinstance(column.type, t.UTCDateTime):
        return type_coerce(column, _FastUTCDateTime()).label(column.name)
    return column


# Statements of the unit of work, built once: each execution then skips SQLAlchemy's statement
# construction and cache-key generation, and hits the compiled cache at once.
_E, _A = t.entries, t.allocations
_PROCESSED = select(t.processed.c.doc_id).where(
    t.processed.c.doc_id == bindparam("doc"), t.processed.c.version == bindparam("ver")
)
_OWNER = select(t.orders.c.customer_id).where(t.orders.c.id == bindparam("doc"))
_ORDER_STATE = select(_PROCESSED.exists().label("done"), _OWNER.scalar_subquery().label("owner"))
_LOCK_PG = select(t.customers.c.id).where(t.customers.c.id == bindparam("cid")).with_for_update()
_ENTRIES = (
    select(
        *(
            _fast(c)
            for c in (
                _E.c.id,
                _E.c.kind,
                _E.c.order_id,
                _E.c.lot_id,
                _E.c.points,
                _E.c.money,
                _E.c.debt_delta,
                _E.c.effective_at,
                _E.c.accrued_at,
                _E.c.available_at,
                _E.c.expires_at,
            )
        ),
        _A.c.lot_id.label("a_lot"),
        _A.c.points.label("a_points"),
    )
    .select_from(_E.outerjoin(_A, _A.c.entry_id == _E.c.id))
    .where(_E.c.customer_id == bindparam("cid"))
    .order_by(_E.c.id, _A.c.id)
)
_ORDERS = select(*(_fast(c) for c in t.orders.c)).where(t.orders.c.id.in_(bindparam("ids", expanding=True)))
_RETURNS = select(t.returns.c.id, t.returns.c.order_id, t.returns.c.snapshot).where(
    t.returns.c.order_id.in_(bindparam("ids", expanding=True))
)
_CUSTOMER = (
    select(
        t.customers.c.level_code,
        _fast(t.customers.c.level_valid_until),
        _fast(t.customers.c.level_since),
        t.customers.c.level_promoted_by,
        t.customers.c.level_previous,
        t.cards.c.number.label("card_number"),
        t.cards.c.status.label("card_status"),
        t.cards.c.onec_id.label("card_onec_id"),
    )
    .select_from(t.customers.outerjoin(t.cards, t.cards.c.customer_id == t.customers.c.id))
    .where(t.customers.c.id == bindparam("cid"))
)
_CARD = select(t.cards.c.number, t.cards.c.status, t.cards.c.onec_id).where(
    t.cards.c.customer_id == bindparam("cid")
)
_HISTORY = (
    select(*(_fast(c) for c in t.level_history.c))
    .where(t.level_history.c.customer_id == bindparam("cid"))
    .order_by(t.level_history.c.id)
)
_EVENT_KEYS = select(t.events.c.key).where(t.events.c.customer_id == bindparam("cid"))
_INSERT_ENTRIES = t.entries.insert().returning(t.entries.c.id, sort_by_parameter_order=True)
_INSERT_ALLOCATIONS = t.allocations.insert()
_INSERT_HISTORY = t.level_history.insert()
_INSERT_EVENT = t.events.insert()
_MARK_PROCESSED = t.processed.insert()
_SAVE_CUSTOMER = (
    t.customers.update()
    .where(t.customers.c.id == bindparam("b_id"))
    .values(
        level_code=bindparam("b_level_code"),
        level_valid_until=bindparam("b_level_valid_until"),
        level_since=bindparam("b_level_since"),
        level_promoted_by=bindparam("b_level_promoted_by"),
        level_previous=bindparam("b_level_previous"),
        next_due_at=bindparam("b_next_due_at"),
        updated_at=bindparam("b_updated_at"),
    )
)
_FACT_COLUMNS = (
    "customer_id",
    "number",
    "doc_date",
    "first_seen_at",
    "close_time",
    "earned_tier",
    "redeem_decided",
    "redeem_requested",
    "redeem_accepted",
    "message",
    "version",
    "status",
    "snapshot",
    "updated_at",
)


@cache
def _dialect_statements(name: str) -> dict[str, Any]:
    """The dialect-specific upserts (``ON CONFLICT``), built once per dialect."""
    dialect = postgresql if name == "postgresql" else sqlite
    new_customer = dialect.insert(t.customers).on_conflict_do_nothing(index_elements=["id"])
    facts = dialect.insert(t.orders)
    save_facts = facts.on_conflict_do_update(
        index_elements=["id"], set_={c: facts.excluded[c] for c in _FACT_COLUMNS}
    )
    return {"new_customer": new_customer, "save_facts": save_facts}


class LedgerStore:
    """Reads and writes customers' books; one instance per engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One unit of work: everything inside commits together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    # --- locking and identity ----------------------------------------------------------------------

    def lock_customer(self, conn: Connection, customer_id: str, now: datetime, name: str = "") -> None:
        """Create the customer's row if needed and hold its lock until the transaction ends."""
        statements = _dialect_statements(conn.dialect.name)
        conn.execute(statements["new_customer"], {"id": customer_id, "name": name, "updated_at": now})
        if conn.dialect.name == "postgresql":
            conn.execute(_LOCK_PG, {"cid": customer_id})
        # SQLite: the transaction's BEGIN IMMEDIATE already holds the database's write lock.

    def is_processed(self, conn: Connection, doc_id: str, version: str) -> bool:
        return conn.execute(_PROCESSED, {"doc": doc_id, "ver": version}).first() is not None

    def order_state(self, conn: Connection, order_id: str, version: str) -> tuple[bool, str | None]:
        """``is_processed`` and ``order_customer`` in one round trip."""
        row = conn.execute(_ORDER_STATE, {"doc": order_id, "ver": version}).one()
        return bool(row.done), row.owner

    def mark_processed(
        self, conn: Connection, doc_id: str, version: str, customer_id: str | None, now: datetime
    ) -> None:
        conn.execute(
            _MARK_PROCESSED,
            {"doc_id": doc_id, "version": version, "customer_id": customer_id, "processed_at": now},
        )

    def order_customer(self, conn: Connection, order_id: str) -> str | None:
        return conn.execute(_OWNER, {"doc": order_id}).scalar()

    def return_order(self, conn: Connection, return_id: str) -> str | None:
        return conn.execute(select(t.returns.c.order_id).where(t.returns.c.id == return_id)).scalar()

    # --- loading -------------------------------------------------------------------------------------

    def load_book(self, conn: Connection, customer_id: str, order_ids: Iterable[str] = ()) -> Book:
        """Rebuild ``customer_id``'s book from the ledger, with the facts of ``order_ids``."""
        book = Book(customer_id)
        key = {"cid": customer_id}
        current: Any = None
        allocations: list[Allocation] = []
        for r in conn.execute(_ENTRIES, key):  # each entry with its allocations, in id order
            if current is None or r.id != current.id:
                if current is not None:
                    book.absorb(_entry(customer_id, current, allocations))
                current, allocations = r, []
            if r.a_lot is not None:
                allocations.append(Allocation(r.a_lot, r.a_points))
        if current is not None:
            book.absorb(_entry(customer_id, current, allocations))
        ids = list(dict.fromkeys(order_ids))
        if ids:
            for o in conn.execute(_ORDERS, {"ids": ids}):
                book.orders[o.id] = OrderFacts(
                    order_id=o.id,
                    customer_id=o.customer_id,
                    first_seen_at=o.first_seen_at,
                    order=order_from_json(o.snapshot),
                    close_time=o.close_time,
                    earned_tier=o.earned_tier,
                    redeem_decided=o.redeem_decided,
                    redeem_requested=o.redeem_requested,
                    redeem_accepted=o.redeem_accepted,
                    message=o.message,
                )
            for r in conn.execute(_RETURNS, {"ids": ids}):
                book.returns.setdefault(r.order_id, {})[r.id] = return_from_json(r.snapshot)
        cust = conn.execute(_CUSTOMER, key).first()
        card = cust if cust is not None else conn.execute(_CARD, key).first()
        if cust is not None and cust.level_code is not None:
            book.level = LevelState(
                cust.level_code,
                cust.level_valid_until,
                cust.level_since,
                cust.level_promoted_by,
                _level_from_json(cust.level_previous),
            )
        if card is not None:
            number, status, onec_id = card[-3], card[-2], card[-1]
            if number is not None:
                book.card = Card(number, customer_id, CardStatus(status), onec_id)
        for h in conn.execute(_HISTORY, key):
            book.level_history.append(
                HistoryEntry(h.at, h.old_code, h.new_code, h.period_sum, LevelReason(h.reason), h.order_id)
            )
        book.sent_keys = set(conn.execute(_EVENT_KEYS, key).scalars())
        return book

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
        if book.new_entries:
            # One multi-row INSERT … RETURNING for the entries, in order, then their allocations.
            ids = conn.execute(
                _INSERT_ENTRIES, [_entry_row(entry, now) for entry in book.new_entries]
            ).scalars()
            rows = [
                {
                    "entry_id": entry_id,
                    "customer_id": entry.customer_id,
                    "lot_id": a.lot_id,
                    "points": a.points,
                }
                for entry, entry_id in zip(book.new_entries, ids, strict=True)
                for a in entry.allocations
            ]
            if rows:
                conn.execute(_INSERT_ALLOCATIONS, rows)
        if book.new_history:
            conn.execute(
                _INSERT_HISTORY,
                [
                    {
                        "customer_id": book.customer_id,
                        "at": h.at,
                        "old_code": h.old_code,
                        "new_code": h.new_code,
                        "period_sum": h.period_sum,
                        "reason": h.reason.value,
                        "order_id": h.order_id,
                        "recorded_at": now,
                    }
                    for h in book.new_history
                ],
            )
        if book.new_events:
            conn.execute(_INSERT_EVENT, [_event_row(ev, history) for ev in book.new_events])
        for facts in book.orders.values():
            self._save_facts(conn, facts, now)
        state = book.level
        conn.execute(
            _SAVE_CUSTOMER,
            {
                "b_id": book.customer_id,
                "b_level_code": state.level_code if state else None,
                "b_level_valid_until": state.valid_until if state else None,
                "b_level_since": state.since if state else None,
                "b_level_promoted_by": state.promoted_by if state else None,
                "b_level_previous": _level_to_json(state.previous) if state else None,
                "b_next_due_at": next_due,
                "b_updated_at": now,
            },
        )
        book.new_entries.clear()
        book.new_history.clear()
        book.new_events.clear()

    def _insert_event(self, conn: Connection, ev: Event, history: bool) -> None:
        conn.execute(_INSERT_EVENT, _event_row(ev, history))

    def _save_facts(self, conn: Connection, facts: OrderFacts, now: datetime) -> None:
        if facts.order is None:
            return
        conn.execute(
            _dialect_statements(conn.dialect.name)["save_facts"],
            {
                "id": facts.order_id,
                "customer_id": facts.customer_id,
                "number": facts.order.number,
                "doc_date": facts.order.date,
                "first_seen_at": facts.first_seen_at,
                "close_time": facts.close_time,
                "earned_tier": facts.earned_tier,
                "redeem_decided": facts.redeem_decided,
                "redeem_requested": facts.redeem_requested,
                "redeem_accepted": facts.redeem_accepted,
                "message": facts.message,
                "version": facts.order.version,
                "status": facts.order.status.value,
                "snapshot": order_to_json(facts.order),
                "updated_at": now,
            },
        )

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
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(
            dialect.insert(t.counters)
            .values(name=name, value=0)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        value: int = conn.execute(
            t.counters.update()
            .where(t.counters.c.name == name)
            .values(value=t.counters.c.value + 1)
            .returning(t.counters.c.value)
        ).scalar_one()
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
        conn.execute(
            t.cards.insert().values(
                number=card.number,
                serial=serial,
                customer_id=card.customer_id,
                status=card.status.value,
                onec_id=card.onec_id,
                onec_version=onec_version,
                created_at=now,
                issued_at=now if card.status is CardStatus.ISSUED else None,
            )
        )

    def card_number_taken(self, conn: Connection, number: str) -> bool:
        return conn.execute(select(t.cards.c.number).where(t.cards.c.number == number)).first() is not None

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


def _entry(customer_id: str, r: Any, allocations: list[Allocation]) -> Entry:
    lot = None
    if r.accrued_at is not None:
        lot = LotDates(r.accrued_at, r.available_at, r.expires_at)
    return Entry(
        EntryKind(r.kind),
        customer_id,
        r.effective_at,
        points=r.points,
        money=r.money,
        debt_delta=r.debt_delta,
        order_id=r.order_id,
        lot_id=r.lot_id,
        lot=lot,
        allocations=tuple(allocations),
    )


def _entry_row(entry: Entry, now: datetime) -> dict[str, Any]:
    return {
        "customer_id": entry.customer_id,
        "kind": entry.kind.value,
        "order_id": entry.order_id,
        "lot_id": entry.lot_id,
        "points": entry.points,
        "money": entry.money,
        "debt_delta": entry.debt_delta,
        "effective_at": entry.effective_at,
        "recorded_at": now,
        "accrued_at": entry.lot.accrued_at if entry.lot else None,
        "available_at": entry.lot.available_at if entry.lot else None,
        "expires_at": entry.lot.expires_at if entry.lot else None,
        "cause": entry.cause[:200],
    }


def _event_row(ev: Event, history: bool) -> dict[str, Any]:
    return {
        "customer_id": ev.customer_id,
        "key": ev.key[:200],
        "reason": ev.reason.value,
        "at": ev.at,
        "order_id": ev.order_id,
        "points": ev.points,
        "when_at": ev.when,
        "detail": ev.detail,
        "history": history,
    }
