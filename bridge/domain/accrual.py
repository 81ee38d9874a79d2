"""Accrual: the points a closed order earns, and the quote for a basket per tier.

    accrual = floor( Σ over goods lines of base_line × tier.rate × coefficient(group) )

where ``base_line`` is the line's paid amount net of its pro-rata share of the points redeemed.
Because Σ_i a_i·(1 − P/G)·r·c_i = (G − P)/G · Σ_i a_i·r·c_i, the pro-rata share is applied once to
the whole sum, in exact arithmetic, and only the final figure is floored: sums and products of
decimals in a context too wide to ever round (``_EXACT``), the one division as an integer floor
division. ``accrual_by_fractions`` is the same formula in ``Fraction`` arithmetic: the reference
the property tests hold ``accrual`` to, and what ``accrual`` falls back on for anything but finite
decimals (so such input fails exactly as it always did).
Must not import anything outside bridge.domain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_FLOOR,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Rounded,
)
from fractions import Fraction

from bridge.domain.model import ZERO, BonusRules, OrderLine, Tier
from bridge.domain.money import floor_points, points_of_units

# Sums and products of finite decimals are exact here (no result can need MAX_PREC digits); a
# rounding would raise rather than pass unnoticed. It divides only in ``divmod`` (an integer
# quotient and its remainder, both exact).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Inexact, Rounded])


def accrual(rules: BonusRules, lines: Iterable[OrderLine], tier: Tier, points_spent: Decimal) -> Decimal:
    """Points earned by ``lines`` (goods only) at ``tier``, after ``points_spent`` were redeemed."""
    goods = [line for line in lines if not line.delivery and not line.cancelled and line.amount > ZERO]
    precision = rules.point_precision
    try:
        add, mul = _EXACT.add, _EXACT.multiply
        rate = tier.rate
        gross = weighted = ZERO
        for line in goods:
            gross = add(gross, line.amount)
            weighted = add(weighted, mul(mul(line.amount, rate), rules.coefficient(line.group)))
        if not (gross.is_finite() and weighted.is_finite()) or precision < 0:
            raise ValueError("not finite decimals")  # the reference decides what this means
        if gross <= ZERO:
            return ZERO
        scaled = mul(weighted, 10**precision)
        if rules.lines_net_of_points:
            return points_of_units(
                int(scaled.to_integral_value(rounding=ROUND_FLOOR, context=_EXACT)), precision
            )
        paid = _EXACT.subtract(gross, mul(points_spent, rules.point_value))
        if not paid.is_finite():
            raise ValueError("not finite decimals")
        if paid < ZERO:
            paid = ZERO
        # floor(scaled · paid / gross): gross > 0, and ``divmod`` truncates towards zero with a
        # remainder of the dividend's sign, so a negative remainder means one below the quotient.
        quotient, remainder = _EXACT.divmod(mul(scaled, paid), gross)
        units = int(quotient)
        return points_of_units(units - 1 if remainder < ZERO else units, precision)
    except (ArithmeticError, TypeError, ValueError):
        return accrual_by_fractions(rules, goods, tier, points_spent)


def accrual_by_fractions(
    rules: BonusRules, lines: Iterable[OrderLine], tier: Tier, points_spent: Decimal
) -> Decimal:
    """``accrual`` in ``Fraction`` arithmetic: the reference (see the module's docstring)."""
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
        """The top tier's figure (SPEC "Guests"); the tiers ascend by threshold, so it is the last.

        Not the largest figure: a ladder whose top tier earns a lower rate shows what that tier earns.
        """
        return self.by_tier[-1].points if self.by_tier else ZERO


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
