"""Redemption: may an order spend the points it asks for? The answer, with a plain reason.

SPEC §2: the request is checked against ``available`` at the order's time and against
``bonus.max_redeem_share`` of the goods amount before points (delivery excluded). Refusals say in
plain Russian what was available and what was asked. Must not import anything outside bridge.domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from bridge.domain.model import ZERO, BonusRules
from bridge.domain.money import floor_points, points_phrase, ru_number


@dataclass(frozen=True, slots=True)
class Decision:
    accepted: Decimal  # points reserved (0 when refused)
    message: str  # "" when accepted (or nothing asked)

    @property
    def refused(self) -> bool:
        return self.message != ""


def decide(
    rules: BonusRules,
    requested: Decimal,
    available: Decimal,
    goods_before_points: Decimal,
    *,
    pending: Decimal = ZERO,
    next_available_at: datetime | None = None,
    tz: tzinfo | None = None,
) -> Decision:
    """Accept ``requested`` points in full or refuse them with a reason; never a partial spend."""
    if requested <= ZERO:
        return Decision(ZERO, "")
    precision = rules.point_precision
    if floor_points(requested, precision) != requested:
        return Decision(
            ZERO,
            f"Запрошено {ru_number(requested, 4).rstrip('0').rstrip(',')} бонусов: списать можно только "
            f"целое число бонусов",
        )
    cap = floor_points(goods_before_points * rules.max_redeem_share / rules.point_value, precision)
    if requested > cap:
        share = ru_number(rules.max_redeem_share * 100, 0)
        return Decision(
            ZERO,
            f"Бонусами можно оплатить не более {share}% стоимости товаров: не более "
            f"{points_phrase(cap, precision)}, запрошено {ru_number(requested, precision)}",
        )
    if requested > available:
        text = f"Доступно {points_phrase(available, precision)}, запрошено {ru_number(requested, precision)}"
        if pending > ZERO and next_available_at is not None:
            when = next_available_at.astimezone(tz) if tz else next_available_at
            text += f" (ещё {points_phrase(pending, precision)} станут доступны с {when:%d.%m.%Y})"
        return Decision(ZERO, text)
    return Decision(requested, "")
