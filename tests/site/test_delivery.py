"""The outbox delivery loop over real HTTP and a real SQLite state: order, retries, Retry-After, dead.

Simulated time drives ``now`` (the cycle's clock, as ``--now`` does); the receiver checks the
``webhook-timestamp`` against the real clock, as a real site does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from sqlalchemy import Connection, Engine
from structlog.testing import capture_logs

from bridge.errors import FatalHTTPError, TransientError
from bridge.service.delivery import DeliveryStats, deliver_channel, deliver_webhooks, retry_at
from bridge.simulator.site import SiteReceiver
from bridge.site.webhook import WebhookSender
from bridge.store import outbox
from tests.site.site_kit import SECRET, T0, enqueue_snapshot, row, rows


def deliver(engine: Engine, site: SiteReceiver, now: datetime, **kwargs: object) -> DeliveryStats:
    sender = WebhookSender(site.url, SECRET, timeout_s=5)
    return deliver_webhooks(engine.begin, sender, now, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


def effective_sequences(site: SiteReceiver, customer_id: str) -> list[int | None]:
    return [d.sequence for d in site.effective if d.customer_id == customer_id]


def test_everything_due_is_delivered_in_per_customer_order(engine: Engine, site: SiteReceiver) -> None:
    for minute in range(3):
        for customer in ("c1", "c2"):
            enqueue_snapshot(engine, customer, T0 + timedelta(minutes=minute))
    stats = deliver(engine, site, T0 + timedelta(minutes=5))
    assert stats == DeliveryStats(sent=6, retried=0, dead=0, requests=6)
    assert effective_sequences(site, "c1") == [1, 2, 3]
    assert effective_sequences(site, "c2") == [1, 2, 3]
    assert all(m.status == outbox.SENT and m.attempts == 1 for m in rows(engine))
    assert {m.message_id for m in rows(engine)} == {d.webhook_id for d in site.effective}
    assert all(d.verified for d in site.deliveries)
    assert deliver(engine, site, T0 + timedelta(minutes=6)) == DeliveryStats()


def test_messages_not_yet_created_at_now_wait(engine: Engine, site: SiteReceiver) -> None:
    enqueue_snapshot(engine, "c1", T0 + timedelta(hours=1))
    assert deliver(engine, site, T0).requests == 0


def test_5xx_is_retried_later_with_the_same_webhook_id(engine: Engine, site: SiteReceiver) -> None:
    first = enqueue_snapshot(engine, "c1", T0)
    second = enqueue_snapshot(engine, "c1", T0)
    site.status(502)
    with capture_logs() as logs:
        stats = deliver(engine, site, T0)
    assert stats == DeliveryStats(retried=1, requests=1)  # the second waits behind the first
    waiting = row(engine, first.id)
    assert waiting.status == outbox.PENDING and waiting.attempts == 1
    assert "502" in waiting.last_error
    [logged] = [e for e in logs if e["event"] == "outbox.retry"]  # the log says why, not only when
    assert logged["error"] == waiting.last_error and logged["attempts"] == 1
    assert T0 < waiting.next_attempt_at <= T0 + timedelta(seconds=30)
    assert deliver(engine, site, waiting.next_attempt_at - timedelta(milliseconds=1)).requests == 0
    stats = deliver(engine, site, waiting.next_attempt_at)
    assert stats.sent == 2
    assert [d.webhook_id for d in site.deliveries] == [first.message_id, first.message_id, second.message_id]
    assert [d.attempt for d in site.deliveries] == [1, 2, 1]
    assert row(engine, first.id).attempts == 2


def test_retry_after_is_honoured(engine: Engine, site: SiteReceiver) -> None:
    msg = enqueue_snapshot(engine, "c1", T0)
    site.status(429)
    site.retry_after(600)
    assert deliver(engine, site, T0).retried == 1
    assert row(engine, msg.id).next_attempt_at >= T0 + timedelta(seconds=600)
    site.reset()
    assert deliver(engine, site, T0 + timedelta(seconds=599)).requests == 0
    assert deliver(engine, site, T0 + timedelta(seconds=600)).sent == 1


def test_4xx_is_dead_at_once_and_does_not_block_the_customer(engine: Engine, site: SiteReceiver) -> None:
    rejected = enqueue_snapshot(engine, "c1", T0)
    later = enqueue_snapshot(engine, "c1", T0)
    other = enqueue_snapshot(engine, "c2", T0)
    site.status(422)
    stats = deliver(engine, site, T0)
    assert stats == DeliveryStats(sent=2, dead=1, requests=3)
    dead = row(engine, rejected.id)
    assert dead.status == outbox.DEAD and "422" in dead.last_error and dead.attempts == 1
    assert row(engine, later.id).status == outbox.SENT
    assert row(engine, other.id).status == outbox.SENT
    assert effective_sequences(site, "c1") == [2]
    # `outbox retry` puts it back with the same id; the site keeps the newer snapshot it already has
    with engine.begin() as conn:
        assert outbox.retry(conn, T0 + timedelta(hours=1), rejected.message_id) == 1
    assert deliver(engine, site, T0 + timedelta(hours=1)).sent == 1
    assert site.deliveries[-1].webhook_id == rejected.message_id
    assert site.latest("c1")["sequence"] == 2  # type: ignore[index]
    assert [d.sequence for d in site.dropped] == [1]


def test_a_customer_waiting_for_a_retry_holds_up_nobody_else(engine: Engine, site: SiteReceiver) -> None:
    head = enqueue_snapshot(engine, "c1", T0)
    behind = enqueue_snapshot(engine, "c1", T0)
    others = [enqueue_snapshot(engine, f"c{i}", T0) for i in range(2, 5)]
    site.status(503)
    stats = deliver(engine, site, T0)
    assert stats == DeliveryStats(sent=3, retried=1, requests=4)
    assert row(engine, head.id).status == outbox.PENDING
    assert row(engine, behind.id).status == outbox.PENDING and row(engine, behind.id).attempts == 0
    assert all(row(engine, m.id).status == outbox.SENT for m in others)


def test_a_site_nobody_answers_for_is_unreachable_an_error_status_is_an_answer(
    engine: Engine, site: SiteReceiver
) -> None:
    """What ``once`` exits 69 on: every attempt of the pass got no answer at all (refused here).
    A 503 is the site's answer; a pass with nothing due reached nobody and failed nobody."""
    for customer in ("c1", "c2"):
        enqueue_snapshot(engine, customer, T0)
    site.status(503)
    answered = deliver(engine, site, T0)
    assert answered == DeliveryStats(sent=1, retried=1, requests=2) and not answered.unreachable
    assert not deliver(engine, site, T0).unreachable  # nothing due: not unreachable either
    port = site.port
    site.stop()
    sender = WebhookSender(f"http://127.0.0.1:{port}/loyalty/webhook", SECRET, timeout_s=5)
    refused = deliver_webhooks(engine.begin, sender, T0 + timedelta(hours=1), rng=random.Random(7))
    assert refused == DeliveryStats(retried=1, requests=1, unanswered=1) and refused.unreachable
    assert f"127.0.0.1:{port}" in refused.unanswered_error and "refused" in refused.unanswered_error
    assert (answered + refused).unanswered_error == refused.unanswered_error


