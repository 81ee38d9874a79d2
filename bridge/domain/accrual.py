"""Accrual: the points a closed order earns, and the quote for a basket per tier.

    accrual = floor( Σ over goods lines of base_line × tier.rate × coefficient(group) )

where ``base_line`` is the line's paid amount net of its pro-rata share of the points redeemed.
Because Σ_i a_i·(1 − P/G)·r·c_i = (G − P)/G · Σ_i a_i·r·c_i, the pro-rata share is applied once to
the whole sum, in exact ``Fraction`` arithmetic, and only the final figure is floored.
Must not import anything outside bridge.domain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from bridge.domain.model import ZERO, BonusRules, OrderLine, Tier
from bridge.domain.money import floor_points


def accrual(rules: BonusRules, lines: Iterable[OrderLine], tier: Tier, points_spent: Decimal) -> Decimal:
    """Points earned by ``lines`` (goods only) at ``tier``, after ``points_spent`` were redeemed."""
    goods = [line for line in lines if not line.delivery and not line.cancelled and line.amount > ZERO]
    gross = sum((Fraction(line.amount) for line in goods), Fraction(0))
    if gross <= 0:
        return ZERO
    weighted = sum(
        (
            Fraction(line.amount) * Fraction(tier.rate) * Fraction(rules.coefficient(line.group))
            for line in goods
        ),
        Fraction(0),
    )
    if rules.lines_net_of_points:
        share = Fraction(1)
    else:
        paid = max(Fraction(0), gross - Fraction(points_spent) * Fraction(rules.point_value))
        share = paid / gross
    return floor_points(weighted * share, rules.point_precision)


@dataclass(frozen=True, slots=True)
class TierQuote:
    tier: Tier
    points: Decimal


@dataclass(frozen=True, slots=True)
class BasketQuote:
    """What a basket would earn at every tier; a guest is shown ``up_to`` (the top tier's figure)."""

    by_tier: tuple[TierQuote, ...]
    customer_tier: Tier | None
    customer_points: Decimal | None

    @property
    def up_to(self) -> Decimal:
        return max((q.points for q in self.by_tier), default=ZERO)


def quote(
    rules: BonusRules,
    lines: Sequence[OrderLine],
    points_spent: Decimal = ZERO,
    customer_tier: Tier | None = None,
) -> BasketQuote:
    """Points the basket would earn at each tier (and at the customer's own tier, if known)."""
    by_tier = tuple(TierQuote(t, accrual(rules, lines, t, points_spent)) for t in rules.tiers)
    own = accrual(rules, lines, customer_tier, points_spent) if customer_tier is not None else None
    return BasketQuote(by_tier=by_tier, customer_tier=customer_tier, customer_points=own)
