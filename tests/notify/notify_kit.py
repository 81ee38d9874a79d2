"""Builders for notification tests: events, customer views, customers and a ``notify`` config."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from bridge.domain.ledger import Event, Reason
from bridge.domain.model import Customer
from bridge.domain.views import CustomerView, LevelView, TierView
from bridge.runtime.config_channels import NotifyConfig
from bridge.store.outbox import OutboxMessage

MSK = ZoneInfo("Europe/Moscow")
CLOSED = datetime(2026, 3, 2, 15, 0, tzinfo=MSK)  # SPEC example 1: the jacket order closes
CUSTOMER = Customer("c-dmitry", "Дмитрий", phone="+79161234567", email="dmitry@example.ru")


def view(**changes: Any) -> CustomerView:
    """Dmitry right after example 1: Gold, 639 pending points, fan level until 31.07.2026."""
    base = CustomerView(
        customer_id=CUSTOMER.id,
        at=CLOSED,
        card_number="2990000000019",
        card_status="virtual",
        tier=TierView("gold", "Золотой"),
        volume=Decimal("40000.00"),
        total=Decimal(639),
        available=Decimal(0),
        pending=Decimal(639),
        debt=Decimal(0),
        next_available_at=CLOSED + timedelta(days=14),
        next_tier=TierView("platinum", "Платиновый"),
        next_tier_missing=Decimal("60000.00"),
        level=LevelView("fan", "Фанат животных", Decimal(5)),
        valid_until=datetime(2026, 7, 31, tzinfo=MSK),
        period_sum=Decimal("11000.00"),
        next_level=LevelView("king", "Царь зверей", Decimal(10)),
        next_level_missing=Decimal("39000.00"),
        level_history_text="",
    )
    return replace(base, **changes)


def event(reason: Reason, **changes: Any) -> Event:
    base = Event(reason, CUSTOMER.id, f"{reason.value}:o-1", CLOSED, order_id="o-1")
    return replace(base, **changes)


def notify_config(data: dict[str, Any] | None = None, **env: str) -> NotifyConfig:
    """Both channels on unless ``data`` says otherwise."""
    merged: dict[str, Any] = {
        "sms": {"url": "https://sms.example/send"},
        "email": {"smtp_host": "smtp.example.ru", "from": "shop@example.ru"},
    }
    for key, value in (data or {}).items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and key in merged else value
    return NotifyConfig.model_validate(merged, context={"environ": {"SMS_TOKEN": "t", **env}})


def outbox_message(channel: str, payload: dict[str, Any], message_id: str = "msg_0001") -> OutboxMessage:
    return OutboxMessage(
        id=1,
        message_id=message_id,
        channel=channel,
        kind="points_accrued",
        customer_id=CUSTOMER.id,
        target=payload.get("to"),
        sequence=None,
        payload=payload,
        status="pending",
        attempts=0,
        created_at=CLOSED,
        next_attempt_at=CLOSED,
    )
