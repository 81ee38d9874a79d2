"""Delivering the outbox: one generic loop for every channel (1C write-backs, webhooks, SMS, e-mail).

Each customer's oldest pending message of a channel only is due (``outbox.due``), so one customer's
messages go out in order and a customer waiting for a retry holds up nobody else. Each outcome
commits in its own short transaction (with the sender's own bookkeeping, if it returns any); no
transaction is open during a network call.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection

from bridge import crashpoints
from bridge.errors import BridgeError, TransientError
from bridge.net import backoff_delay
from bridge.site.webhook import WebhookSender
from bridge.store import outbox

log = structlog.get_logger(__name__)

ConnFactory = Callable[[], AbstractContextManager[Connection]]
# What a sender may return: state to write in the very transaction that marks its message sent
# (the 1C write-back's own DataVersions), so a delivery costs one commit, not two.
Bookkeeping = Callable[[Connection], None]


@dataclass(slots=True)
class DeliveryStats:
    """What one delivery pass did (``requests`` counts every attempt made)."""

    sent: int = 0
    retried: int = 0
    dead: int = 0
    requests: int = 0

    def __add__(self, other: DeliveryStats) -> DeliveryStats:
        return DeliveryStats(
            self.sent + other.sent,
            self.retried + other.retried,
            self.dead + other.dead,
            self.requests + other.requests,
        )


def retry_at(
    msg: outbox.OutboxMessage,
    now: datetime,
    error: TransientError,
    *,
    max_age: timedelta,
    rng: random.Random,
    base_s: float,
    cap_s: float,
) -> datetime | None:
    """When to try ``msg`` again after ``error`` at ``now``, or ``None`` when it is dead.

    The wait is ``max(backoff_delay(attempt), Retry-After)`` and at least one second (full jitter
    can draw 0, and a message due again at the same ``now`` would loop). A message whose age
    reached ``max_age`` is dead; otherwise the next attempt never lands past that deadline, so the
    last try happens right at it instead of up to ``cap_s`` later.
    """
    deadline = msg.created_at + max_age
    if now >= deadline:
        return None
    delay = backoff_delay(msg.attempts + 1, base_s, cap_s, rng)
    if error.retry_after is not None:
        delay = max(delay, float(error.retry_after))
    return min(now + timedelta(seconds=max(delay, 1.0)), deadline)


def _describe(exc: BaseException) -> str:
    """The ``last_error`` of a message: the error, its status and an excerpt of the peer's answer."""
    fields = exc.fields if isinstance(exc, BridgeError) else {}
    text = f"{type(exc).__name__}: {exc}"
    status, body = fields.get("status"), " ".join(str(fields.get("body") or "").split())
    if status is not None and str(status) not in text:
        text += f" (status {status})"
    return f"{text}: {body[:300]}" if body else text


def deliver_channel(
    channel: str,
    conn_factory: ConnFactory,
    send: Callable[[outbox.OutboxMessage], Bookkeeping | None],
    now: datetime,
    *,
    max_age_hours: float,
    rng: random.Random | None = None,
    base_s: float = 30.0,
    cap_s: float = 3600.0,
    limit: int = 100,
    stop: Callable[[], bool] | None = None,
) -> DeliveryStats:
    """Deliver every message of ``channel`` due at ``now``; return what happened.

    Each customer's oldest pending message only is due (``outbox.due``), so messages of one
    customer go out in order and a customer waiting for a retry holds up nobody else. Each outcome
    commits in its own short transaction (no transaction is open during a network call):
    ``mark_sent`` (after what ``send`` returned, if anything, ran in the same transaction); on
    :class:`TransientError` ``mark_retry`` at :func:`retry_at` or ``mark_dead``
    once the message is ``max_age_hours`` old; on :class:`FatalHTTPError` (or any other
    :class:`BridgeError`) ``mark_dead`` at once — a dead message no longer blocks its customer.
    Runs until nothing is due at ``now`` or ``stop()`` is true (checked before every send).

    Args:
        channel: ``webhook`` | ``sms`` | ``email`` (``onec`` has its own write-back loop).
        conn_factory: returns a context manager yielding a connection in a transaction
            (``engine.begin``).
        send: delivers one message or raises; the message's ``message_id`` is its idempotency key.
            It may return a :data:`Bookkeeping` callable, run in the transaction that marks the
            message sent.
        now: the cycle's clock (aware), deciding what is due and when a retry is due.
        max_age_hours: a message failing this long after it was created is dead.
        rng: jitter source (``random.Random(seed)`` in tests).
        base_s: backoff base; attempt *n* waits up to ``base_s * 2**(n-1)`` seconds.
        cap_s: the longest computed wait (``Retry-After`` may ask for more).
        limit: messages fetched per batch.
        stop: polled before every send; true ends the pass early (shutdown).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    jitter = rng if rng is not None else random.Random()
    max_age = timedelta(hours=max_age_hours)
    stats = DeliveryStats()
    tried: set[int] = set()
    while True:
        with conn_factory() as conn:
            batch = [m for m in outbox.due(conn, channel, now, limit) if m.id not in tried]
        if not batch:  # nothing due, or only what this pass already tried (never loop on it)
            return stats
        for msg in batch:
            if stop is not None and stop():
                return stats
            tried.add(msg.id)
            bound = log.bind(channel=channel, message_id=msg.message_id, customer=msg.customer_id)
            stats.requests += 1
            try:
                bookkeeping = send(msg)
            except TransientError as exc:
                next_at = retry_at(msg, now, exc, max_age=max_age, rng=jitter, base_s=base_s, cap_s=cap_s)
                with conn_factory() as conn:
                    if next_at is None:
                        outbox.mark_dead(conn, msg.id, f"gave up after {max_age_hours:g} h: {_describe(exc)}")
                    else:
                        outbox.mark_retry(conn, msg.id, next_at, _describe(exc))
                if next_at is None:
                    stats.dead += 1
                    bound.warning("outbox.dead", attempts=msg.attempts + 1, error=_describe(exc))
                else:
                    stats.retried += 1
                    bound.info("outbox.retry", attempts=msg.attempts + 1, next_at=next_at.isoformat())
            except BridgeError as exc:
                with conn_factory() as conn:
                    outbox.mark_dead(conn, msg.id, _describe(exc))
                stats.dead += 1
                bound.warning("outbox.dead", attempts=msg.attempts + 1, error=_describe(exc))
            else:
                if channel == "webhook":
                    crashpoints.point("webhook_sent")
                with conn_factory() as conn:
                    if bookkeeping is not None:
                        bookkeeping(conn)
                    outbox.mark_sent(conn, msg.id, now)
                crashpoints.point("delivery_marked")
                stats.sent += 1


def deliver_webhooks(
    conn_factory: ConnFactory,
    sender: WebhookSender,
    now: datetime,
    *,
    max_retry_hours: float = 72,
    rng: random.Random | None = None,
    base_s: float = 30.0,
    cap_s: float = 3600.0,
    limit: int = 100,
    stop: Callable[[], bool] | None = None,
) -> DeliveryStats:
    """Deliver the due ``webhook`` messages with ``sender`` (see :func:`deliver_channel`)."""
    return deliver_channel(
        "webhook",
        conn_factory,
        sender.send,
        now,
        max_age_hours=max_retry_hours,
        rng=rng,
        base_s=base_s,
        cap_s=cap_s,
        limit=limit,
        stop=stop,
    )
