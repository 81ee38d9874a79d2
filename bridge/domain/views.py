"""What people see: the loyalty figures of one order and one customer, as plain values.

The same views feed the write-back to 1C (order and partner attributes), the site webhook
snapshot and the ``customer`` CLI command, so every surface shows the same numbers. Built by
``bridge.domain.book``; rendered by the adapters. Must not import anything outside bridge.domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class OrderView:
    """The loyalty fields of one order as 1C should show them."""

    order_id: str
    points_spent: Decimal  # reserved or spent on this order (0 when refused or released)
    points_earned: Decimal  # accrued by this order (0 until it counts)
    available_from: datetime | None  # when the earned points become available
    message: str  # refusal or problem in plain Russian; "" when fine
    issue_card: bool  # the customer has no physical card yet: hand one out with this order


@dataclass(frozen=True, slots=True)
class TierView:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class LevelView:
    code: str
    name: str
    percent: Decimal


@dataclass(frozen=True, slots=True)
class CustomerView:
    """A customer's whole loyalty state at one moment (the webhook snapshot and partner fields)."""

    customer_id: str
    at: datetime
    card_number: str | None
    card_status: str | None  # "virtual" | "issued"
    # bonus program (None fields when the program is off)
    tier: TierView | None
    volume: Decimal
    total: Decimal
    available: Decimal
    pending: Decimal
    debt: Decimal
    next_available_at: datetime | None
    next_tier: TierView | None
    next_tier_missing: Decimal | None
    # discount program
    level: LevelView | None
    valid_until: datetime | None
    period_sum: Decimal
    next_level: LevelView | None
    next_level_missing: Decimal | None
    level_history_text: str  # 1C's «История уровней»: newest first, one line per entry
