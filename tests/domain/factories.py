"""Builders for domain objects used across the domain and store tests."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from bridge.domain.book import Rules
from bridge.domain.model import (
    BonusRules,
    DiscountRules,
    Level,
    Order,
    OrderLine,
    OrderStatus,
    Tier,
)

MSK = ZoneInfo("Europe/Moscow")
D = Decimal

TIERS = (
    Tier("silver", "Серебряный", D(0), D("0.02")),
    Tier("gold", "Золотой", D(30000), D("0.03")),
    Tier("platinum", "Платиновый", D(100000), D("0.05")),
    Tier("vip", "VIP", D(300000), D("0.07")),
)
LEVELS = (
    Level("base", "Новичок", D(0), D(0), None),
    Level("fan", "Фанат животных", D(10000), D(5), 180),
    Level("king", "Царь зверей", D(50000), D(10), 180),
)


def bonus_rules(**kw: object) -> BonusRules:
    base: dict[str, object] = dict(
        tiers=TIERS,
        point_value=D(1),
        hold_days=14,
        expiry_days=365,
        groups={"bikes": D("1.0"), "apparel": D("1.5"), "sale": D(0)},
    )
    base.update(kw)
    return BonusRules(**base)  # type: ignore[arg-type]


def discount_rules() -> DiscountRules:
    return DiscountRules(levels=LEVELS, period_days=365)


def rules(bonus: bool = True, discount: bool = True, **kw: object) -> Rules:
    return Rules(bonus_rules(**kw) if bonus else None, discount_rules() if discount else None)


def at(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=MSK)


def line(amount: str | int, group: str | None = "bikes", product: str = "p-bike", **kw: object) -> OrderLine:
    return OrderLine(
        line_no=int(kw.pop("line_no", 1)),  # type: ignore[call-overload]
        product_id=product,
        quantity=D(1),
        amount=D(amount),
        price=D(amount),
        group=group,
        **kw,  # type: ignore[arg-type]
    )


def order(
    oid: str,
    customer: str,
    lines: tuple[OrderLine, ...] | list[OrderLine],
    *,
    status: OrderStatus = OrderStatus.CLOSED,
    date: datetime | None = None,
    version: str = "v1",
    redeem: str | int = 0,
    posted: bool = True,
    deleted: bool = False,
) -> Order:
    return Order(
        id=oid,
        version=version,
        number=oid.upper(),
        date=date or at(2026, 3, 1, 10),
        customer_id=customer,
        status=status,
        posted=posted,
        deleted=deleted,
        lines=tuple(lines),
        redeem_requested=D(redeem),
    )
