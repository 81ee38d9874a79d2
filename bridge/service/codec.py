"""Views as plain JSON for outbox payloads (Decimals as strings, times as ISO-8601), and back."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from bridge.domain.views import CustomerView, LevelView, OrderView, TierView


def _enc(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, TierView | LevelView):
        return {f.name: _enc(getattr(value, f.name)) for f in fields(value)}
    return value


def view_to_json(view: OrderView | CustomerView) -> dict[str, Any]:
    return {f.name: _enc(getattr(view, f.name)) for f in fields(view)}


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def order_view_from_json(data: dict[str, Any]) -> OrderView:
    return OrderView(
        order_id=data["order_id"],
        points_spent=Decimal(data["points_spent"]),
        points_earned=Decimal(data["points_earned"]),
        available_from=_dt(data["available_from"]),
        message=data["message"],
        issue_card=bool(data["issue_card"]),
    )


def _tier(d: dict[str, Any] | None) -> TierView | None:
    return None if d is None else TierView(d["code"], d["name"])


def _level(d: dict[str, Any] | None) -> LevelView | None:
    return None if d is None else LevelView(d["code"], d["name"], Decimal(d["percent"]))


def customer_view_from_json(data: dict[str, Any]) -> CustomerView:
    return CustomerView(
        customer_id=data["customer_id"],
        at=datetime.fromisoformat(data["at"]),
        card_number=data["card_number"],
        card_status=data["card_status"],
        tier=_tier(data["tier"]),
        volume=Decimal(data["volume"]),
        total=Decimal(data["total"]),
        available=Decimal(data["available"]),
        pending=Decimal(data["pending"]),
        debt=Decimal(data["debt"]),
        next_available_at=_dt(data["next_available_at"]),
        next_tier=_tier(data["next_tier"]),
        next_tier_missing=_dec(data["next_tier_missing"]),
        level=_level(data["level"]),
        valid_until=_dt(data["valid_until"]),
        period_sum=Decimal(data["period_sum"]),
        next_level=_level(data["next_level"]),
        next_level_missing=_dec(data["next_level_missing"]),
        level_history_text=data["level_history_text"],
    )
