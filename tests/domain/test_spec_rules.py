"""SPEC.md rules that had no example-style test, each reproduced with figures worked out by hand.

Covers: the ``bonus.max_redeem_share`` refusal and its boundary (§2 Redemption, delivery
excluded); ``bonus.point_value`` other than 1 (§1 purchase amount, §2 accrual); gross line amounts
(``orders.lines_net_of_points`` false) with the case study's example 1 and a pro-rata split over two
lines; a return recomputed at the tier the order earned at after the tier rose (§1 last bullet);
a clawback spread over the order's own partly spent lot, the other live lots first to expire first,
then debt (§2 Returns after activation); a changed redeem request on a closed order (the spend
stays); ``bonus.point_precision`` 2 (floored, never rounded up); the guest quote per tier and its
"up to N" (§2 Guests). Config as in SPEC's worked examples (tests/domain/factories.py) unless a
test says otherwise.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from bridge.domain.accrual import quote
from bridge.domain.apply import apply_order, apply_return
from bridge.domain.book import Book, Rules
from bridge.domain.ledger import Entry, EntryKind
from bridge.domain.model import OrderStatus, ReturnDoc, ReturnLine
from bridge.domain.present import customer_view, order_view
from tests.domain.factories import MSK, TIERS, at, line, order, rules

R = rules(discount=False)


def silver_with_500(r: Rules) -> Book:
    """Silver (volume 25 000) with 500 points available from 19 Jan 2026: floor(25 000 × 0.02)."""
    book = Book("c")
    apply_order(book, r, order("a", "c", [line(25000)]), at(2026, 1, 5))
    assert customer_view(book, r, at(2026, 3, 1), MSK).available == D(500)
    return book


def gold_with_500(r: Rules) -> Book:
    """Gold (volume 30 000) with 500 points available on 1 March 2026 (Dmitry of example 1)."""
    book = Book("dmitry")
    apply_order(book, r, order("a", "dmitry", [line(25000)]), at(2026, 1, 5))  # 500 at Silver
    apply_order(book, r, order("b", "dmitry", [line(5000, group="sale")]), at(2026, 1, 6))  # 0 points
    view = customer_view(book, r, at(2026, 3, 1), MSK)
    assert (view.tier and view.tier.code, view.available, view.volume) == ("gold", D(500), D(30000))
    return book


def reserves(book: Book, order_id: str) -> list[Entry]:
    return [e for e in book.new_entries if e.order_id == order_id and e.kind is EntryKind.RESERVE]


# --- 1. max_redeem_share -----------------------------------------------------------------------------

DELIVERY = line(5000, group=None, product="p-delivery", line_no=2, delivery=True)


@pytest.mark.parametrize("net", [False, True], ids=["lines-gross", "lines-net-of-points"])
def test_redeeming_more_than_max_redeem_share_of_goods_before_points_is_refused(net: bool) -> None:
    # Goods before points = 800 (the 5 000 delivery line is excluded): gross lines 800, or net lines
    # 399 + the 401 points asked. Cap = floor(800 × 0.5 / 1) = 400 points; 401 asked → refused.
    # Counting delivery the cap would be 2 900 and 401 would pass.
    r = rules(discount=False, max_redeem_share=D("0.5"), lines_net_of_points=net)
    book = silver_with_500(r)
    goods = line(399 if net else 800)
    o = order("o", "c", [goods, DELIVERY], redeem=401, status=OrderStatus.OPEN, date=at(2026, 3, 1))
    apply_order(book, r, o, at(2026, 3, 1), tz=MSK)
    ov = order_view(book, "o")
    assert (
        ov.message
        == "Бонусами можно оплатить не более 50% стоимости товаров: не более 400 бонусов, запрошено 401"
    )
    assert ov.points_spent == D(0)
    assert reserves(book, "o") == []
    view = customer_view(book, r, at(2026, 3, 1), MSK)
    assert (view.available, view.total) == (D(500), D(500))


@pytest.mark.parametrize("net", [False, True], ids=["lines-gross", "lines-net-of-points"])
def test_redeeming_exactly_max_redeem_share_is_accepted(net: bool) -> None:
    # Goods before points 800 (gross 800, or net 400 + 400 asked); cap floor(800 × 0.5) = 400 = asked.
    r = rules(discount=False, max_redeem_share=D("0.5"), lines_net_of_points=net)
    book = silver_with_500(r)
    goods = line(400 if net else 800)
    o = order("o", "c", [goods, DELIVERY], redeem=400, status=OrderStatus.OPEN, date=at(2026, 3, 1))
    apply_order(book, r, o, at(2026, 3, 1), tz=MSK)
    ov = order_view(book, "o")
    assert (ov.points_spent, ov.message) == (D(400), "")
    assert [e.points for e in reserves(book, "o")] == [D(-400)]
    view = customer_view(book, r, at(2026, 3, 1), MSK)
    assert (view.available, view.total) == (D(100), D(100))


# --- 2. point_value ≠ 1 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point_value", "amount", "earned"),
    [
        # 300 points × 2 ₽ = 600 ₽: 10 000 − 600 = 9 400 paid; floor(9 400 × 0.02) = 188.
        (D(2), D(9400), D(188)),
        # 300 points × 0.5 ₽ = 150 ₽: 10 000 − 150 = 9 850 paid; floor(9 850 × 0.02) = 197.
        (D("0.5"), D(9850), D(197)),
    ],
    ids=["2-rubles-per-point", "half-ruble-per-point"],
)
def test_redeemed_points_are_valued_at_point_value_in_the_purchase_amount(
    point_value: D, amount: D, earned: D
) -> None:
    # Lines gross (1C lines are not net of points): the purchase amount subtracts the points'
    # money value. Silver before the order (volume 25 000); the accrual formula of SPEC §2 gives
    # points directly (floor(base × rate × coefficient)), with base = the paid amount.
    r = rules(discount=False, point_value=point_value, lines_net_of_points=False)
    book = silver_with_500(r)
    o = order("o", "c", [line(10000)], redeem=300, status=OrderStatus.OPEN, date=at(2026, 3, 1))
    apply_order(book, r, o, at(2026, 3, 1))
    assert order_view(book, "o").points_spent == D(300)
    apply_order(book, r, replace(o, status=OrderStatus.CLOSED, version="v2"), at(2026, 3, 2))
    assert book.contributions["o"].amount == amount
    assert order_view(book, "o").points_earned == earned
    view = customer_view(book, r, at(2026, 3, 2), MSK)
    assert view.volume == D(25000) + amount  # 34 400 / 34 850: Gold from now on
    assert view.tier is not None and view.tier.code == "gold"
    assert (view.total, view.available, view.pending) == (D(200) + earned, D(200), earned)


# --- 3. lines_net_of_points = False ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("net", "jacket_line"),
    [(False, 14700), (True, 14200)],
    ids=["lines-gross-14700", "lines-net-14200"],
)
def test_example_1_with_gross_lines_earns_the_same_639_as_with_net_lines(net: bool, jacket_line: int) -> None:
    # Gross: the jacket line is 14 700 and the 500 redeemed points (× 1 ₽) are subtracted: 14 200.
    # Net (UT 11 as the case study runs it): 1C's line already reads 14 200. Either way Gold
    # (volume 30 000 before the order): floor(14 200 × 0.03 × 1.5) = floor(639.0) = 639, and the
    # volume becomes 30 000 + 14 200 = 44 200.
    r = rules(discount=False, lines_net_of_points=net)
    book = gold_with_500(r)
    jacket = order(
        "jacket",
        "dmitry",
        [line(jacket_line, group="apparel", product="p-jacket")],
        redeem=500,
        status=OrderStatus.OPEN,
        date=at(2026, 3, 1, 9),
    )
    apply_order(book, r, jacket, at(2026, 3, 1, 10))
    assert order_view(book, "jacket").points_spent == D(500)
    apply_order(book, r, replace(jacket, status=OrderStatus.CLOSED, version="v2"), at(2026, 3, 2, 15))
    assert order_view(book, "jacket").points_earned == D(639)
    assert book.contributions["jacket"].amount == D(14200)
    view = customer_view(book, r, at(2026, 3, 2, 15), MSK)
    assert (view.volume, view.total, view.available) == (D(44200), D(639), D(0))


def test_gross_lines_take_each_lines_pro_rata_share_of_the_redeemed_points() -> None:
    # Gold, lines gross: jacket 14 700 (apparel 1.5) + bike 5 300 (bikes 1.0) = 20 000, 500 points
    # redeemed → 19 500 paid, each line × 19 500 / 20 000 = 0.975:
    #   jacket 14 332.5 × 0.03 × 1.5 = 644.9625; bike 5 167.5 × 0.03 × 1.0 = 155.025
    #   floor(799.9875) = 799. (Points off the jacket alone: 639 + 159 = 798; off the bike alone:
    #   floor(661.5 + 144) = 805; no points subtracted: floor(661.5 + 159) = 820.)
    r = rules(discount=False, lines_net_of_points=False)
    book = gold_with_500(r)
    lines = [
        line(14700, group="apparel", product="p-jacket"),
        line(5300, group="bikes", product="p-bike", line_no=2),
    ]
    o = order("o", "dmitry", lines, redeem=500, status=OrderStatus.OPEN, date=at(2026, 3, 1))
    apply_order(book, r, o, at(2026, 3, 1))
    apply_order(book, r, replace(o, status=OrderStatus.CLOSED, version="v2"), at(2026, 3, 2))
    assert order_view(book, "o").points_earned == D(799)
    assert book.contributions["o"].amount == D(19500)
    assert customer_view(book, r, at(2026, 3, 2), MSK).volume == D(49500)


# --- 4. a return at the tier the order earned at -----------------------------------------------------


def test_a_return_is_recomputed_at_the_tier_the_order_earned_at_after_the_tier_rose() -> None:
    # Silver with volume 20 000 (sale group, no points). Bike 20 000 closes 1 March at Silver:
    # floor(20 000 × 0.02) = 400; volume 40 000 → Gold. An 80 000 order (sale) on 5 March:
    # volume 120 000 → Platinum. Half the bike (10 000) returned on 1 April: recomputed on 10 000
    # at Silver, the tier it earned at: floor(10 000 × 0.02) = 200, 200 clawed back. (At the
    # current Platinum it would be floor(10 000 × 0.05) = 500, more than the 400 earned.)
    book = Book("c")
    apply_order(book, R, order("old", "c", [line(20000, group="sale")]), at(2026, 1, 10))
    apply_order(book, R, order("bike", "c", [line(20000)]), at(2026, 3, 1))
    assert order_view(book, "bike").points_earned == D(400)
    apply_order(book, R, order("big", "c", [line(80000, group="sale", product="p-sale")]), at(2026, 3, 5))
    view = customer_view(book, R, at(2026, 3, 5), MSK)
    assert view.tier is not None and view.tier.code == "platinum"
    book.new_entries.clear()

    ret = ReturnDoc(
        "r", "v1", at(2026, 4, 1), "c", "bike", True, False, (ReturnLine("p-bike", D(1), D(10000)),)
    )
    apply_return(book, R, ret, at(2026, 4, 1))
    assert order_view(book, "bike").points_earned == D(200)  # «Бонусы начислено» shows the new figure
    claw = [e for e in book.new_entries if e.kind is EntryKind.CLAWBACK]
    assert [(e.points, e.debt_delta) for e in claw] == [(D(-200), D(0))]
    assert book.lots["bike"].remaining == D(200)
    view = customer_view(book, R, at(2026, 4, 1), MSK)
    assert (view.total, view.debt, view.volume) == (D(200), D(0), D(110000))  # 20 000 + 10 000 + 80 000
    assert view.tier is not None and view.tier.code == "platinum"


# --- 5. a clawback spread over several lots ----------------------------------------------------------


def test_a_clawback_takes_the_own_lot_then_other_live_lots_first_to_expire_first_then_debt() -> None:
    # Bike 20 000 on 5 Jan → 400 at Silver (expires 5 Jan 2027); "b" 5 000 on 10 Jan → 100 (volume
    # 20 000, Silver; expires 10 Jan 2027); "c" 5 000 on 12 Jan → 100 (volume 25 000, Silver;
    # expires 12 Jan 2027). On 1 Feb 300 are spent, taken from the lot that expires first: the
    # bike's (400 → 100 left). Lots: bike 100, b 100, c 100.
    book = Book("c")
    apply_order(book, R, order("bike", "c", [line(20000)]), at(2026, 1, 5))
    apply_order(book, R, order("b", "c", [line(5000, product="p-b")]), at(2026, 1, 10))
    apply_order(book, R, order("c", "c", [line(5000, product="p-c")]), at(2026, 1, 12))
    sp = order("sp", "c", [line(5000, group="sale", product="p-x")], redeem=300, status=OrderStatus.OPEN)
    apply_order(book, R, replace(sp, date=at(2026, 2, 1)), at(2026, 2, 1))
    apply_order(
        book, R, replace(sp, date=at(2026, 2, 1), status=OrderStatus.CLOSED, version="v2"), at(2026, 2, 1)
    )
    assert [book.lots[x].remaining for x in ("bike", "b", "c")] == [D(100), D(100), D(100)]

    # Half the bike returned on 1 Mar: recomputed floor(10 000 × 0.02) = 200 at Silver, claw 200:
    # the own lot's 100 first, then 100 from "b" (expires before "c"); "c" untouched, no debt.
    book.new_entries.clear()
    ret = ReturnDoc(
        "r", "v1", at(2026, 3, 1), "c", "bike", True, False, (ReturnLine("p-bike", D(1), D(10000)),)
    )
    apply_return(book, R, ret, at(2026, 3, 1))
    claw = [e for e in book.new_entries if e.kind is EntryKind.CLAWBACK]
    assert len(claw) == 1 and (claw[0].points, claw[0].debt_delta) == (D(-200), D(0))
    assert [(a.lot_id, a.points) for a in claw[0].allocations] == [("bike", D(100)), ("b", D(100))]
    assert [book.lots[x].remaining for x in ("bike", "b", "c")] == [D(0), D(0), D(100)]

    # The bike order cancelled on 10 Mar: the remaining 200 clawed back: the own lot and "b" are
    # empty, "c" gives its 100, the other 100 become debt.
    book.new_entries.clear()
    bike_cancelled = replace(order("bike", "c", [line(20000)]), status=OrderStatus.CANCELLED, version="v2")
    apply_order(book, R, bike_cancelled, at(2026, 3, 10))
    claw = [e for e in book.new_entries if e.kind is EntryKind.CLAWBACK]
    assert len(claw) == 1 and (claw[0].points, claw[0].debt_delta) == (D(-200), D(100))
    assert [(a.lot_id, a.points) for a in claw[0].allocations] == [("c", D(100))]
    view = customer_view(book, R, at(2026, 3, 10), MSK)
    assert (view.total, view.available, view.debt) == (D(0), D(0), D(100))
    assert order_view(book, "bike").points_earned == D(0)


# --- 6. a closed order's redeem request is frozen ----------------------------------------------------


def test_changing_the_redeem_request_on_a_closed_order_is_refused_and_the_spend_stays() -> None:
    # 500 available; 300 reserved while open, final at close. 1C then changes the closed order's
    # request to 100 (and later to 600): the 300 stay spent, nothing is released or reserved, and
    # the order's status field says why.
    book = silver_with_500(R)
    o = order("o", "c", [line(5000, group="sale")], redeem=300, status=OrderStatus.OPEN, date=at(2026, 3, 1))
    apply_order(book, R, o, at(2026, 3, 1), tz=MSK)
    closed = replace(o, status=OrderStatus.CLOSED, version="v2")
    apply_order(book, R, closed, at(2026, 3, 2), tz=MSK)
    assert (order_view(book, "o").points_spent, order_view(book, "o").message) == (D(300), "")
    for version, asked in (("v3", 100), ("v4", 600)):
        book.new_entries.clear()
        apply_order(
            book, R, replace(closed, version=version, redeem_requested=D(asked)), at(2026, 3, 3), tz=MSK
        )
        ov = order_view(book, "o")
        assert ov.points_spent == D(300)
        assert ov.message == "Заказ закрыт: списание бонусов по нему уже не меняется"
        assert [e for e in book.new_entries if e.kind in (EntryKind.RESERVE, EntryKind.RELEASE)] == []
        view = customer_view(book, R, at(2026, 3, 3), MSK)
        assert (view.available, view.total) == (D(200), D(200))


# --- 7. point_precision > 0 --------------------------------------------------------------------------


def test_point_precision_2_floors_the_accrual_to_hundredths_never_up() -> None:
    # Silver, point_precision 2: 12 345.99 × 0.02 × 1.0 = 246.9198 and 333.33 × 0.02 × 1.5 = 9.9999;
    # floor(256.9197) to hundredths = 256.91. (Rounded: 256.92; each line floored: 246.91 + 9.99 =
    # 256.90; whole points: 256.)
    r = rules(discount=False, point_precision=2)
    book = Book("c")
    lines = [line("12345.99"), line("333.33", group="apparel", product="p-jacket", line_no=2)]
    apply_order(book, r, order("o", "c", lines), at(2026, 3, 1))
    assert order_view(book, "o").points_earned == D("256.91")
    view = customer_view(book, r, at(2026, 3, 1), MSK)
    assert (view.total, view.pending) == (D("256.91"), D("256.91"))


# --- 8. guests -------------------------------------------------------------------------------------


def test_a_basket_is_quoted_per_tier_and_a_guest_sees_the_top_tiers_figure() -> None:
    # Jacket 14 700 (apparel 1.5) + bike 5 300 (bikes 1.0) + sale item 1 000 (coefficient 0) +
    # delivery 500 (not goods): Σ amount × coefficient = 22 050 + 5 300 + 0 = 27 350.
    #   Silver 2 %: 547; Gold 3 %: floor(820.5) = 820; Platinum 5 %: floor(1 367.5) = 1 367;
    #   VIP 7 %: floor(1 914.5) = 1 914 → a guest sees "up to 1 914"; a Gold customer 820.
    assert R.bonus is not None
    basket = [
        line(14700, group="apparel", product="p-jacket"),
        line(5300, group="bikes", product="p-bike", line_no=2),
        line(1000, group="sale", product="p-sale", line_no=3),
        line(500, group=None, product="p-delivery", line_no=4, delivery=True),
    ]
    q = quote(R.bonus, basket, customer_tier=TIERS[1])
    assert [(t.tier.code, t.points) for t in q.by_tier] == [
        ("silver", D(547)),
        ("gold", D(820)),
        ("platinum", D(1367)),
        ("vip", D(1914)),
    ]
    assert q.up_to == D(1914) == q.by_tier[-1].points
    assert (q.customer_tier, q.customer_points) == (TIERS[1], D(820))
    guest = quote(R.bonus, basket)
    assert (guest.customer_tier, guest.customer_points, guest.up_to) == (None, None, D(1914))


def test_a_guest_sees_the_top_tiers_figure_even_when_a_lower_tier_earns_more() -> None:
    # The config does not forbid a top tier with a lower rate; SPEC shows a guest the top tier's
    # figure, not the largest one: 5 000 at VIP 1 % is 50, though Platinum's 5 % would be 250.
    assert R.bonus is not None
    ladder = (*TIERS[:-1], replace(TIERS[-1], rate=D("0.01")))
    q = quote(replace(R.bonus, tiers=ladder), [line(5000, group="bikes", product="p-bike")])
    assert [t.points for t in q.by_tier] == [D(100), D(150), D(250), D(50)]
    assert q.up_to == D(50)