def test_site_down_three_days_then_up(engine: Engine, site: SiteReceiver) -> None:
    """Down 72.5 h: the oldest messages die at 72 h; the rest arrive in order, same ids throughout."""
    clock = {"now": T0}
    up_at = T0 + timedelta(hours=72, minutes=30)
    site.down(until=lambda: clock["now"] >= up_at)
    plan = {  # creation time -> customer
        T0: "old",
        T0 + timedelta(minutes=10): "old",
        T0 + timedelta(hours=1): "mid",
        T0 + timedelta(hours=24): "mid",
        T0 + timedelta(hours=48): "mid",
        T0 + timedelta(hours=71): "late",
        T0 + timedelta(hours=80): "late",
    }
    created: dict[str, list[outbox.OutboxMessage]] = {}
    old_attempt_times: list[datetime] = []
    sender = WebhookSender(site.url, SECRET, timeout_s=5)
    rng = random.Random(3)
    total = DeliveryStats()
    step = timedelta(minutes=5)
    while clock["now"] <= T0 + timedelta(hours=96):
        now = clock["now"]
        if now in plan:
            created.setdefault(plan[now], []).append(enqueue_snapshot(engine, plan[now], now))
        before = site.attempts(created["old"][0].message_id)
        total = total + deliver_webhooks(engine.begin, sender, now, rng=rng)
        if site.attempts(created["old"][0].message_id) > before:
            old_attempt_times.append(now)
        clock["now"] = now + step

    by_id = {m.message_id: m for m in rows(engine)}
    # older than 72 h while the site was down: dead, kept, never acted on by the site
    for msg in created["old"]:
        final = by_id[msg.message_id]
        assert final.status == outbox.DEAD
        assert "gave up after 72 h" in final.last_error and "503" in final.last_error
        assert all(d.status == 503 for d in site.deliveries if d.webhook_id == msg.message_id)
    assert old_attempt_times[-1] == T0 + timedelta(hours=72)  # the last try lands on the deadline
    gaps = [b - a for a, b in pairwise(old_attempt_times)]
    assert max(gaps) <= timedelta(seconds=3600) + step  # capped backoff: still trying every hour
    assert 20 < len(old_attempt_times) < 1000
    # everything else: delivered, in per-customer order, one webhook-id per message across retries
    for customer in ("mid", "late"):
        assert effective_sequences(site, customer) == [1, 2, 3][: len(created[customer])]
        for msg in created[customer]:
            final = by_id[msg.message_id]
            assert final.status == outbox.SENT
            calls = [d for d in site.deliveries if d.webhook_id == msg.message_id]
            assert len(calls) == final.attempts
            assert [d.attempt for d in calls] == list(range(1, len(calls) + 1))
            assert calls[-1].ok and all(not d.ok for d in calls[:-1])
            assert len({d.body for d in calls}) == 1
    assert row(engine, created["mid"][0].id).attempts > 50  # retried through the whole outage
    assert site.latest("mid")["sequence"] == 3  # type: ignore[index]
    assert site.latest("late")["sequence"] == 2  # type: ignore[index]
    assert site.dropped == []
    assert all(d.verified for d in site.deliveries)
    assert total.sent == 5 and total.dead == 2
    assert total.requests == len(site.deliveries) == total.sent + total.dead + total.retried


