"""The level discount on open orders: percents (SPEC example 6), kopeck rounding, VAT, the total."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.domain.discounts import (
    DiscountPlan,
    automatic_percent,
    discount_line,
    line_percent,
    plan_discount,
    plan_order_discount,
    to_kopecks,
    vat_amount,
)
from bridge.domain.model import Order, OrderLine, OrderStatus

D = Decimal


def line(
    no: int = 1,
    price: str = "1000",
    qty: str = "1",
    amount: str | None = None,
    manual_pct: str = "0",
    manual_amt: str = "0",
    auto_pct: str = "0",
    auto_amt: str = "0",
    delivery: bool = False,
    cancelled: bool = False,
) -> OrderLine:
    if amount is None:
        amount = str(D(price) * D(qty) - D(manual_amt) - D(auto_amt))
    return OrderLine(
        line_no=no,
        product_id=f"p{no}",
        quantity=D(qty),
        amount=D(amount),
        price=D(price),
        manual_discount_percent=D(manual_pct),
        manual_discount_amount=D(manual_amt),
        auto_discount_percent=D(auto_pct),
        auto_discount_amount=D(auto_amt),
        delivery=delivery,
        cancelled=cancelled,
    )


# --- SPEC worked example 6 ------------------------------------------------------------------


def test_example_6_percents() -> None:
    assert line_percent(D(5), D(7)) == D(7)  # fan keeps the 7 % promotion
    assert line_percent(D(10), D(7)) == D(10)  # king gets 10 %
    assert automatic_percent(D(5), D(7)) == D(0)
    assert automatic_percent(D(10), D(7)) == D(3)


def test_example_6_promo_line_for_a_fan_keeps_7_percent() -> None:
    promo = line(manual_pct="7", manual_amt="70")  # 1 000 at 7 % → 930
    planned = discount_line(promo, D(5))
    assert (planned.auto_percent, planned.auto_amount, planned.amount) == (D(0), D(0), D(930))
    assert not planned.changed


def test_example_6_promo_line_for_a_king_gets_10_percent_not_17() -> None:
    planned = discount_line(line(manual_pct="7", manual_amt="70"), D(10))
    assert planned.auto_percent == D(3)
    assert planned.auto_amount == D(30)
    assert planned.amount == D(900)  # 10 % off 1 000, never 17 %
    assert planned.changed


# --- arithmetic -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "q"),
    [
        ("0.005", "0.01"),
        ("0.004999", "0.00"),
        ("2.675", "2.68"),
        ("1.115", "1.12"),
        ("-0.005", "-0.01"),
        ("7", "7.00"),
    ],
)
def test_to_kopecks_rounds_half_up(x: str, q: str) -> None:
    assert to_kopecks(D(x)) == D(q)
    assert str(to_kopecks(D(x))) == q


def test_automatic_amount_rounds_half_up_to_kopecks() -> None:
    planned = discount_line(line(price="0.50"), D(1))  # 0.50 × 1 % = 0.005
    assert planned.auto_amount == D("0.01")
    assert planned.amount == D("0.49")


def test_fractional_quantity() -> None:
    planned = discount_line(line(price="199.99", qty="0.355"), D(5))
    assert planned.base == D("71.00")  # 70.99645
    assert planned.auto_amount == D("3.55")  # 3.5498225, from the unrounded base
    assert planned.amount == D("67.45")


def test_base_rebuilt_from_1c_amounts_when_price_is_not_mapped() -> None:
    old = line(price="0", amount="950", auto_pct="5", auto_amt="50")
    planned = discount_line(old, D(10))
    assert planned.base == D(1000)
    assert (planned.auto_percent, planned.auto_amount, planned.amount) == (D(10), D(100), D(900))


def test_level_zero_clears_a_previous_automatic_discount() -> None:
    planned = discount_line(line(auto_pct="5", auto_amt="50"), D(0))
    assert (planned.auto_percent, planned.auto_amount, planned.amount) == (D(0), D(0), D(1000))
    assert planned.changed


def test_fixed_sum_manual_discount_counts_as_its_percent() -> None:
    fixed = line(manual_amt="100")  # 10 % of 1 000, percent field empty
    planned = discount_line(fixed, D(5))
    assert planned.manual_percent == D(10)
    assert planned.auto_amount == D(0)
    planned = discount_line(fixed, D(15))
    assert (planned.auto_percent, planned.auto_amount, planned.amount) == (D(5), D(50), D(850))


def test_line_never_goes_below_zero() -> None:
    # 95 of 100 already taken off the row by redeemed points (lines net of points): 10 % would be
    # 10.00, but only 5.00 is left to take.
    planned = discount_line(line(price="100", amount="5"), D(10))
    assert (planned.auto_percent, planned.auto_amount, planned.amount) == (D(10), D(5), D(0))


def test_a_manual_amount_above_the_level_gets_nothing_on_top() -> None:
    # 1C's percent field says 5 % but the row's manual amount is 99.99 of 100: that is the larger
    # discount, and discounts are never summed.
    planned = discount_line(line(price="100", manual_pct="5", manual_amt="99.99"), D(10))
    assert (planned.auto_amount, planned.amount) == (D(0), D("0.01"))


@pytest.mark.parametrize(
    ("price", "qty", "manual_pct", "manual_amt", "level", "whole"),
    [
        ("15000", "1", "0", "500", "10", "1500.00"),  # a fixed-sum promotion: 6.66 % alone gives 999.00
        ("1000", "1", "0", "33.33", "10", "100.00"),
        ("1234.50", "1", "7", "86.42", "10", "123.45"),  # 3 % alone would give 37.04: 1 kopeck over 10 %
        ("333.33", "3", "0", "1", "5", "50.00"),
    ],
)
def test_the_line_gets_exactly_the_larger_percent_of_its_gross(
    price: str, qty: str, manual_pct: str, manual_amt: str, level: str, whole: str
) -> None:
    """SPEC §3 "the larger percent wins": manual + automatic amount is the level percent of the
    gross, rounded once to kopecks, whatever the manual discount's own rounding or fraction."""
    row = line(price=price, qty=qty, manual_pct=manual_pct, manual_amt=manual_amt)
    planned = discount_line(row, D(level))
    assert planned.manual_amount + planned.auto_amount == D(whole)
    assert planned.amount == planned.base - D(whole)
    assert planned.auto_percent <= D(level) - planned.manual_percent  # the field never claims more


