"""SPEC.md's worked examples 1-4, reproduced exactly on the pure domain (examples 5 and 6 live
in test_levels.py / test_discounts.py; the store and end-to-end suites replay them all again)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from bridge.domain.apply import advance, apply_order
from bridge.domain.book import Book
from bridge.domain.ledger import EntryKind, Reason
from bridge.domain.model import OrderStatus
from bridge.domain.present import customer_view, order_view
from tests.domain.factories import MSK, at, line, order, rules

R = rules(discount=False)


def dmitry_gold_with_500() -> Book:
    """Gold (volume 30 000) with exactly 500 points available on 1 March 2026."""
    book = Book("dmitry")
    apply_order(book, R, order("a", "dmitry", [line(25000)]), at(2026, 1, 5))  # 500 at Silver
    apply_order(book, R, order("b", "dmitry", [line(5000, group="sale")]), at(2026, 1, 6))  # 0 points
    advance(book, R, at(2026, 3, 1))
    view = customer_view(book, R, at(2026, 3, 1), MSK)
    assert (view.tier and view.tier.code, view.available, view.total) == ("gold", D(500), D(500))
    return book


def test_example_1_jacket_with_500_points_redeemed_earns_639() -> None:
    book = dmitry_gold_with_500()
    jacket = order(
        "jacket",
        "dmitry",
        [line(14200, group="apparel", product="p-jacket")],
        redeem=500,
        status=OrderStatus.OPEN,
        date=at(2026, 3, 1, 9),
    )
    apply_order(book, R, jacket, at(2026, 3, 1, 10))
    assert order_view(book, "jacket").points_spent == D(500)
    assert customer_view(book, R, at(2026, 3, 1, 10), MSK).available == D(0)

    closed = replace(jacket, status=OrderStatus.CLOSED, version="v2")
    close_time = at(2026, 3, 2, 15)
    apply_order(book, R, closed, close_time)
    ov = order_view(book, "jacket")
    assert ov.points_earned == D(639)  # floor(14 200 × 0.03 × 1.5)
    assert ov.available_from == at(2026, 3, 16, 15)
    assert book.lots["jacket"].expires_at == at(2027, 3, 2, 15)
    view = customer_view(book, R, close_time, MSK)
    assert (view.total, view.available, view.pending) == (D(639), D(0), D(639))
    reasons = {e.reason for e in book.new_events}
    assert {Reason.POINTS_REDEEMED, Reason.POINTS_ACCRUED} <= reasons


def test_example_2_redeeming_pending_points_is_refused_with_a_reason() -> None:
    book = dmitry_gold_with_500()
    apply_order(
        book, R, order("jacket", "dmitry", [line(14200, group="apparel")], redeem=500), at(2026, 3, 2, 15)
    )
    second = order("second", "dmitry", [line(3000)], redeem=100, status=OrderStatus.OPEN, date=at(2026, 3, 3))
    before = len(book.new_entries)
    apply_order(book, R, second, at(2026, 3, 3, 11), tz=MSK)
    ov = order_view(book, "second")
    assert ov.points_spent == D(0)
    assert ov.message == ("Доступно 0 бонусов, запрошено 100 (ещё 639 бонусов станут доступны с 16.03.2026)")
    assert [e for e in book.new_entries[before:] if e.kind is EntryKind.RESERVE] == []


def silver_with_20000() -> Book:
    book = Book("c")
    apply_order(book, R, order("old", "c", [line(20000, group="sale")]), at(2026, 1, 10))  # no points
    return book


def test_example_3_bike_order_earns_at_silver_then_customer_is_gold() -> None:
    book = silver_with_20000()
    apply_order(book, R, order("bike", "c", [line(20000)]), at(2026, 3, 1))
    assert order_view(book, "bike").points_earned == D(400)  # floor(20 000 × 0.02)
    view = customer_view(book, R, at(2026, 3, 1), MSK)
    assert view.volume == D(40000) and view.tier is not None and view.tier.code == "gold"
    assert Reason.TIER_CHANGED in {e.reason for e in book.new_events}


def test_example_4a_cancel_within_hold_removes_pending_points_and_tier() -> None:
    book = silver_with_20000()
    bike = order("bike", "c", [line(20000)])
    apply_order(book, R, bike, at(2026, 3, 1))
    apply_order(book, R, replace(bike, status=OrderStatus.CANCELLED, version="v2"), at(2026, 3, 10))
    view = customer_view(book, R, at(2026, 3, 10), MSK)
    assert (view.total, view.pending, view.debt) == (D(0), D(0), D(0))
    assert view.volume == D(20000) and view.tier is not None and view.tier.code == "silver"
    assert order_view(book, "bike").points_earned == D(0)


def test_example_4b_cancel_after_300_spent_takes_back_100_and_records_debt_300() -> None:
    book = silver_with_20000()
    bike = order("bike", "c", [line(20000)])
    apply_order(book, R, bike, at(2026, 3, 1))
    spend = order("spend", "c", [line(1000)], redeem=300, status=OrderStatus.OPEN, date=at(2026, 3, 16))
    apply_order(book, R, spend, at(2026, 3, 16))
    assert order_view(book, "spend").points_spent == D(300)
    apply_order(book, R, replace(bike, status=OrderStatus.CANCELLED, version="v2"), at(2026, 3, 20))
    claw = [e for e in book.new_entries if e.kind is EntryKind.CLAWBACK]
    assert len(claw) == 1 and claw[0].points == D(-400) and claw[0].debt_delta == D(300)
    assert sum(a.points for a in claw[0].allocations) == D(100)
    view = customer_view(book, R, at(2026, 3, 20), MSK)
    assert (view.total, view.available, view.debt) == (D(0), D(0), D(300))
    # Later accruals pay the debt off first.
    apply_order(book, R, order("next", "c", [line(25000)]), at(2026, 4, 1))  # earns 500 at Silver
    view = customer_view(book, R, at(2026, 4, 1), MSK)
    assert (view.total, view.debt) == (D(200), D(0))
