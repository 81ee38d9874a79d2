"""Event keys in canonical form: a level key's moment in UTC, whatever zone it was written in."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

import pytest

from bridge.domain.apply import advance, apply_order
from bridge.domain.book import Book
from bridge.domain.ledger import Event, Reason, canonical_key, key_time
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
        "level:promotion:2026-01-31T21:00:00+00:00:base>fan",
        "level:term_end:2026-07-30T21:00:00+00:00:fan>base",
    ]
