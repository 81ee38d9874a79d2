"""Event keys in canonical form: a level key's moment in UTC, whatever zone it was written in."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from bridge.domain.apply import advance, apply_order, apply_return
from bridge.domain.book import Book
from bridge.domain.ledger import Event, Reason, canonical_key, key_time
from bridge.domain.model import OrderStatus, ReturnDoc, ReturnLine
from tests.domain.factories import MSK, at, line, order, rules


@pytest.mark.parametrize(
    ("key", "canonical"),
    [
        (
            "level:promotion:2026-02-01T00:00:00+03:00:base>fan",
            "level:promotion:2026-01-31T21:00:00+00:00:base>fan",
        ),
        (
            "level:term_end:2026-07-30T21:00:00+00:00:fan>base",
            "level:term_end:2026-07-30T21:00:00+00:00:fan>base",
        ),
        (
            "level:order_reversed:2026-02-13T12:00:00.250000+03:00:king>fan",
            "level:order_reversed:2026-02-13T09:00:00.250000+00:00:king>fan",
        ),
        ("level:manual:2026-02-13T12:00:00-05:00:a>b:c", "level:manual:2026-02-13T17:00:00+00:00:a>b:c"),
        # not a level key, no zone, not a moment: left alone
        ("accrued:o1:639:3", "accrued:o1:639:3"),
        ("card:2990000000017", "card:2990000000017"),
        ("level:promotion:2026-02-01T00:00:00:base>fan", "level:promotion:2026-02-01T00:00:00:base>fan"),
        (
            "level:promotion:2026-13-01T00:00:00+03:00:base>fan",
            "level:promotion:2026-13-01T00:00:00+03:00:base>fan",
        ),
        ("level:garbage", "level:garbage"),
    ],
)
def test_canonical_key(key: str, canonical: str) -> None:
    assert canonical_key(key) == canonical
    assert canonical_key(canonical) == canonical


def test_key_time_is_the_same_for_one_moment_in_any_zone() -> None:
    moment = at(2026, 7, 31, 0, 0)
    forms = {key_time(moment.astimezone(z)) for z in (MSK, UTC, timezone(timedelta(hours=-7)))}
    assert forms == {"2026-07-30T21:00:00+00:00"}


def test_emit_compares_keys_in_canonical_form() -> None:
    book = Book("z", sent_keys={"level:promotion:2026-01-31T21:00:00+00:00:base>fan"})
    now = at(2026, 2, 1, 0, 0)
    book.emit(Event(Reason.LEVEL_CHANGED, "z", "level:promotion:2026-02-01T00:00:00+03:00:base>fan", now))
    assert book.new_events == []
    book.emit(Event(Reason.LEVEL_CHANGED, "z", "level:term_end:2026-07-31T00:00:00+03:00:fan>base", now))
    assert [e.key for e in book.new_events] == ["level:term_end:2026-07-30T21:00:00+00:00:fan>base"]
    assert "level:term_end:2026-07-30T21:00:00+00:00:fan>base" in book.sent_keys


def test_level_keys_write_the_moment_in_utc() -> None:
    r = rules(bonus=False)
    book = Book("z")
    apply_order(book, r, order("o1", "z", [line(7000)], date=at(2025, 3, 15)), at(2025, 3, 15))
    apply_order(book, r, order("o2", "z", [line(1000)], date=at(2025, 10, 10)), at(2025, 10, 10))
    apply_order(book, r, order("o3", "z", [line(3000)], date=at(2026, 2, 1, 0, 0)), at(2026, 2, 1, 0, 0))
    advance(book, r, at(2026, 7, 31, 0, 0))
    assert [e.key for e in book.new_events if e.key.startswith("level:")] == [
        "level:promotion:2026-01-31T21:00:00+00:00:base>fan:doc:o3@v1",
        "level:term_end:2026-07-30T21:00:00+00:00:fan>base:time",
    ]


# --- distinct transitions, distinct keys -------------------------------------------------------------

RB = rules(bonus=False)
RP = rules(discount=False)


def give_back(rid: str, oid: str, amount: int, moment: datetime, version: str = "v1") -> ReturnDoc:
    return ReturnDoc(rid, version, moment, "z", oid, True, False, (ReturnLine("p-bike", D(1), D(amount)),))


def level_events(book: Book) -> list[Event]:
    return [e for e in book.new_events if e.reason in (Reason.LEVEL_CHANGED, Reason.LEVEL_RECOMPUTED)]


def test_a_promotion_after_a_reversal_in_the_same_cycle_is_emitted() -> None:
    """One cycle (one ``now``): A promotes, a return against A undoes it, B promotes again. The
    customer's last message must say "fan": B's promotion is a transition of its own."""
    now = at(2026, 2, 1)
    book = Book("z")
    apply_order(book, RB, order("a", "z", [line(10000)], date=now), now, tz=MSK)
    apply_return(book, RB, give_back("r", "a", 10000, now), now, tz=MSK)
    apply_order(book, RB, order("b", "z", [line(10000)], date=now), now, tz=MSK)
    assert book.level is not None and book.level.level_code == "fan"
    events = level_events(book)
    assert [(e.order_id, e.detail["old_level"], e.detail["level"]) for e in events] == [
        ("a", "Новичок", "Фанат животных"),
        ("a", "Фанат животных", "Новичок"),
        ("b", "Новичок", "Фанат животных"),
    ]
    assert len({e.key for e in events}) == 3


def test_a_promotion_restored_by_a_cancelled_return_is_emitted() -> None:
    """The same order promotes twice in one cycle: closed, returned, the return cancelled."""
    now = at(2026, 2, 1)
    book = Book("z")
    apply_order(book, RB, order("a", "z", [line(10000)], date=now), now, tz=MSK)
    apply_return(book, RB, give_back("r", "a", 10000, now), now, tz=MSK)
    cancelled = replace(give_back("r", "a", 10000, now, version="v2"), deleted=True)
    apply_return(book, RB, cancelled, now, tz=MSK)
    assert book.level is not None and book.level.level_code == "fan"
    assert [e.detail["level"] for e in level_events(book)] == ["Фанат животных", "Новичок", "Фанат животных"]


def test_the_same_unit_of_work_gives_the_same_level_key() -> None:
    """Re-applying one unit of work to the same book gives the very same keys (so ``emit`` drops
    the repeat); the key names the transition, not the run."""
    now = at(2026, 2, 1)
    book = Book("z")
    apply_order(book, RB, order("a", "z", [line(10000)], date=now), now, tz=MSK)
    book.new_events.clear()
    first, again = copy.deepcopy(book), copy.deepcopy(book)
    for b in (first, again):
        apply_return(b, RB, give_back("r", "a", 10000, now), now, tz=MSK)
    assert [e.key for e in first.new_events] == [e.key for e in again.new_events] != []
    apply_return(first, RB, give_back("r", "a", 10000, now), now, tz=MSK)  # the same version again
    assert len(first.new_events) == len(again.new_events)


def test_a_return_imported_as_history_emits_nothing_and_changes_the_same() -> None:
    """``backfill``: a return, like an order, is history: the same points, volume and level as
    applied live, but no event (nothing is announced to the site or the customer)."""
    now = at(2026, 3, 20)
    books = []
    for history in (False, True):
        book = Book("z")
        apply_order(book, rules(), order("a", "z", [line(10000)], date=at(2026, 3, 1)), now, history=True)
        book.new_events.clear()
        apply_return(book, rules(), give_back("r", "a", 10000, at(2026, 3, 2)), now, history=history, tz=MSK)
        books.append(book)
    live, history_book = books
    assert {e.reason for e in live.new_events} >= {Reason.POINTS_REVERSED, Reason.LEVEL_CHANGED}
    assert history_book.new_events == []
    assert history_book.accrued == live.accrued and history_book.lots == live.lots
    assert history_book.level == live.level and history_book.level_history == live.level_history


def test_a_level_key_stored_in_the_older_form_still_counts_as_sent() -> None:
    """Keys written before the transition's cause was part of the key (in UTC or in the store's
    zone) still stop the same transition from being announced again after an upgrade."""
    promoted = at(2025, 3, 15)
    ended = at(2025, 9, 11)  # fan's 180 days later: recomputed, still fan
    for old in (
        f"level:term_end:{key_time(ended)}:fan>fan",
        f"level:term_end:{ended.isoformat()}:fan>fan",
    ):
        book = Book("z")
        apply_order(book, RB, order("a", "z", [line(10000)], date=promoted), promoted, tz=MSK)
        book.sent_keys.add(canonical_key(old))
        book.new_events.clear()
        advance(book, RB, ended)
        assert book.level is not None and (book.level.level_code, book.level.since) == ("fan", ended)
        assert level_events(book) == []


def expired_lot_with_two_reservations() -> Book:
    """Lot "x" (200 points) with 30 reserved by each of two open orders, written off at expiry."""
    book = Book("z")
    apply_order(book, RP, order("x", "z", [line(10000)], date=at(2025, 3, 1)), at(2025, 3, 1))
    for oid in ("y1", "y2"):
        spend = order(oid, "z", [line(1000)], redeem=30, status=OrderStatus.OPEN, date=at(2025, 4, 1))
        apply_order(book, RP, spend, at(2025, 4, 1))
    advance(book, RP, at(2026, 3, 2))
    return book


def expiries(book: Book) -> list[tuple[str | None, D | None]]:
    return [(e.order_id, e.points) for e in book.new_events if e.reason is Reason.POINTS_EXPIRED]


def test_a_second_write_off_of_a_lot_is_announced() -> None:
    """Points an order gives back to an already expired lot are written off again: that second
    write-off is announced too (the first key ended in the lot's full amount, so did the second)."""
    book = expired_lot_with_two_reservations()
    assert expiries(book) == [("x", D(140))]
    book.new_events.clear()
    cancel = OrderStatus.CANCELLED
    for i, oid in enumerate(("y1", "y2"), start=3):
        spend = order(oid, "z", [line(1000)], redeem=30, status=cancel, date=at(2025, 4, 1), version="v2")
        apply_order(book, RP, spend, at(2026, 3, i))
        advance(book, RP, at(2026, 3, i))
    # the two later write-offs are of the same amount, each of its own
    assert expiries(book) == [("x", D(30)), ("x", D(30))]
    assert book.lots["x"].remaining == D(0)
    keys = [e.key for e in book.new_events if e.reason is Reason.POINTS_EXPIRED]
    assert len(set(keys)) == 2


def test_the_same_write_off_gives_the_same_key() -> None:
    book = expired_lot_with_two_reservations()
    book.new_events.clear()
    spend = order("y1", "z", [line(1000)], status=OrderStatus.CANCELLED, date=at(2025, 4, 1), version="v2")
    apply_order(book, RP, spend, at(2026, 3, 3))
    first, again = copy.deepcopy(book), copy.deepcopy(book)
    for b in (first, again):
        advance(b, RP, at(2026, 3, 3))
    assert [e.key for e in first.new_events] == [e.key for e in again.new_events]
    assert expiries(first) == [("x", D(30))]
