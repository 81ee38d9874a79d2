"""A sender's bookkeeping (what it returns) commits in the very transaction that marks its message
sent: both or neither (the 1C write-back's own DataVersions ride along with ``mark_sent``)."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import Connection, Engine

from bridge.errors import TransientError
from bridge.service.delivery import Bookkeeping, DeliveryStats, deliver_channel
from bridge.store import outbox, tracking
from tests.site.site_kit import T0


def _pending(engine: Engine, n: int) -> list[int]:
    ids = []
    with engine.begin() as conn:
        for i in range(n):
            mid = outbox.enqueue(
                conn, channel="onec", kind="order", customer_id=f"c{i}", target=f"o{i}", payload={}, now=T0
            )
            assert mid is not None
            ids.append(mid)
    return ids


def _statuses(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [m.status for m in outbox.listing(conn, (outbox.PENDING, outbox.SENT))]


def _deliver(engine: Engine, send: object) -> DeliveryStats:
    return deliver_channel("onec", engine.begin, send, T0, max_age_hours=1, rng=random.Random(1))  # type: ignore[arg-type]


def test_bookkeeping_commits_with_mark_sent(engine: Engine) -> None:
    _pending(engine, 2)

    def send(msg: outbox.OutboxMessage) -> Bookkeeping | None:
        if msg.target == "o1":
            return None  # nothing to remember: mark_sent alone

        def remember(conn: Connection) -> None:
            tracking.set_cursor(conn, f"seen:{msg.target}", "yes", T0)

        return remember

    assert _deliver(engine, send) == DeliveryStats(sent=2, requests=2)
    assert _statuses(engine) == [outbox.SENT, outbox.SENT]
    with engine.connect() as conn:
        assert tracking.get_cursor(conn, "seen:o0") == "yes"
        assert tracking.get_cursor(conn, "seen:o1") is None


def test_failing_bookkeeping_leaves_the_message_pending(engine: Engine) -> None:
    _pending(engine, 1)

    def send(msg: outbox.OutboxMessage) -> Bookkeeping:
        def remember(conn: Connection) -> None:
            tracking.set_cursor(conn, "seen", "yes", T0)
            raise RuntimeError("database went away")

        return remember

    with pytest.raises(RuntimeError, match="went away"):
        _deliver(engine, send)
    assert _statuses(engine) == [outbox.PENDING]  # sent again next time, nothing half-recorded
    with engine.connect() as conn:
        assert tracking.get_cursor(conn, "seen") is None


def test_a_failed_send_has_no_bookkeeping_to_run(engine: Engine) -> None:
    _pending(engine, 1)

    def send(msg: outbox.OutboxMessage) -> Bookkeeping:
        raise TransientError("1C is busy")

    assert _deliver(engine, send).retried == 1
    assert _statuses(engine) == [outbox.PENDING]
