"""The customer snapshot of CONTRACT.md's webhook body, built from a ``CustomerView``.

Numbers are strings (exact decimals); times are ISO-8601 in whole seconds with the store's offset,
as in CONTRACT.md's example (the clock's microseconds stay in the ledger). The same snapshot serves
the site webhook and ``loyalty-bridge customer --json``.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from bridge.domain.money import money_str, points_str
from bridge.domain.views import CustomerView


def iso(value: datetime | None, tz: tzinfo) -> str | None:
    """``2026-03-15T12:00:00+03:00``: whole seconds (truncated), the store's offset."""
    return value.astimezone(tz).isoformat(timespec="seconds") if value is not None else None


def percent_str(value: Any) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def snapshot_data(view: CustomerView, tz: tzinfo, *, precision: int = 0) -> dict[str, Any]:
    """The ``data`` object minus ``sequence`` and ``reasons`` (added by the sender)."""
    data: dict[str, Any] = {
        "customer": {
            "id": view.customer_id,
            "card_number": view.card_number,
            "card_status": view.card_status,
        },
        "bonus": None,
        "discount": None,
    }
    if view.tier is not None:
        data["bonus"] = {
            "tier": {"code": view.tier.code, "name": view.tier.name},
            "volume": money_str(view.volume),
            "total": points_str(view.total, precision),
            "available": points_str(view.available, precision),
            "pending": points_str(view.pending, precision),
            "next_available_at": iso(view.next_available_at, tz),
            "next_tier": (
                {"code": view.next_tier.code, "missing": money_str(view.next_tier_missing)}
                if view.next_tier is not None and view.next_tier_missing is not None
                else None
            ),
        }
        if view.debt:
            data["bonus"]["debt"] = points_str(view.debt, precision)
    if view.level is not None:
        data["discount"] = {
            "level": {
                "code": view.level.code,
                "name": view.level.name,
                "percent": percent_str(view.level.percent),
            },
            "valid_until": iso(view.valid_until, tz),
            "period_sum": money_str(view.period_sum),
            "next_level": (
                {"code": view.next_level.code, "missing": money_str(view.next_level_missing)}
                if view.next_level is not None and view.next_level_missing is not None
                else None
            ),
        }
    return data
