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
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from bridge.domain.book import Book, OrderFacts
from bridge.domain.ledger import Allocation, Entry, EntryKind, Event, LotDates
from bridge.domain.levels import HistoryEntry, LevelState
from bridge.domain.levels import Reason as LevelReason
from bridge.domain.model import ZERO, Card, CardStatus, ReturnDoc
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
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(
            dialect.insert(t.customers)
            .values(id=customer_id, name=name, updated_at=now)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        query = select(t.customers.c.id).where(t.customers.c.id == customer_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        conn.execute(query)

    def is_processed(self, conn: Connection, doc_id: str, version: str) -> bool:
        row = conn.execute(
            select(t.processed.c.doc_id).where(
                t.processed.c.doc_id == doc_id, t.processed.c.version == version
            )
        ).first()
        return row is not None

    def mark_processed(
        self, conn: Connection, doc_id: str, version: str, customer_id: str | None, now: datetime
    ) -> None:
        conn.execute(
            t.processed.insert().values(
                doc_id=doc_id, version=version, customer_id=customer_id, processed_at=now
            )
        )

    def order_customer(self, conn: Connection, order_id: str) -> str | None:
        return conn.execute(select(t.orders.c.customer_id).where(t.orders.c.id == order_id)).scalar()

    def return_order(self, conn: Connection, return_id: str) -> str | None:
        return conn.execute(select(t.returns.c.order_id).where(t.returns.c.id == return_id)).scalar()

    # --- loading -------------------------------------------------------------------------------------

    def load_book(self, conn: Connection, customer_id: str, order_ids: Iterable[str] = ()) -> Book:
        """Rebuild ``customer_id``'s book from the ledger, with the facts of ``order_ids``."""
        book = Book(customer_id)
        rows = conn.execute(
            select(
                t.entries.c.id,
                t.entries.c.kind,
                t.entries.c.order_id,
                t.entries.c.lot_id,
                t.entries.c.points,
                t.entries.c.money,
                t.entries.c.debt_delta,
                t.entries.c.effective_at,
                t.entries.c.accrued_at,
                t.entries.c.available_at,
                t.entries.c.expires_at,
            )
            .where(t.entries.c.customer_id == customer_id)
            .order_by(t.entries.c.id)
        ).all()
        allocs: dict[int, list[Allocation]] = {}
        for a in conn.execute(
            select(t.allocations.c.entry_id, t.allocations.c.lot_id, t.allocations.c.points)
            .where(t.allocations.c.customer_id == customer_id)
            .order_by(t.allocations.c.id)
        ):
            allocs.setdefault(a.entry_id, []).append(Allocation(a.lot_id, a.points))
        for r in rows:
            lot = None
            if r.accrued_at is not None:
                lot = LotDates(r.accrued_at, r.available_at, r.expires_at)
            book.absorb(
                Entry(
                    EntryKind(r.kind),
                    customer_id,
                    r.effective_at,
                    points=r.points,
                    money=r.money,
                    debt_delta=r.debt_delta,
                    order_id=r.order_id,
                    lot_id=r.lot_id,
                    lot=lot,
                    allocations=tuple(allocs.get(r.id, ())),
                )
            )
        ids = list(dict.fromkeys(order_ids))
        if ids:
            for o in conn.execute(select(t.orders).where(t.orders.c.id.in_(ids))):
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
            for r in conn.execute(select(t.returns).where(t.returns.c.order_id.in_(ids))):
                book.returns.setdefault(r.order_id, {})[r.id] = return_from_json(r.snapshot)
        cust = conn.execute(select(t.customers).where(t.customers.c.id == customer_id)).first()
        if cust is not None:
            book.level = _level_from_json(
                None
                if cust.level_code is None
                else {
                    "level_code": cust.level_code,
                    "valid_until": cust.level_valid_until.isoformat() if cust.level_valid_until else None,
                    "since": cust.level_since.isoformat() if cust.level_since else None,
                    "promoted_by": cust.level_promoted_by,
                    "previous": cust.level_previous,
                }
            )
        for h in conn.execute(
            select(t.level_history)
            .where(t.level_history.c.customer_id == customer_id)
            .order_by(t.level_history.c.id)
        ):
            book.level_history.append(
                HistoryEntry(h.at, h.old_code, h.new_code, h.period_sum, LevelReason(h.reason), h.order_id)
            )
        card = conn.execute(select(t.cards).where(t.cards.c.customer_id == customer_id)).first()
        if card is not None:
            book.card = Card(card.number, customer_id, CardStatus(card.status), card.onec_id)
        book.sent_keys = set(
            conn.execute(select(t.events.c.key).where(t.events.c.customer_id == customer_id)).scalars()
        )
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
        for entry in book.new_entries:
            entry_id = conn.execute(
                t.entries.insert()
                .values(
                    customer_id=entry.customer_id,
                    kind=entry.kind.value,
                    order_id=entry.order_id,
                    lot_id=entry.lot_id,
                    points=entry.points,
                    money=entry.money,
                    debt_delta=entry.debt_delta,
                    effective_at=entry.effective_at,
                    recorded_at=now,
                    accrued_at=entry.lot.accrued_at if entry.lot else None,
                    available_at=entry.lot.available_at if entry.lot else None,
                    expires_at=entry.lot.expires_at if entry.lot else None,
                    cause=entry.cause[:200],
                )
                .returning(t.entries.c.id)
            ).scalar_one()
            if entry.allocations:
                conn.execute(
                    t.allocations.insert(),
                    [
                        {
                            "entry_id": entry_id,
                            "customer_id": entry.customer_id,
                            "lot_id": a.lot_id,
                            "points": a.points,
                        }
                        for a in entry.allocations
                    ],
                )
        for h in book.new_history:
            conn.execute(
                t.level_history.insert().values(
                    customer_id=book.customer_id,
                    at=h.at,
                    old_code=h.old_code,
                    new_code=h.new_code,
                    period_sum=h.period_sum,
                    reason=h.reason.value,
                    order_id=h.order_id,
                    recorded_at=now,
                )
            )
        for ev in book.new_events:
            self._insert_event(conn, ev, history)
        for facts in book.orders.values():
            self._save_facts(conn, facts, now)
        state = book.level
        conn.execute(
            t.customers.update()
            .where(t.customers.c.id == book.customer_id)
            .values(
                level_code=state.level_code if state else None,
                level_valid_until=state.valid_until if state else None,
                level_since=state.since if state else None,
                level_promoted_by=state.promoted_by if state else None,
                level_previous=_level_to_json(state.previous) if state else None,
                next_due_at=next_due,
                updated_at=now,
            )
        )
        book.new_entries.clear()
        book.new_history.clear()
        book.new_events.clear()

    def _insert_event(self, conn: Connection, ev: Event, history: bool) -> None:
        conn.execute(
            t.events.insert().values(
                customer_id=ev.customer_id,
                key=ev.key[:200],
                reason=ev.reason.value,
                at=ev.at,
                order_id=ev.order_id,
                points=ev.points,
                when_at=ev.when,
                detail=ev.detail,
                history=history,
            )
        )

    def _save_facts(self, conn: Connection, facts: OrderFacts, now: datetime) -> None:
        if facts.order is None:
            return
        upsert(
            conn,
            t.orders,
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
            ["id"],
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

    def totals(self, conn: Connection) -> dict[str, Decimal]:
        """Sums over the whole ledger (for audits and tests)."""
        points = ZERO
        debt = ZERO
        for p, d in conn.execute(select(t.entries.c.points, t.entries.c.debt_delta)):
            points += p
            debt += d
        return {"points": points, "debt": debt}
