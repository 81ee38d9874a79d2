"""``accrual`` in decimal arithmetic gives exactly what the ``Fraction`` formula always gave.

``reference`` is the function as it was before the decimal version (verbatim): every figure, its
exponent (``Decimal('639')`` and ``Decimal('639.00')`` are stored differently) and every error must
be the same, for any lines, tier, coefficients, precision, point value and points spent.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.domain.accrual import accrual, accrual_by_fractions
from bridge.domain.model import ZERO, BonusRules, OrderLine, Tier
from bridge.domain.money import floor_points

D = Decimal


def reference(rules: BonusRules, lines: Iterable[OrderLine], tier: Tier, points_spent: Decimal) -> Decimal:
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


def decimals(low: str, high: str, places: int = 6) -> st.SearchStrategy[Decimal]:
    """Decimals with assorted exponents (``1``, ``1.0``, ``1E+2``) between ``low`` and ``high``."""
    plain = st.decimals(
        min_value=D(low), max_value=D(high), places=places, allow_nan=False, allow_infinity=False
    )
    scaled = st.builds(lambda d, e: d.scaleb(e), plain, st.integers(-3, 3))
    return st.one_of(plain, scaled, st.sampled_from([D(0), D("0.00"), D("-0"), D(1), D("1.000")]))


special = st.sampled_from([D("NaN"), D("Infinity"), D("-Infinity"), D("sNaN")])
GROUPS = ["bikes", "apparel", "sale", None, "other"]

lines = st.lists(
    st.builds(
        OrderLine,
        line_no=st.integers(1, 9),
        product_id=st.just("p"),
        quantity=st.just(D(1)),
        amount=decimals("-1000", "10000000", 2),
        group=st.sampled_from(GROUPS),
        delivery=st.booleans(),
        cancelled=st.sampled_from([False, False, False, True]),
    ),
    max_size=8,
)


@st.composite
def cases(draw: st.DrawFn, odd: bool = False) -> tuple[BonusRules, list[OrderLine], Tier, Decimal]:
    value = (lambda s: st.one_of(s, special)) if odd else (lambda s: s)
    coefficient = value(decimals("-2", "5", 4))
    rules = BonusRules(
        tiers=(),
        point_value=draw(value(decimals("0", "100", 4))),
        point_precision=draw(st.integers(0, 4)),
        default_coefficient=draw(coefficient),
        groups={g: draw(coefficient) for g in ("bikes", "apparel", "sale")},
        lines_net_of_points=draw(st.booleans()),
    )
    tier = Tier("t", "T", D(0), draw(value(decimals("-0.5", "1", 6))))
    return rules, draw(lines), tier, draw(value(decimals("-100", "1000000", 3)))


def outcome(fn: object, *args: object) -> object:
    try:
        result = fn(*args)  # type: ignore[operator]
    except Exception as exc:  # the very error is part of the behaviour
        return ("raises", type(exc))
    assert isinstance(result, Decimal)
    return ("value", str(result))  # the text: the value and its exponent


@settings(max_examples=1000)
@given(cases())
@example(
    (
        BonusRules(tiers=(), groups={"apparel": D("1.5")}, lines_net_of_points=False),
        [OrderLine(1, "p", D(1), D(14700), group="apparel")],
        Tier("gold", "Gold", D(30000), D("0.03")),
        D(500),
    )
)
def test_accrual_is_the_fraction_formula(case: tuple[BonusRules, list[OrderLine], Tier, Decimal]) -> None:
    assert outcome(accrual, *case) == outcome(reference, *case)


@settings(max_examples=400)
@given(cases(odd=True))
def test_accrual_fails_as_the_fraction_formula_did(
    case: tuple[BonusRules, list[OrderLine], Tier, Decimal],
) -> None:
    assert outcome(accrual, *case) == outcome(reference, *case)
    assert outcome(accrual_by_fractions, *case) == outcome(reference, *case)


def test_spec_example_one() -> None:
    """SPEC example 1: floor(14 200 × 0.03 × 1.5) = 639 (lines net of points)."""
    rules = BonusRules(tiers=(), groups={"apparel": D("1.5")})
    jacket = [OrderLine(1, "p", D(1), D(14200), group="apparel")]
    assert str(accrual(rules, jacket, Tier("gold", "Gold", D(30000), D("0.03")), D(500))) == "639"
