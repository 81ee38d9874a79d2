"""Reversing an accrual whose lot time has already touched (expired) and handing reserved points
back while the customer is in debt: SPEC §1 "the ledger always equals what the current state of
1C implies" and §2 "if they were already spent, the shortfall becomes a debt that later accruals
pay off first". Points that expired unspent were not spent: reversing their order owes nothing."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from bridge.domain.apply import advance, apply_order, apply_return
from bridge.domain.book import Book
from bridge.domain.ledger import EntryKind, Reason
from bridge.domain.model import OrderStatus, ReturnDoc, ReturnLine
from bridge.domain.present import customer_view, order_view
from tests.domain.factories import MSK, at, line, order, rules

R = rules(discount=False)


def _cancelled(o):  # type: ignore[no-untyped-def]
    return replace(o, status=OrderStatus.CANCELLED, version="v-cancel")


def _spend(book: Book, oid: str, points: int, when, group: str = "bikes") -> None:  # type: ignore[no-untyped-def]
    """An order that spends ``points`` and closes (earning nothing itself with ``group="sale"``)."""
    o = order(
        oid, "c", [line(5000, product="x", group=group)], redeem=points, status=OrderStatus.OPEN, date=when
    )
    apply_order(book, R, o, when)
    apply_order(book, R, replace(o, status=OrderStatus.CLOSED, version="v2"), when)


def test_cancelling_an_order_whose_points_expired_unspent_costs_the_customer_nothing() -> None:
    book = Book("c")
    old = order("old", "c", [line(20000)])
    apply_order(book, R, old, at(2025, 3, 1))  # 400 at Silver
    advance(book, R, at(2026, 3, 2))  # written off unspent
    apply_order(book, R, order("other", "c", [line(10000)]), at(2026, 3, 2))  # 200 (Silver again)
    book.new_entries.clear()
    apply_order(book, R, _cancelled(old), at(2026, 3, 20))
    view = customer_view(book, R, at(2026, 3, 20), MSK)
    assert (view.total, view.debt) == (D(200), D(0))
    assert book.lots["other"].remaining == D(200)  # the unrelated lot is not touched
    assert order_view(book, "old").points_earned == D(0)
    kinds = [(e.kind, e.points, e.debt_delta) for e in book.new_entries if e.points]
    assert kinds == [(EntryKind.UNEXPIRE, D(400), D(0)), (EntryKind.CLAWBACK, D(-400), D(0))]
    assert book.lots["old"].expired == D(0) and book.lots["old"].remaining == D(0)
    # Re-processing the cancelled order changes nothing; time passing writes nothing off again.
    book.new_entries.clear()
    apply_order(book, R, replace(_cancelled(old), version="v-again"), at(2026, 3, 21))
    advance(book, R, at(2026, 3, 22))
    assert [e for e in book.new_entries if e.points] == []
    assert not [e for e in book.new_events if e.reason is Reason.POINTS_EXPIRED and e.order_id == "old"][1:]


def test_a_return_after_part_was_spent_and_the_rest_expired_owes_only_what_was_spent() -> None:
    book = Book("c")
    bike = order("bike", "c", [line(20000, product="bike")])
    apply_order(book, R, bike, at(2025, 3, 1))  # lot 400
    _spend(book, "sp", 100, at(2025, 4, 1))
    advance(book, R, at(2026, 3, 2))  # the other 300 written off
    assert (book.lots["bike"].remaining, book.lots["bike"].expired) == (D(0), D(300))
    returned = (ReturnLine("bike", D(1), D(20000)),)
    ret = ReturnDoc("r", "v1", at(2026, 4, 1), "c", "bike", True, False, returned)
    apply_return(book, R, ret, at(2026, 4, 1))
    view = customer_view(book, R, at(2026, 4, 1), MSK)
    assert (view.total, view.debt) == (D(0), D(100))  # the 100 spent; the expired 300 are simply gone
    assert book.lots["bike"].expired == D(0)


def test_a_partial_return_takes_its_points_from_the_write_off_and_leaves_the_rest_expired() -> None:
    book = Book("c")
    o = order("o", "c", [line(10000, product="bike"), line(10000, product="lamp", line_no=2)])
    apply_order(book, R, o, at(2025, 3, 1))  # 400
    apply_order(book, R, order("later", "c", [line(5000)]), at(2026, 2, 1))  # 100 at Silver, live
    advance(book, R, at(2026, 3, 2))
    ret = ReturnDoc("r", "v1", at(2026, 3, 5), "c", "o", True, False, (ReturnLine("lamp", D(1), D(10000)),))
    apply_return(book, R, ret, at(2026, 3, 5))
    assert order_view(book, "o").points_earned == D(200)
    assert (book.lots["o"].expired, book.lots["later"].remaining, book.debt) == (D(200), D(100), D(0))
    # The return deleted: the accrual comes back into a lot that has expired, and is written off again.
    apply_return(book, R, replace(ret, version="v2", deleted=True), at(2026, 3, 6))
    advance(book, R, at(2026, 3, 6))
    assert order_view(book, "o").points_earned == D(400)
    assert (book.lots["o"].expired, book.lots["o"].remaining) == (D(400), D(0))
    assert customer_view(book, R, at(2026, 3, 6), MSK).total == D(100)


def test_points_a_lowered_reservation_hands_back_pay_the_debt_first() -> None:
    book = Book("c")
    apply_order(book, R, order("a", "c", [line(25000)]), at(2026, 1, 1))  # 500
    bike = order("bike", "c", [line(20000)])
    apply_order(book, R, bike, at(2026, 1, 2))  # 400
    x = order("x", "c", [line(50000)], redeem=700, status=OrderStatus.OPEN, date=at(2026, 2, 1))
    apply_order(book, R, x, at(2026, 2, 1))  # 500 from a, 200 from bike
    apply_order(book, R, _cancelled(bike), at(2026, 2, 2))  # 200 back from bike, 200 debt
    assert customer_view(book, R, at(2026, 2, 2), MSK).debt == D(200)
    apply_order(book, R, replace(x, version="v2", redeem_requested=D(100)), at(2026, 2, 3))
    view = customer_view(book, R, at(2026, 2, 3), MSK)
    assert (view.available, view.debt) == (D(400), D(0))  # 700 back, 100 re-reserved, 200 to the debt
    assert book.reserved_on("x") == D(100)
    last = [e.kind for e in book.new_entries[-3:]]
    assert last == [EntryKind.RELEASE, EntryKind.RESERVE, EntryKind.DEBT_REPAY]


def test_a_request_raised_beyond_what_is_available_is_refused_and_its_points_pay_the_debt() -> None:
    """In debt, nothing live is left (a reversal takes every live point first), so a higher
    request is refused; a changed request that is refused holds nothing (SPEC §2: "Invalid:
    nothing is taken"), and the points it held pay the debt."""
    book = Book("c")
    apply_order(book, R, order("a", "c", [line(25000)]), at(2026, 1, 1))  # 500
    bike = order("bike", "c", [line(20000)])
    apply_order(book, R, bike, at(2026, 1, 2))  # 400
    x = order("x", "c", [line(50000)], redeem=700, status=OrderStatus.OPEN, date=at(2026, 2, 1))
    apply_order(book, R, x, at(2026, 2, 1))
    apply_order(book, R, _cancelled(bike), at(2026, 2, 2))  # debt 200, nothing live left
    apply_order(book, R, replace(x, version="v2", redeem_requested=D(800)), at(2026, 2, 3))
    view = customer_view(book, R, at(2026, 2, 3), MSK)
    assert book.reserved_on("x") == D(0) and order_view(book, "x").message.startswith("Доступно")
    assert (view.available, view.debt) == (D(500), D(0))


def test_points_handed_back_to_an_expired_lot_pay_the_debt_whichever_cancel_comes_first() -> None:
    """An open order holds 300 of a lot that then expires (100 written off). Both orders are
    cancelled: the 300 come back unspent, so no debt is left — in either order (before, cancelling
    the lot's order first left a debt of 300)."""
    results = []
    for first, second in (("a", "b"), ("b", "a")):
        book = Book("c")
        a = order("a", "c", [line(20000)])
        apply_order(book, R, a, at(2025, 3, 1))  # 400
        b = order("b", "c", [line(20000)], redeem=300, status=OrderStatus.OPEN, date=at(2025, 4, 1))
        apply_order(book, R, b, at(2025, 4, 1))
        advance(book, R, at(2026, 3, 2))  # 100 written off
        docs = {"a": a, "b": b}
        apply_order(book, R, _cancelled(docs[first]), at(2026, 3, 3))
        apply_order(book, R, _cancelled(docs[second]), at(2026, 3, 4))
        advance(book, R, at(2026, 3, 5))
        view = customer_view(book, R, at(2026, 3, 5), MSK)
        results.append((view.total, view.debt))
    assert results == [(D(0), D(0)), (D(0), D(0))]


def test_an_order_that_earns_again_gives_back_first_what_its_reversal_took_from_other_lots() -> None:
    """A (400) had 300 spent; C (100) is another lot. Cancelling A takes its 100 left, C's 100 and
    records 200 of debt; un-cancelling it gives C its 100 back and A the rest (which pays the
    debt): the customer's lots are as before the cancel, not A refilled at C's expense."""
    book = Book("c")
    a = order("a", "c", [line(20000)])
    apply_order(book, R, a, at(2026, 1, 1))  # 400
    _spend(book, "sp", 300, at(2026, 1, 20), group="sale")
    apply_order(book, R, order("cc", "c", [line(5000)]), at(2026, 1, 21))  # 100
    before = {lot_id: lot.remaining for lot_id, lot in book.lots.items()}
    apply_order(book, R, _cancelled(a), at(2026, 2, 1))
    assert customer_view(book, R, at(2026, 2, 1), MSK).debt == D(200) and book.lots["cc"].remaining == 0
    apply_order(book, R, replace(a, version="v-again"), at(2026, 2, 2))
    assert {lot_id: lot.remaining for lot_id, lot in book.lots.items()} == before
    assert (book.debt, order_view(book, "a").points_earned) == (D(0), D(400))


def test_reopening_and_re_closing_an_order_whose_points_expired_costs_nothing() -> None:
    """The same with A's lot expired in between (300 spent, 100 written off): C keeps its 100, the
    debt is paid, and A's written-off 100 are back where they were."""
    book = Book("c")
    a = order("a", "c", [line(20000)])
    apply_order(book, R, a, at(2025, 3, 1))  # 400
    _spend(book, "sp", 300, at(2025, 4, 1), group="sale")
    apply_order(book, R, order("cc", "c", [line(5000)]), at(2026, 2, 1))  # 100, live
    advance(book, R, at(2026, 3, 2))
    reopened = replace(a, status=OrderStatus.OPEN, version="v-open")
    apply_order(book, R, reopened, at(2026, 3, 3))
    apply_order(book, R, replace(a, version="v-closed"), at(2026, 3, 4))
    advance(book, R, at(2026, 3, 5))
    view = customer_view(book, R, at(2026, 3, 5), MSK)
    assert (view.total, view.debt) == (D(100), D(0))
    assert (book.lots["cc"].remaining, book.lots["a"].expired) == (D(100), D(100))
    # The 100 went back to being written off as they were: no second write-off, no second message.
    assert book.lots["a"].write_offs == 1
    expired = [e for e in book.new_events if e.reason is Reason.POINTS_EXPIRED and e.order_id == "a"]
    assert len(expired) == 1