@pytest.mark.parametrize("flag", ["delivery", "cancelled"])
def test_delivery_and_cancelled_lines_are_left_alone(flag: str) -> None:
    row = line(
        price="500", auto_pct="3", auto_amt="15", delivery=flag == "delivery", cancelled=flag == "cancelled"
    )
    planned = discount_line(row, D(10))
    assert not planned.applied and not planned.changed
    assert (planned.auto_percent, planned.auto_amount, planned.amount) == (D(3), D(15), D(485))


# --- VAT and the total ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rate", "included", "vat"),
    [
        ("900", "20", True, "150.00"),
        ("900", "20", False, "180.00"),
        ("1000", "10", True, "90.91"),  # 90.909…
        ("1000", "10", False, "100.00"),
        ("0.03", "20", False, "0.01"),  # 0.006
        ("0.02", "20", False, "0.00"),  # 0.004
        ("0.15", "20", True, "0.03"),  # 0.025 → half-up
        ("500", "0", True, "0.00"),
    ],
)
def test_vat_amount(amount: str, rate: str, included: bool, vat: str) -> None:
    assert vat_amount(D(amount), D(rate), included) == D(vat)


def test_line_vat_included_and_excluded() -> None:
    inc = discount_line(line(), D(10), vat_rate=D(20), price_includes_vat=True)
    assert (inc.amount, inc.vat_amount, inc.amount_with_vat) == (D(900), D(150), D(900))
    exc = discount_line(line(), D(10), vat_rate=D(20), price_includes_vat=False)
    assert (exc.amount, exc.vat_amount, exc.amount_with_vat) == (D(900), D(180), D(1080))
    none = discount_line(line(), D(10))
    assert (none.vat_amount, none.amount_with_vat) == (None, D(900))


ORDER_LINES = (
    line(1, price="1000"),  # goods: 10 % → 900
    line(2, price="200", qty="3", manual_pct="15", manual_amt="90"),  # promo 15 % beats 10 %: 510
    line(3, price="350", delivery=True),  # delivery: untouched, 350
    line(4, price="5000", cancelled=True),  # cancelled: out of the total
)


def test_total_with_prices_including_vat() -> None:
    plan = plan_discount(ORDER_LINES, D(10), vat_rates={1: D(20), 2: D(20), 3: D(20)})
    assert [p.amount for p in plan.lines] == [D(900), D(510), D(350), D(5000)]
    assert plan.document_total == D(900 + 510 + 350)
    assert plan.changed


def test_total_with_prices_excluding_vat() -> None:
    plan = plan_discount(ORDER_LINES, D(10), vat_rates={1: D(20), 2: D(10)}, price_includes_vat=False)
    # 900 + 180 VAT, 510 + 51 VAT, delivery 350 without a rate
    assert plan.document_total == D(900 + 180 + 510 + 51 + 350)
    assert [p.vat_amount for p in plan.lines] == [D(180), D(51), None, None]


def test_nothing_to_change() -> None:
    settled = (
        line(1, auto_pct="10", auto_amt="100"),
        line(2, price="200", qty="3", manual_pct="15", manual_amt="90"),
        line(3, price="350", delivery=True),
    )
    plan = plan_discount(settled, D(10), current_total=D(1760))
    assert plan == DiscountPlan(plan.lines, D(1760), changed=False)
    assert not any(p.changed for p in plan.lines)
    # 1C shows 10.00 where the bridge computes 10: still no change
    assert not plan_discount([line(auto_pct="10.00", auto_amt="100.00", amount="900.00")], D(10)).changed


