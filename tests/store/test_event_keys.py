"""Event keys are the same whether a book was kept in memory or rebuilt from the database.

A level event's key names the moment of the transition. The level state's times come back from
the database in UTC while the cycle's clock runs in the store's zone, so the key writes the moment
in UTC (``ledger.canonical_key``): the same transition has one key in memory and after a reload.
Keys written by older versions (the moment in the store's zone) are read back in that form too, so
an event already sent is never sent again after an upgrade.
"""

from __future__ import annotations

from decimal import Decimal as D

from sqlalchemy import Engine, select

from bridge.domain.apply import advance, apply_order
from bridge.domain.book import Book
from bridge.domain.ledger import Reason
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
        "level:promotion:2026-01-31T21:00:00+00:00:base>fan",
        "level:term_end:2026-07-30T21:00:00+00:00:fan>base",
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


def test_a_key_stored_by_an_older_version_in_local_time_is_not_sent_again(db_engine: Engine) -> None:
    """Older versions wrote a level key's moment as the clock gave it (Moscow time): after an
    upgrade such a row still counts as sent for the same transition."""
    eng = LoyaltyEngine(LedgerStore(db_engine), R, MSK)
    eng.apply_order(order("o1", "z", [line(7000)], date=at(2025, 3, 15)), at(2025, 3, 15))
    eng.apply_order(order("o2", "z", [line(1000)], date=at(2025, 10, 10)), at(2025, 10, 10))
    eng.apply_order(order("o3", "z", [line(3000)], date=FEB1), FEB1)
    old_form = f"level:term_end:{TERM_END.isoformat()}:fan>base"
    assert old_form == "level:term_end:2026-07-31T00:00:00+03:00:fan>base"
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