def test_retry_at_backoff_retry_after_and_deadline() -> None:
    msg = outbox.OutboxMessage(1, "m", "webhook", "customer.updated", "c1", None, 1, {}, "pending", 9, T0, T0)
    max_age = timedelta(hours=72)

    class Zero(random.Random):
        def random(self) -> float:
            return 0.0

    class One(random.Random):
        def random(self) -> float:
            return 0.999999

    error = TransientError("HTTP 503")
    args = {"max_age": max_age, "base_s": 30.0, "cap_s": 3600.0}
    assert retry_at(msg, T0, error, rng=Zero(), **args) == T0 + timedelta(seconds=1)  # never 0
    assert retry_at(msg, T0, error, rng=One(), **args) <= T0 + timedelta(seconds=3600)  # type: ignore[operator]
    slow = TransientError("HTTP 429", retry_after=7200)
    assert retry_at(msg, T0, slow, rng=Zero(), **args) == T0 + timedelta(seconds=7200)
    near = T0 + timedelta(hours=71, minutes=59)
    assert retry_at(msg, near, slow, rng=Zero(), **args) == T0 + max_age
    assert retry_at(msg, T0 + max_age, error, rng=Zero(), **args) is None


def test_stop_ends_the_pass_before_the_next_send(engine: Engine, site: SiteReceiver) -> None:
    for i in range(5):
        enqueue_snapshot(engine, f"c{i}", T0)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    stats = deliver(engine, site, T0, stop=stop)
    assert stats.sent == 2 and len(site.deliveries) == 2
    assert sum(m.status == outbox.PENDING for m in rows(engine)) == 3


def test_deliver_channel_is_generic_and_holds_no_transaction_during_a_send(engine: Engine) -> None:
    """What the SMS / e-mail channels get: any ``send`` callable; no DB transaction spans the network."""
    with engine.begin() as conn:
        for customer in ("c1", "c2"):
            outbox.enqueue(
                conn, channel="sms", kind="points_accrued", customer_id=customer, payload={"t": 1}, now=T0
            )
    open_transactions = {"n": 0}

    @contextmanager
    def conn_factory() -> Iterator[Connection]:
        open_transactions["n"] += 1
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            open_transactions["n"] -= 1

    seen: list[str] = []

    def send(msg: outbox.OutboxMessage) -> None:
        assert open_transactions["n"] == 0
        seen.append(msg.customer_id)
        if msg.customer_id == "c2":
            raise FatalHTTPError("HTTP 400 from gateway", status=400)

    stats = deliver_channel("sms", conn_factory, send, T0, max_age_hours=24, rng=random.Random(1))
    assert stats == DeliveryStats(sent=1, dead=1, requests=2)
    assert sorted(seen) == ["c1", "c2"]
    assert deliver_webhooks(conn_factory, WebhookSender("http://127.0.0.1:9/x", SECRET), T0).requests == 0


def test_a_bug_in_send_propagates_and_leaves_the_message_pending(engine: Engine) -> None:
    msg = enqueue_snapshot(engine, "c1", T0)

    def send(_: outbox.OutboxMessage) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        deliver_channel("webhook", engine.begin, send, T0, max_age_hours=72)
    assert row(engine, msg.id).status == outbox.PENDING and row(engine, msg.id).attempts == 0


def test_now_must_be_aware(engine: Engine) -> None:
    with pytest.raises(ValueError, match="aware"):
        deliver_channel("webhook", engine.begin, lambda m: None, datetime(2026, 3, 1), max_age_hours=72)


def test_last_error_names_the_status_and_the_site_answer(engine: Engine, site: SiteReceiver) -> None:
    msg = enqueue_snapshot(engine, "c1", T0)
    site.status(410)
    deliver(engine, site, T0)
    dead = row(engine, msg.id)
    assert dead.status == outbox.DEAD
    assert "FatalHTTPError: HTTP 410" in dead.last_error and '{"error": 410}' in dead.last_error
