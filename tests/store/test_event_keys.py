"""Event keys are the same whether a book was kept in memory or rebuilt from the database.

A level event's key names the moment of the transition. The level state's times come back from
the database in UTC while the cycle's clock runs in the store's zone, so the key writes the moment
in UTC (``ledger.canonical_key``): the same transition has one key in memory and after a reload.
Keys written by older versions (the moment in the store's zone) are read back in that form too, so
an event already sent is never sent again after an upgrade.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal as D

import pytest
from sqlalchemy import Engine, select

from bridge.domain import apply as rules_apply
from bridge.domain.apply import advance, apply_order, apply_return
from bridge.domain.book import Book
from bridge.domain.ledger import Event, Reason
from bridge.domain.model import OrderStatus, ReturnDoc, ReturnLine
from bridge.service.engine import Engine as LoyaltyEngine
from bridge.store import schema as t
from bridge.store.ledger import LedgerStore
from tests.domain.factories import MSK, at, line, order, rules

R = rules(bonus=False)
FEB1 = at(2026, 2, 1, 0, 0)
TERM_END = at(2026, 7, 31, 0, 0)  # fan's 180 days from 1 Feb 2026


def documents(apply, tick) -> None:  # type: ignore[no-untyped-def]
    """SPEC example 5 with one more order after the promotion and two ticks past the term end."""
    apply(order("o1", "z", [line(7000)], date=at(2025, 3, 15)), at(2025, 3, 15))
    apply(order("o2", "z", [line(1000)], date=at(2025, 10, 10)), at(2025, 10, 10))
    apply(order("o3", "z", [line(3000)], date=FEB1), FEB1)  # promotion: base -> fan
    apply(order("o4", "z", [line(500)], date=at(2026, 3, 1)), at(2026, 3, 1))  # no level change
    tick(TERM_END)  # term end: fan -> base
    tick(TERM_END.replace(hour=1))


def level_keys_through_the_database(db_engine: Engine) -> list[str]:
    eng = LoyaltyEngine(LedgerStore(db_engine), R, MSK)
    keys: list[str] = []

    def apply(o, now):  # type: ignore[no-untyped-def]
        keys.extend(e.key for e in eng.apply_order(o, now).events if e.key.startswith("level:"))

    def tick(now):  # type: ignore[no-untyped-def]
        keys.extend(e.key for a in eng.tick(now) for e in a.events if e.key.startswith("level:"))

    documents(apply, tick)
    return keys


def level_keys_in_memory() -> list[str]:
    book = Book("z")
    keys: list[str] = []

    def collect() -> None:
        keys.extend(e.key for e in book.new_events if e.key.startswith("level:"))
        book.new_events.clear()

    documents(
        lambda o, now: (apply_order(book, R, o, now, tz=MSK), collect()),
        lambda now: (advance(book, R, now), collect()),
    )
    return keys


def test_a_transition_has_the_same_key_in_memory_and_after_a_reload(db_engine: Engine) -> None:
    stored = level_keys_through_the_database(db_engine)
    assert stored == level_keys_in_memory()
    assert stored == [
        "level:promotion:2026-01-31T21:00:00+00:00:base>fan:doc:o3@v1",
        "level:term_end:2026-07-30T21:00:00+00:00:fan>base:time",
    ]


def test_every_level_change_is_emitted_once_and_stored_once(db_engine: Engine) -> None:
    level_keys_through_the_database(db_engine)
    with db_engine.connect() as conn:
        events = conn.execute(
            select(t.events.c.key, t.events.c.reason)
            .where(t.events.c.customer_id == "z")
            .order_by(t.events.c.id)
        ).fetchall()
        history = len(
            conn.execute(select(t.level_history).where(t.level_history.c.customer_id == "z")).fetchall()
        )
    level = [k for k, reason in events if reason in (Reason.LEVEL_CHANGED, Reason.LEVEL_RECOMPUTED)]
    assert len(level) == len(set(level)) == history == 2


@pytest.mark.parametrize(
    "old_form",
    [
        "level:term_end:2026-07-31T00:00:00+03:00:fan>base",  # the moment as the clock gave it
        "level:term_end:2026-07-30T21:00:00+00:00:fan>base",  # in UTC, before the cause was in the key
    ],
)
def test_a_key_stored_by_an_older_version_is_not_sent_again(db_engine: Engine, old_form: str) -> None:
    """Older versions wrote a level key's moment as the clock gave it (Moscow time), later in UTC
    but without the transition's cause: after an upgrade such a row still counts as sent for the
    same transition."""
    eng = LoyaltyEngine(LedgerStore(db_engine), R, MSK)
    eng.apply_order(order("o1", "z", [line(7000)], date=at(2025, 3, 15)), at(2025, 3, 15))
    eng.apply_order(order("o2", "z", [line(1000)], date=at(2025, 10, 10)), at(2025, 10, 10))
    eng.apply_order(order("o3", "z", [line(3000)], date=FEB1), FEB1)
    with db_engine.begin() as conn:
        conn.execute(
            t.events.insert().values(
                customer_id="z", key=old_form, reason="level_changed", at=TERM_END, detail={}, history=False
            )
        )
    with db_engine.connect() as conn:
        book = eng.store.load_book(conn, "z")
    assert "level:term_end:2026-07-30T21:00:00+00:00:fan>base" in book.sent_keys
    done = eng.tick(TERM_END)
    assert [e.key for a in done for e in a.events] == []  # already sent, in the old form
    view = eng.customer_view("z", TERM_END)
    assert view.level is not None and (view.level.code, view.period_sum) == ("base", D(4000))


# --- distinct transitions, distinct keys; an older database read by this version ------------------

RB = rules(discount=False)
NOW = at(2026, 2, 1)
LEVEL_REASONS = (Reason.LEVEL_CHANGED, Reason.LEVEL_RECOMPUTED)


def give_back(rid: str, oid: str, amount: int, moment: datetime) -> ReturnDoc:
    return ReturnDoc(rid, "v1", moment, "z", oid, True, False, (ReturnLine("p-bike", D(1), D(amount)),))


def stored_events(db_engine: Engine) -> list[tuple[str, str]]:
    with db_engine.connect() as conn:
        rows = conn.execute(
            select(t.events.c.key, t.events.c.reason)
            .where(t.events.c.customer_id == "z")
            .order_by(t.events.c.id)
        ).fetchall()
    return [(k, r) for k, r in rows]


def promote_undo_promote(apply, ret) -> None:  # type: ignore[no-untyped-def]
    """One cycle (one ``now``): A promotes, a return against A undoes it, B promotes again."""
    apply(order("a", "z", [line(10000)], date=NOW), NOW)
    ret(give_back("r", "a", 10000, NOW), NOW)
    apply(order("b", "z", [line(10000)], date=NOW), NOW)


def test_a_promotion_after_a_reversal_in_one_cycle_is_stored_and_sent(db_engine: Engine) -> None:
    eng = LoyaltyEngine(LedgerStore(db_engine), R, MSK)
    sent: list[Event] = []
    promote_undo_promote(
        lambda o, now: sent.extend(eng.apply_order(o, now).events),
        lambda r, now: sent.extend(eng.apply_return(r, now).events),
    )
    assert [(e.order_id, e.detail["level"]) for e in sent if e.reason in LEVEL_REASONS] == [
        ("a", "Фанат животных"),
        ("a", "Новичок"),
        ("b", "Фанат животных"),
    ]
    view = eng.customer_view("z", NOW)
    assert view.level is not None and view.level.code == "fan"
    # the same keys as the book kept in memory, each stored once
    book = Book("z")
    promote_undo_promote(
        lambda o, now: apply_order(book, R, o, now, tz=MSK),
        lambda r, now: apply_return(book, R, r, now, tz=MSK),
    )
    assert [e.key for e in sent] == [e.key for e in book.new_events]
    level = [k for k, reason in stored_events(db_engine) if reason in LEVEL_REASONS]
    assert level == [e.key for e in book.new_events if e.reason in LEVEL_REASONS]
    assert len(set(level)) == 3


def two_reservations_then_expiry(eng: LoyaltyEngine) -> list[Event]:
    """Lot "x" (200 points), 30 reserved by each of two open orders, written off at expiry."""
    eng.apply_order(order("x", "z", [line(10000)], date=at(2025, 3, 1)), at(2025, 3, 1))
    for oid in ("y1", "y2"):
        spend = order(oid, "z", [line(1000)], redeem=30, status=OrderStatus.OPEN, date=at(2025, 4, 1))
        eng.apply_order(spend, at(2025, 4, 1))
    return [e for a in eng.tick(at(2026, 3, 2)) for e in a.events]


def cancel_and_tick(eng: LoyaltyEngine, oid: str, day: int) -> list[Event]:
    cancelled = order(
        oid, "z", [line(1000)], redeem=30, status=OrderStatus.CANCELLED, date=at(2025, 4, 1), version="v2"
    )
    events = list(eng.apply_order(cancelled, at(2026, 3, day)).events)
    return events + [e for a in eng.tick(at(2026, 3, day)) for e in a.events]


def expired(events: list[Event]) -> list[D | None]:
    return [e.points for e in events if e.reason is Reason.POINTS_EXPIRED]


def test_every_write_off_of_a_lot_is_stored_and_sent(db_engine: Engine) -> None:
    """Points given back to an expired lot are written off again, and that is announced again."""
    eng = LoyaltyEngine(LedgerStore(db_engine), RB, MSK)
    assert expired(two_reservations_then_expiry(eng)) == [D(140)]
    assert expired(cancel_and_tick(eng, "y1", 3)) == [D(30)]
    assert expired(cancel_and_tick(eng, "y2", 4)) == [D(30)]
    keys = [k for k, reason in stored_events(db_engine) if reason == Reason.POINTS_EXPIRED]
    assert len(keys) == len(set(keys)) == 3
    assert eng.customer_view("z", at(2026, 3, 4)).total == D(0)


# What versions before this one wrote. The level key named no cause (its moment in the store's
# zone before d65c7dc, in UTC since); the expiry key ended in the lot's allocated points after the
# write-off, i.e. its full amount (200 here).
def _old_level_key(reason: str, moment: datetime, old_code: str, new_code: str, cause: str) -> str:
    return f"level:{reason}:{moment.isoformat()}:{old_code}>{new_code}"


def _old_expiry_key(lot_id: str, write_off: int) -> str:
    return f"expired:{lot_id}:200"


def test_a_database_written_by_an_older_version_sends_nothing_twice(
    db_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the older key formats first, then this version on the same database: every transition
    and write-off is announced exactly once, the later ones included."""
    eng = LoyaltyEngine(LedgerStore(db_engine), rules(), MSK)
    with monkeypatch.context() as old:
        old.setattr(rules_apply, "level_key", _old_level_key)
        old.setattr(rules_apply, "expiry_key", _old_expiry_key)
        first = two_reservations_then_expiry(eng)
    assert expired(first) == [D(140)]
    # this version, the same customer: nothing more to write off, nothing announced again
    assert [e for a in eng.tick(at(2026, 3, 2, 13)) for e in a.events] == []
    later = cancel_and_tick(eng, "y1", 3)
    assert expired(later) == [D(30)]  # the older key would have swallowed it
    king = order("b", "z", [line(50000)], date=at(2026, 3, 5))
    promoted = list(eng.apply_order(king, at(2026, 3, 5)).events)
    assert [e.detail["level"] for e in promoted if e.reason in LEVEL_REASONS] == ["Царь зверей"]
    events = stored_events(db_engine)
    assert ("expired:x:200", "points_expired") in events  # the older versions' rows are there
    assert ("level:promotion:2025-03-01T09:00:00+00:00:base>fan", "level_changed") in events
    assert len(events) == len({k for k, _ in events})
    with db_engine.connect() as conn:
        history = conn.execute(select(t.level_history).where(t.level_history.c.customer_id == "z")).fetchall()
    assert len([k for k, reason in events if reason in LEVEL_REASONS]) == len(history)