def test_stale_total_alone_is_a_change() -> None:
    settled = (line(1, auto_pct="10", auto_amt="100"),)
    assert plan_discount(settled, D(10), current_total=D(1000)).changed
    assert not plan_discount(settled, D(10), current_total=D(900)).changed


def _order(
    status: OrderStatus = OrderStatus.OPEN, deleted: bool = False, total: str | None = "1000"
) -> Order:
    return Order(
        id="ord-1",
        version="v1",
        number="ЗК-0001",
        date=datetime(2026, 3, 1, tzinfo=UTC),
        customer_id="c1",
        status=status,
        posted=True,
        deleted=deleted,
        lines=(line(1),),
        document_total=None if total is None else D(total),
    )


def test_plan_order_discount_uses_the_order_total() -> None:
    plan = plan_order_discount(_order(), D(5))
    assert plan.document_total == D(950) and plan.changed
    assert not plan_order_discount(_order(), D(0)).changed
    assert not plan_order_discount(_order(total=None), D(0)).changed


@pytest.mark.parametrize(
    ("status", "deleted"),
    [(OrderStatus.CLOSED, False), (OrderStatus.CANCELLED, False), (OrderStatus.OPEN, True)],
)
def test_closed_or_deleted_orders_are_never_touched(status: OrderStatus, deleted: bool) -> None:
    with pytest.raises(ValueError):
        plan_order_discount(_order(status, deleted), D(5))


# --- properties -----------------------------------------------------------------------------

percents = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)
prices = st.decimals(
    min_value=D("0.01"), max_value=1_000_000, places=2, allow_nan=False, allow_infinity=False
)
quantities = st.decimals(
    min_value=D("0.001"), max_value=1000, places=3, allow_nan=False, allow_infinity=False
)


@given(percents, percents)
def test_effective_percent_never_exceeds_the_larger(level: Decimal, manual: Decimal) -> None:
    auto = automatic_percent(level, manual)
    assert auto >= 0
    assert manual + auto == line_percent(level, manual) == max(level, manual)


@given(prices, quantities, percents, percents, st.booleans())
def test_line_discount_bounds(
    price: Decimal, qty: Decimal, level: Decimal, manual: Decimal, vat_in: bool
) -> None:
    base = to_kopecks(price * qty)
    manual_amt = to_kopecks(base * manual / 100)
    row = OrderLine(1, "p", qty, base - manual_amt, price, None, False, manual, manual_amt)
    planned = discount_line(row, level, vat_rate=D(20), price_includes_vat=vat_in)
    assert planned.auto_amount >= 0
    assert 0 <= planned.amount <= base - manual_amt
    assert planned.amount == base - manual_amt - planned.auto_amount
    # the total discount is at most max(level, manual) of the base, give or take a kopeck per amount
    assert manual_amt + planned.auto_amount <= base * max(level, manual) / 100 + D("0.01") * 2
    assert planned.amount == to_kopecks(planned.amount) and planned.auto_amount == to_kopecks(
        planned.auto_amount
    )
    assert planned.vat_amount is not None and 0 <= planned.vat_amount <= planned.amount_with_vat
    # applying the plan and planning again changes nothing (idempotent write-back)
    applied = OrderLine(
        1,
        "p",
        qty,
        planned.amount,
        price,
        None,
        False,
        manual,
        manual_amt,
        planned.auto_percent,
        planned.auto_amount,
    )
    assert not discount_line(applied, level).changed


def test_points_taken_off_the_row_stay_taken_off_under_the_level_discount() -> None:
    """The site lowered a 14 700 row to 14 200 for 500 points; a 5 % level adds 735 on top."""
    from decimal import Decimal

    from bridge.domain.discounts import discount_line
    from bridge.domain.model import OrderLine

    row = OrderLine(1, "jacket", Decimal(1), Decimal(14200), Decimal(14700))
    planned = discount_line(row, Decimal(5))
    assert (planned.auto_percent, planned.auto_amount, planned.amount) == (
        Decimal(5),
        Decimal("735.00"),
        Decimal("13465.00"),
    )
    again = discount_line(
        OrderLine(
            1,
            "jacket",
            Decimal(1),
            planned.amount,
            Decimal(14700),
            auto_discount_percent=Decimal(5),
            auto_discount_amount=planned.auto_amount,
        ),
        Decimal(5),
    )
    assert not again.changed and again.amount == planned.amount


def test_a_level_above_the_promotion_by_less_than_the_field_precision_still_counts() -> None:
    # 14 990 off 150 000 is 9.9933 %: the percent field shows 0.00, the amount is still the 10.00
    # that makes the row's discount exactly 10 %.
    planned = discount_line(line(price="150000", manual_amt="14990"), D(10))
    assert (planned.auto_percent, planned.auto_amount) == (D("0.00"), D("10.00"))
    assert planned.manual_amount + planned.auto_amount == D(15000)
