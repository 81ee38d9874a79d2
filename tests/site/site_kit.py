"""Shared pieces of the site tests: secrets, a realistic snapshot, outbox rows on a real SQLite state."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from bridge.domain.views import CustomerView, LevelView, TierView
from bridge.service.snapshot import snapshot_data
from bridge.site.webhook import build_body
from bridge.store import outbox
from bridge.store.ledger import LedgerStore

MSK = ZoneInfo("Europe/Moscow")
SECRET = "whsec_" + base64.b64encode(b"new-secret-of-the-store-32-bytes").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"old-secret-of-the-store-32-bytes").decode()
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)  # 12:00 in Moscow


def view(customer_id: str, at: datetime, *, total: str = "639") -> CustomerView:
    """A gold customer with pending points and the «Фанат животных» level (CONTRACT.md's example)."""
    return CustomerView(
        customer_id=customer_id,
        at=at,
        card_number="2990000000019",
        card_status="virtual",
        tier=TierView("gold", "Золотой"),
        volume=Decimal("40000.00"),
        total=Decimal(total),
        available=Decimal("0"),
        pending=Decimal(total),
        debt=Decimal("0"),
        next_available_at=datetime(2026, 3, 15, 9, 0, tzinfo=UTC),
        next_tier=TierView("platinum", "Платиновый"),
        next_tier_missing=Decimal("60000.00"),
        level=LevelView("fan", "Фанат животных", Decimal("5")),
        valid_until=datetime(2026, 7, 30, 21, 0, tzinfo=UTC),
        period_sum=Decimal("11000.00"),
        next_level=LevelView("king", "Царь зверей", Decimal("10")),
        next_level_missing=Decimal("39000.00"),
        level_history_text="",
    )


def body_for(
    customer_id: str, now: datetime, sequence: int, reasons: tuple[str, ...] = ("points_accrued",)
) -> dict[str, Any]:
    return build_body(
        timestamp=now,
        tz=MSK,
        data=snapshot_data(view(customer_id, now), MSK),
        sequence=sequence,
        reasons=list(reasons),
    )


def enqueue_snapshot(
    engine: Engine, customer_id: str, now: datetime, reasons: tuple[str, ...] = ("points_accrued",)
) -> outbox.OutboxMessage:
    """What a cycle does: lock the customer, take the next sequence, enqueue the body with the ledger."""
    with engine.begin() as conn:
        LedgerStore(engine).lock_customer(conn, customer_id, now)
        sequence = outbox.next_sequence(conn, customer_id)
        row_id = outbox.enqueue(
            conn,
            channel="webhook",
            kind="customer.updated",
            customer_id=customer_id,
            payload={"body": body_for(customer_id, now, sequence, reasons)},
            now=now,
            sequence=sequence,
        )
    return row(engine, row_id)


def rows(engine: Engine) -> list[outbox.OutboxMessage]:
    with engine.begin() as conn:
        return outbox.listing(conn, (outbox.PENDING, outbox.SENT, outbox.DEAD))


def row(engine: Engine, row_id: int | None) -> outbox.OutboxMessage:
    found = [m for m in rows(engine) if m.id == row_id]
    assert found, f"no outbox row {row_id}"
    return found[0]