def test_keys_longer_than_the_column_are_stored_whole_in_meaning(db_engine: Engine) -> None:
    """A key over 200 characters (a level key naming two 64-character codes and a long DataVersion)
    is stored shortened with a hash: after a reload the same key is still recognised as sent, and
    two keys that differ only past the cut stay two events (cut at 200 they collided)."""
    from bridge.domain.ledger import KEY_MAX, stored_key

    store = LedgerStore(db_engine)
    head = "level:promotion:2026-01-31T21:00:00+00:00:" + "b" * 64 + ">" + "f" * 64 + ":doc:o3@"
    first, second = head + "A" * 100 + "1", head + "A" * 100 + "2"
    assert len(first) > KEY_MAX and first[:KEY_MAX] == second[:KEY_MAX]

    def emitted(*keys: str) -> list[str]:
        with store.transaction() as conn:
            store.lock_customer(conn, "z", FEB1)
            book = store.load_book(conn, "z", [], keys=True)
            for key in keys:
                book.emit(Event(Reason.LEVEL_CHANGED, "z", key, FEB1))
            new = [e.key for e in book.new_events]
            store.save_book(conn, book, FEB1)
        return new

    assert emitted(first, second) == [stored_key(first), stored_key(second)]
    assert emitted(first, second, first) == []  # after a reload: both already sent
    with db_engine.connect() as conn:
        kept = conn.execute(select(t.events.c.key).where(t.events.c.customer_id == "z")).scalars().all()
    assert sorted(kept) == sorted([stored_key(first), stored_key(second)])
    assert all(len(k) == KEY_MAX and k.startswith(head[:135]) for k in kept)
    assert stored_key(head) == head  # a key that fits is kept as it is
