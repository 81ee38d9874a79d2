"""The level discount on an open order's lines: percents, kopeck amounts, VAT and the total.

Owns the arithmetic behind SPEC §3 "Applying the discount" and ONEC.md "Discounts on open
orders": what goes into each goods row's automatic-discount fields and the document total. The
result is a ``DiscountPlan``; the 1C adapter writes it (or skips the write when nothing changed).
Pure: must not import anything outside ``bridge.domain``.

Per goods line, with ``level`` the customer's level percent and ``manual`` the line's manual
(promotional) percent:

* effective percent ``= max(level, manual)`` — discounts are never summed;
* automatic percent ``= max(0, level − manual)``, cut to 0.01 % (1C's field precision) towards zero;
* ``base = price × quantity`` rounded half-up to kopecks. When the mapping gives no price
  (``price == 0``) the base is rebuilt from 1C's own figures: ``amount + manual + automatic``;
* automatic amount ``= round_half_up(price × quantity × effective percent / 100) − manual amount``
  (0 when the level is not above the manual percent), capped so the line never goes below zero:
  the line's whole discount is exactly the effective percent of its gross, rounded once. The
  percent field is
  informational; the amount is what the customer gets (a fixed-sum promotion's percent is a
  fraction, and 6.66 % of 15 000 would leave the customer a ruble short of 10 %);
* the manual amount stays exactly as 1C has it;
* line amount ``= base − manual amount − automatic amount``;
* VAT, where the line has a rate: ``amount × rate / (100 + rate)`` when prices include VAT,
  ``amount × rate / 100`` otherwise, half-up to kopecks; the amount with VAT is the amount itself
  when prices include VAT and ``amount + VAT`` otherwise;
* document total ``= Σ`` amount with VAT over the lines that are not cancelled (that is, ``Σ`` line
  amounts when prices include VAT, plus ``Σ`` VAT when they do not).

A line whose manual percent is 0 but which carries a manual amount (a fixed-sum discount) counts
that amount as its manual percent (``manual amount / base × 100``), so a fixed-sum promotion is not
topped up beyond the level either.

Delivery lines and cancelled lines get no level discount and are left exactly as 1C has them
(their automatic fields are not touched either): delivery is not goods (SPEC §1), and a cancelled
row is out of the order and out of its total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from bridge.domain.model import Order, OrderLine, OrderStatus

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_KOPECK = Decimal("0.01")
_PERCENT_STEP = Decimal("0.01")


def to_kopecks(x: Decimal) -> Decimal:
    """Round money half-up (away from zero on a tie) to kopecks: ``0.005 → 0.01``."""
    return x.quantize(_KOPECK, rounding=ROUND_HALF_UP)


def line_percent(level_percent: Decimal, manual_percent: Decimal) -> Decimal:
    """The percent a line ends up with: the larger of the level's and the line's own (SPEC example 6).

    A 7 % promotional line keeps 7 % for a 5 % customer and gets 10 % for a 10 % customer.
    """
    return max(level_percent, manual_percent)


def automatic_percent(level_percent: Decimal, manual_percent: Decimal) -> Decimal:
    """What the bridge puts in the automatic-discount percent: ``max(0, level − manual)``.

    Cut to 0.01 % towards zero, so the line's total percent never exceeds :func:`line_percent`.
    """
    return max(_ZERO, level_percent - manual_percent).quantize(_PERCENT_STEP, rounding=ROUND_DOWN)


def vat_amount(amount: Decimal, rate_percent: Decimal, price_includes_vat: bool) -> Decimal:
    """The VAT in (or on top of) a line amount, half-up to kopecks.

    Args:
        amount: the line amount after discounts.
        rate_percent: the VAT rate, 20 for 20 %.
        price_includes_vat: whether 1C's prices (and so ``amount``) include VAT.

    Returns:
        ``amount × rate / (100 + rate)`` when prices include VAT, else ``amount × rate / 100``.
    """
    if price_includes_vat:
        return to_kopecks(amount * rate_percent / (_HUNDRED + rate_percent))
    return to_kopecks(amount * rate_percent / _HUNDRED)


@dataclass(frozen=True, slots=True)
class LineDiscount:
    """One order line as the bridge wants it in 1C.

    Attributes:
        line_no: the row's number in 1C.
        base: price × quantity before any discount, in kopecks.
        manual_percent: the row's manual (promotional) percent as used for the comparison.
        manual_amount: the row's manual discount amount, unchanged.
        auto_percent: the automatic-discount percent to write.
        auto_amount: the automatic-discount amount to write.
        amount: the row's amount after both discounts.
        vat_amount: VAT of the row; None when the row has no VAT rate.
        amount_with_vat: what the row adds to the document total.
        applied: False for delivery and cancelled rows, which are left as they are.
        changed: whether any field to write differs from what 1C has now.
    """

    line_no: int
    base: Decimal
    manual_percent: Decimal
    manual_amount: Decimal
    auto_percent: Decimal
    auto_amount: Decimal
    amount: Decimal
    vat_amount: Decimal | None
    amount_with_vat: Decimal
    applied: bool
    changed: bool


@dataclass(frozen=True, slots=True)
class DiscountPlan:
    """The level discount for a whole order: the lines, the new total, and whether to write."""

    lines: tuple[LineDiscount, ...]
    document_total: Decimal
    changed: bool


def _base(line: OrderLine) -> Decimal:
    if line.price:
        return to_kopecks(line.price * line.quantity)
    return line.amount + line.manual_discount_amount + line.auto_discount_amount


def _manual_percent(line: OrderLine, base: Decimal) -> Decimal:
    if line.manual_discount_percent or not line.manual_discount_amount or base <= 0:
        return line.manual_discount_percent
    return line.manual_discount_amount * _HUNDRED / base


def _with_vat(
    amount: Decimal, vat_rate: Decimal | None, price_includes_vat: bool
) -> tuple[Decimal | None, Decimal]:
    if vat_rate is None:
        return None, amount
    vat = vat_amount(amount, vat_rate, price_includes_vat)
    return vat, amount if price_includes_vat else amount + vat


def discount_line(
    line: OrderLine,
    level_percent: Decimal,
    vat_rate: Decimal | None = None,
    price_includes_vat: bool = True,
) -> LineDiscount:
    """Apply the level percent to one order line (see the module docstring for the arithmetic).

    Args:
        line: the row as read from 1C.
        level_percent: the customer's level percent, 5 for 5 %.
        vat_rate: the row's VAT rate in percent, None when VAT is not mapped or not charged.
        price_includes_vat: whether 1C's prices include VAT.

    Returns:
        The row as it should be; delivery and cancelled rows come back unchanged (``applied`` False).
    """
    base = _base(line)
    manual = _manual_percent(line, base)
    if line.delivery or line.cancelled:
        vat, with_vat = _with_vat(line.amount, vat_rate, price_includes_vat)
        return LineDiscount(
            line.line_no,
            base,
            manual,
            line.manual_discount_amount,
            line.auto_discount_percent,
            line.auto_discount_amount,
            line.amount,
            vat,
            with_vat,
            applied=False,
            changed=False,
        )
    auto_pct = automatic_percent(level_percent, manual)
    gross = line.price * line.quantity if line.price else base
    # What the row lost outside the discount fields (redeemed points the site took off the row
    # when lines are net of points) stays lost: the level discount comes on top of it.
    other = to_kopecks(
        max(_ZERO, base - line.manual_discount_amount - line.auto_discount_amount - line.amount)
    )
    room = max(_ZERO, base - line.manual_discount_amount - other)
    # The line's whole discount is the larger percent of its gross, rounded once (SPEC §3: the
    # larger percent wins, never summed): the automatic amount is what the manual one leaves of it,
    # not the cut percent's own amount (a fixed-sum promotion's percent is a fraction: 10 % over
    # 500 off 15 000 is 1 000.00, where 6.66 % would give 999.00).
    whole = to_kopecks(gross * line_percent(level_percent, manual) / _HUNDRED)
    # Whenever the level is above the promotion, even by less than the percent field's 0.01 %.
    beyond = level_percent > manual
    auto_amt = min(room, max(_ZERO, whole - line.manual_discount_amount)) if beyond else _ZERO
    amount = base - line.manual_discount_amount - auto_amt - other
    vat, with_vat = _with_vat(amount, vat_rate, price_includes_vat)
    changed = (
        auto_pct != line.auto_discount_percent
        or auto_amt != line.auto_discount_amount
        or amount != line.amount
    )
    return LineDiscount(
        line.line_no,
        base,
        manual,
        line.manual_discount_amount,
        auto_pct,
        auto_amt,
        amount,
        vat,
        with_vat,
        applied=True,
        changed=changed,
    )


def plan_discount(
    lines: Iterable[OrderLine],
    level_percent: Decimal,
    *,
    vat_rates: Mapping[int, Decimal] | None = None,
    price_includes_vat: bool = True,
    current_total: Decimal | None = None,
) -> DiscountPlan:
    """Apply the level percent to every line and recompute the document total.

    Args:
        lines: the order's rows as read from 1C.
        level_percent: the customer's level percent (0 at a level without discount, which clears
            any automatic discount left from a higher level).
        vat_rates: VAT rate in percent per ``line_no``; rows absent from it carry no VAT.
        price_includes_vat: whether 1C's prices include VAT.
        current_total: 1C's ``СуммаДокумента`` now, if known; a different total alone makes the
            plan ``changed``.

    Returns:
        The plan; ``changed`` is False when writing it would change nothing in 1C.
    """
    rates = vat_rates or {}
    rows = tuple(lines)
    planned = tuple(
        discount_line(line, level_percent, rates.get(line.line_no), price_includes_vat) for line in rows
    )
    total = sum((p.amount_with_vat for p, row in zip(planned, rows, strict=True) if not row.cancelled), _ZERO)
    changed = any(p.changed for p in planned) or (current_total is not None and current_total != total)
    return DiscountPlan(planned, total, changed)


def plan_order_discount(
    order: Order,
    level_percent: Decimal,
    *,
    vat_rates: Mapping[int, Decimal] | None = None,
    price_includes_vat: bool = True,
) -> DiscountPlan:
    """:func:`plan_discount` for an open order, compared against its current document total.

    Raises:
        ValueError: the order is not open (closed, cancelled) or is marked for deletion — the
            bridge never touches a closed order's prices.
    """
    if order.status is not OrderStatus.OPEN or order.deleted:
        raise ValueError(f"order {order.id} is not open: its prices are not the bridge's to change")
    return plan_discount(
        order.lines,
        level_percent,
        vat_rates=vat_rates,
        price_includes_vat=price_includes_vat,
        current_total=order.document_total,
    )
