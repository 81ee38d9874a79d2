"""``outbox.enqueue_many`` leaves the very rows one ``enqueue`` after another leaves (SQLite + PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from bridge.store import outbox
from bridge.store import schema as t
from tests.domain.factories import at

NOW = at(2026, 3, 1)


def _existing(conn: Any) -> None:
    """What earlier units of work left: pending write-backs of two customers, one sent, a webhook."""
    for customer, kind, target, status in (
        ("a", "order", "o1", outbox.PENDING),
        ("a", "partner", "a", outbox.PENDING),
        ("b", "order", "o1", outbox.PENDING),  # the order belonged to b before
        ("b", "discount", "o2", outbox.PENDING),
        ("a", "order", "o3", outbox.PENDING),
        ("a", "order", "o2", outbox.SENT),
    ):
        mid = outbox.enqueue(
            conn, channel="onec", kind=kind, customer_id=customer, target=target, payload={}, now=NOW
        )
        if status == outbox.SENT:
            assert mid is not None
            outbox.mark_sent(conn, mid, NOW)
    outbox.enqueue(
        conn, channel="webhook", kind="customer.updated", customer_id="a", target="a", payload={}, now=NOW
    )


BATCH = [
    outbox.NewMessage("onec", "order", "a", {"n": 1}, target="o1", supersede=True),
    outbox.NewMessage("onec", "discount", "a", {"n": 2}, target="o2", supersede=True),
    outbox.NewMessage("onec", "order", "a", {"n": 3}, target="o4"),  # supersedes nothing
    outbox.NewMessage("onec", "order", "a", {"n": 4}, target="o4", supersede=True),  # supersedes n=3
    outbox.NewMessage("onec", "partner", "a", {"n": 5}, target="a", supersede=True),
    outbox.NewMessage("webhook", "customer.updated", "a", {"n": 6}, target="a", sequence=7),
    outbox.NewMessage("onec", "order", "a", {"n": 7}),  # no target: nothing to supersede
]


def _state(conn: Any) -> list[tuple[Any, ...]]:
    o = t.outbox.c
    query = select(
        o.channel, o.kind, o.customer_id, o.target, o.sequence, o.payload, o.status, o.attempts
    ).order_by(o.id)  # ids themselves differ on PostgreSQL (a rolled-back sequence is not reused)
    # and the stored values as the database holds them (SQLite: the very text of the JSON and times)
    raw = text(
        "SELECT payload, created_at, next_attempt_at, sent_at, last_error, dedup_key, attempts "
        "FROM outbox ORDER BY id"
    )
    return [(*a, *b) for a, b in zip(conn.execute(query), conn.execute(raw), strict=True)]


@pytest.mark.parametrize("batch", [BATCH, BATCH[:1], []], ids=["mixed", "one", "none"])
def test_enqueue_many_equals_one_enqueue_after_another(
    db_engine: Engine, batch: list[outbox.NewMessage]
) -> None:
    with db_engine.begin() as conn:
        _existing(conn)
        outbox.enqueue_many(conn, batch, NOW)
        together = _state(conn)
        conn.rollback()
    with db_engine.begin() as conn:
        _existing(conn)
        for m in batch:
            outbox.enqueue(
                conn,
                channel=m.channel,
                kind=m.kind,
                customer_id=m.customer_id,
                payload=m.payload,
                now=NOW,
                target=m.target,
                sequence=m.sequence,
                supersede=m.supersede,
            )
        one_by_one = _state(conn)
    assert together == one_by_one
    if batch is BATCH:
        assert [r[6] for r in together] == [
            *("superseded", "superseded", "superseded", "superseded", "pending", "sent", "pending"),
            *("pending", "pending", "superseded", "pending", "pending", "pending", "pending"),
        ]


def test_enqueue_many_refuses_an_unknown_channel(db_engine: Engine) -> None:
    with db_engine.begin() as conn, pytest.raises(ValueError, match="unknown outbox channel"):
        outbox.enqueue_many(conn, [outbox.NewMessage("fax", "x", "a", {})], NOW)
