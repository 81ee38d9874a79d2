"""Exact money and points arithmetic: rounding rules and Russian number formatting.

Points round *down* (in the customer's disfavour by at most one point); money rounds half-up to
kopecks. Computations that divide go through ``fractions.Fraction`` so a floor is never off by one
because of a rounded intermediate. Must not import anything outside bridge.domain.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from fractions import Fraction

KOPECK = Decimal("0.01")
ZERO = Decimal(0)


def floor_points(value: Decimal | Fraction, precision: int = 0) -> Decimal:
    """Round points down to ``precision`` decimal places (0 = whole points), exactly."""
    scale = 10**precision
    if isinstance(value, Fraction):
        return points_of_units((value * scale).__floor__(), precision)
    return value.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_FLOOR)


def points_of_units(units: int, precision: int = 0) -> Decimal:
    """``units`` of ``10**-precision`` points, as ``floor_points`` writes a floored figure."""
    return (Decimal(units) / Decimal(10**precision)).quantize(Decimal(1).scaleb(-precision))


def round_money(value: Decimal | Fraction) -> Decimal:
    """Round money half-up to kopecks."""
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    return value.quantize(KOPECK, rounding=ROUND_HALF_UP)


def money_str(value: Decimal) -> str:
    """Two-decimal string for machines (webhook, JSON): ``40000.00``."""
    return str(value.quantize(KOPECK, rounding=ROUND_HALF_UP))


def points_str(value: Decimal, precision: int = 0) -> str:
    """Points for machines: ``639`` (or ``12.50`` with ``point_precision`` 2)."""
    return str(value.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_FLOOR))


def ru_number(value: Decimal, places: int = 0) -> str:
    """A number the way a Russian reader expects it: ``14 200``, ``4 000,00``."""
    quantum = Decimal(1).scaleb(-places)
    text = f"{value.quantize(quantum, rounding=ROUND_HALF_UP):,.{places}f}"
    return text.replace(",", "\u00a0").replace(".", ",").replace("\u00a0", " ")


def ru_plural(n: Decimal | int, one: str, few: str, many: str) -> str:
    """Russian plural form for a count: 1 бонус, 2 бонуса, 5 бонусов (fractions take ``few``)."""
    value = Decimal(n)
    if value != value.to_integral_value():
        return few
    k = int(abs(value))
    if k % 10 == 1 and k % 100 != 11:
        return one
    if 2 <= k % 10 <= 4 and not 12 <= k % 100 <= 14:
        return few
    return many


def points_phrase(n: Decimal, precision: int = 0) -> str:
    """``500 бонусов``, ``1 бонус``, ``22 бонуса``."""
    places = precision if n != n.to_integral_value() else 0
    return f"{ru_number(n, places)} {ru_plural(n, 'бонус', 'бонуса', 'бонусов')}"
