"""Helpers for the bad-input suite: an installation on loopback (``tests.e2e.cycle_kit.world``)
with good documents around each bad one, and short readers of what the bridge kept."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from bridge.net import RetryPolicy
from bridge.store import schema as t
from bridge.store import tracking
from tests.e2e.cycle_kit import MSK, World

ORDERS = "Document_ЗаказКлиента"
GLOVES = "Велоперчатки Author Comfort"
BIKE = "Велосипед городской Forward Dortmund 28 2.0"


def at(d: int, h: int = 12, m: int = 0) -> datetime:
    return datetime(2026, 3, d, h, m, tzinfo=MSK)


def instant_retries(w: World, attempts: int = 5) -> None:
    """The client's retry policy without sleeping (the policy itself is unchanged)."""
    client = w.cycle.gateway.client
    client.retry_policy = RetryPolicy(max_attempts=attempts, base_s=0.0, cap_s=0.0, deadline_s=None)
    client._sleep = lambda _s: None


def good_orders(w: World, n: int = 2, *, day: int = 2, closed: bool = True) -> list[str]:
    """``n`` ordinary orders of one customer each (closed by default: they earn points)."""
    keys = []
    for i in range(n):
        partner = w.op.partner(f"Хороший Клиент {day}-{i}", phone=f"+7916555{day:02d}{i:02d}")
        keys.append(
            w.op.order(
                partner,
                [(BIKE, 1, 20000)],
                date=at(day, 9, i).replace(tzinfo=None),
                status="Закрыт" if closed else "КОбеспечению",
            )
        )
    return keys


def earned(w: World, order: str) -> Decimal:
    """Points the ledger accrued for ``order`` (net of reversals)."""
    with w.cycle.engine.store.engine.connect() as conn:
        value = conn.execute(
            select(func.coalesce(func.sum(t.entries.c.points), 0)).where(
                t.entries.c.order_id == order, t.entries.c.kind.in_(("accrue", "clawback"))
            )
        ).scalar()
    return Decimal(value)


def entries(w: World, order: str) -> list[tuple[str, Decimal]]:
    with w.cycle.engine.store.engine.connect() as conn:
        rows = conn.execute(
            select(t.entries.c.kind, t.entries.c.points, t.entries.c.money)
            .where(t.entries.c.order_id == order)
            .order_by(t.entries.c.id)
        )
        return [(r.kind, Decimal(r.points) if r.points else Decimal(r.money)) for r in rows]


def quarantined(w: World) -> dict[str, dict[str, Any]]:
    with w.cycle.engine.store.engine.connect() as conn:
        return {q["doc_id"]: q for q in tracking.quarantined(conn)}


def outbox_rows(w: World, channel: str = "onec") -> list[Any]:
    with w.cycle.engine.store.engine.connect() as conn:
        return list(conn.execute(select(t.outbox).where(t.outbox.c.channel == channel)))


def number(w: World, order: str) -> str:
    row = w.store.get(ORDERS, order)
    assert row is not None
    return str(row["Number"])
