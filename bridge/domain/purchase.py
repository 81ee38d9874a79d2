"""What counts as a purchase: goods lines, returns matched by product, and the purchase amount.

SPEC §1: the purchase amount is the money actually paid for goods — lines after every discount,
minus delivery lines, minus the points redeemed on the order (valued at ``point_value``) unless the
lines are already net of points; never negative. A customer return reduces its order's lines by
product. Must not import anything outside bridge.domain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal

from bridge.domain.model import ZERO, BonusRules, Order, OrderLine, ReturnDoc


def goods_lines(order: Order) -> tuple[OrderLine, ...]:
    """Rows that are goods: not delivery, not cancelled."""
    return tuple(line for line in order.lines if not line.delivery and not line.cancelled)


def lines_after_returns(order: Order, returns: Iterable[ReturnDoc]) -> tuple[OrderLine, ...]:
    """The order's goods lines with every effective return's amounts taken off, matched by product.

    Several rows of one product are reduced in row order; a row never goes below zero, and a
    returned amount beyond what the order has of the product is ignored (nothing to take).
    """
    lines = list(goods_lines(order))
    for ret in returns:
        if not ret.effective:
            continue
        for rline in ret.lines:
            left = rline.amount
            for i, line in enumerate(lines):
                if left <= ZERO:
                    break
                if line.product_id != rline.product_id or line.amount <= ZERO:
                    continue
                take = min(left, line.amount)
                lines[i] = replace(line, amount=line.amount - take)
                left -= take
    return tuple(lines)


def goods_amount(lines: Iterable[OrderLine]) -> Decimal:
    return sum((line.amount for line in lines), ZERO)


def points_money(rules: BonusRules, points: Decimal) -> Decimal:
    return points * rules.point_value


def purchase_amount(rules: BonusRules, lines: Iterable[OrderLine], points_spent: Decimal) -> Decimal:
    """Money actually paid for goods on these lines, net of redeemed points; never negative."""
    amount = goods_amount(lines)
    if not rules.lines_net_of_points:
        amount -= points_money(rules, points_spent)
    return max(ZERO, amount)


def goods_before_points(rules: BonusRules, order: Order) -> Decimal:
    """The goods amount before points (delivery excluded): the base of ``max_redeem_share``."""
    amount = goods_amount(goods_lines(order))
    if rules.lines_net_of_points:
        amount += points_money(rules, order.redeem_requested)
    return amount
