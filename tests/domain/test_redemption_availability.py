"""Redemption decides and reserves on one notion of ``available`` (SPEC §2 "Redemption").

The request is checked against ``available`` at the order's time: the cycle's clock for a live
order, the document date for one imported by ``backfill`` (its close time is that date too). The
points are then reserved from exactly the lots that made up that figure, so an accepted request
can always be reserved: a lot that was available at the order's date and has expired since (a
backfilled order spending points a year ago) gives its points to the order, and only what is left
of it is written off at its expiry.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.domain.apply import advance, apply_order
from bridge.domain.book import Book
from bridge.domain.ledger import EntryKind
from bridge.domain.model import OrderStatus
from bridge.domain.present import order_view
from tests.domain.factories import MSK, at, line, order, rules

R = rules(discount=False)
NOW = at(2026, 3, 1)  # the backfill's clock


def customer_with_an_old_lot(history: bool = True) -> Book:
    """500 points accrued on 10 Jan 2024 (available 24 Jan 2024, expired 9 Jan 2025 at 12:00)."""
    book = Book("c")
    first = order("o1", "c", [line(25000)], date=at(2024, 1, 10))
    apply_order(book, R, first, NOW if history else at(2024, 1, 10), history=history)
    lot = book.lots["o1"]
    assert (lot.remaining, lot.available_at, lot.expires_at) == (D(500), at(2024, 1, 24), at(2025, 1, 9))
    return book


def test_backfill_spends_points_of_a_lot_that_expired_after_the_order_date() -> None:
    book = customer_with_an_old_lot()
    spend = order("o2", "c", [line(5000)], redeem=50, date=at(2024, 6, 1))
    apply_order(book, R, spend, NOW, history=True, tz=MSK)  # raised ValueError before the fix
    ov = order_view(book, "o2")
    assert (ov.points_spent, ov.message) == (D(50), "")
    reserve = [e for e in book.new_entries if e.kind is EntryKind.RESERVE]
    assert [(a.lot_id, a.points) for e in reserve for a in e.allocations] == [("o1", D(50))]
    # Only what the order did not spend is written off at the lot's expiry.
    advance(book, R, NOW)
    expired = {e.lot_id: e.points for e in book.new_entries if e.kind is EntryKind.EXPIRE}
    assert expired["o1"] == D(-450)
    assert book.lots["o1"].remaining == D(0)


def test_backfill_changes_the_request_of_an_order_holding_points_of_a_lot_expired_since() -> None:
    book = customer_with_an_old_lot()
    spend = order("o2", "c", [line(5000)], redeem=50, date=at(2024, 6, 1), status=OrderStatus.OPEN)
    apply_order(book, R, spend, NOW, history=True)
    apply_order(book, R, replace(spend, version="v2", redeem_requested=D(80)), NOW, history=True)
    assert order_view(book, "o2").points_spent == D(80)
    assert book.reserved == {"o2": {"o1": D(80)}}


def test_backfill_order_dated_after_the_expiry_is_refused_with_a_reason() -> None:
    book = customer_with_an_old_lot()
    late = order("o2", "c", [line(5000)], redeem=50, date=at(2025, 2, 1))
    apply_order(book, R, late, NOW, history=True, tz=MSK)
    ov = order_view(book, "o2")
    assert (ov.points_spent, ov.message) == (D(0), "Доступно 0 бонусов, запрошено 50")
    assert not [e for e in book.new_entries if e.kind is EntryKind.RESERVE]


def test_live_order_at_the_expiry_moment_is_refused_not_crashed() -> None:
    """The lot is not yet written off (no tick ran) but has expired: neither counted nor taken."""
    book = customer_with_an_old_lot(history=False)
    expires = book.lots["o1"].expires_at
    just_before = order("a", "c", [line(5000)], redeem=50, status=OrderStatus.OPEN, date=at(2025, 1, 8))
    apply_order(book, R, just_before, expires - timedelta(seconds=1), tz=MSK)
    assert order_view(book, "a").points_spent == D(50)
    at_expiry = order("b", "c", [line(5000)], redeem=50, status=OrderStatus.OPEN, date=at(2025, 1, 9))
    apply_order(book, R, at_expiry, expires, tz=MSK)
    ov = order_view(book, "b")
    assert (ov.points_spent, ov.message) == (D(0), "Доступно 0 бонусов, запрошено 50")


def test_live_order_changing_its_request_after_its_lot_expired() -> None:
    """Points reserved before the expiry stay reserved while the request stands; a new request is
    checked against what is available now, and the released points go back to their (expired)
    lot, to be written off by the next tick."""
    book = customer_with_an_old_lot(history=False)
    expires = book.lots["o1"].expires_at
    spend = order("a", "c", [line(5000)], redeem=50, status=OrderStatus.OPEN, date=at(2025, 1, 8))
    apply_order(book, R, spend, expires - timedelta(days=1), tz=MSK)
    apply_order(book, R, replace(spend, version="v2"), expires + timedelta(days=1), tz=MSK)
    assert order_view(book, "a").points_spent == D(50)  # unchanged request: unchanged reservation
    apply_order(book, R, replace(spend, version="v3", redeem_requested=D(40)), expires + timedelta(days=2))
    ov = order_view(book, "a")
    assert (ov.points_spent, ov.message) == (D(0), "Доступно 0 бонусов, запрошено 40")
    advance(book, R, expires + timedelta(days=2))
    assert book.lots["o1"].remaining == D(0)


@settings(max_examples=150, deadline=None)
@given(
    history=st.booleans(),
    first_days=st.integers(0, 400),
    order_after=st.integers(-30, 400),  # the order's date, days after the accrual
    now_after=st.integers(0, 500),  # the clock, days after the order's date
    redeem=st.integers(1, 600),
    second_redeem=st.integers(0, 600),
)
def test_an_accepted_request_is_always_reserved(
    history: bool, first_days: int, order_after: int, now_after: int, redeem: int, second_redeem: int
) -> None:
    """Whatever the dates, applying never fails and the reservation is exactly what was accepted."""
    base = at(2024, 1, 1)

    def day(n: int) -> datetime:
        return base + timedelta(days=n)

    book = Book("c")
    apply_order(book, R, order("o1", "c", [line(25000)], date=day(first_days)), day(first_days))
    date = day(first_days + order_after)
    now = max(date + timedelta(days=now_after), day(first_days))
    date = date if history else now
    spend = order("o2", "c", [line(30000)], redeem=redeem, status=OrderStatus.OPEN, date=date)
    for version in (spend, replace(spend, version="v2", redeem_requested=D(second_redeem))):
        apply_order(book, R, version, now, history=history, tz=MSK)
        facts = book.orders["o2"]
        assert book.reserved_on("o2") == facts.redeem_accepted
        assert facts.redeem_accepted in (D(0), version.redeem_requested)
        assert all(lot.remaining >= 0 for lot in book.lots.values())
