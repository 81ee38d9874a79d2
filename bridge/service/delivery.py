"""Delivering the outbox: one generic loop for every channel (1C write-backs, webhooks, SMS, e-mail).

Each customer's oldest pending message of a channel only is due (``outbox.due``), so one customer's
messages go out in order and a customer waiting for a retry holds up nobody else. Each outcome
commits in its own short transaction (with the sender's own bookkeeping, if it returns any); no
transaction is open during a network call.
"""

from __future__ import annotations

import contextvars
import random
import threading
from collections.abc import Callable, Collection
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
    upto: int | None = None,
    holding: Collection[str] = (),
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
        upto, holding: only messages up to this id, and none of a customer whose next message is
            of a held kind (see ``outbox.due``).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    jitter = rng if rng is not None else random.Random()
    max_age = timedelta(hours=max_age_hours)
    stats = DeliveryStats()
    tried: set[int] = set()
    while True:
        with conn_factory() as conn:
            due = outbox.due(conn, channel, now, limit, upto=upto, holding=holding)
            batch = [m for m in due if m.id not in tried]
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


class BackgroundDelivery:
    """Delivers one channel from a thread while the cycle is still processing documents.

    A backlog's write-backs need not wait for its last document: this thread sends those already
    committed while the cycle goes on with the next documents, so the bridge's own work overlaps
    the waits for 1C's answers. Only what is durable leaves: each pass reads the newest message id,
    makes the state durable (``durable``: the SQLite log's ``fsync``), then delivers messages up to
    that id with :func:`deliver_channel`, one customer's messages still in order. Messages of a
    ``holding`` kind wait for the cycle's own pass at the end, and so does everything of a customer
    queued behind one (partner write-backs: a later document of the same customer supersedes an
    undelivered one, so sending it early would only cost 1C a write that is overwritten at once).
    A pass starts at most every ``interval_s`` seconds, and only when something new was committed.
    """

    def __init__(
        self,
        channel: str,
        conn_factory: ConnFactory,
        send: Callable[[outbox.OutboxMessage], Bookkeeping | None],
        now: datetime,
        *,
        max_age_hours: float,
        durable: Callable[[], None],
        holding: Collection[str] = (),
        stop: Callable[[], bool] | None = None,
        interval_s: float = 0.2,
    ) -> None:
        self.channel = channel
        self.conn_factory = conn_factory
        self.send = send
        self.now = now
        self.max_age_hours = max_age_hours
        self.durable = durable
        self.holding = tuple(holding)
        self.stop = stop or (lambda: False)
        self.interval_s = interval_s
        self.stats = DeliveryStats()
        self._done = threading.Event()
        self._error: BaseException | None = None
        context = contextvars.copy_context()  # the log lines keep the cycle's bound fields
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name=f"deliver-{channel}", daemon=True
        )

    def start(self) -> BackgroundDelivery:
        self._thread.start()
        return self

    def finish(self) -> DeliveryStats:
        """Stop after the message being sent, wait for the thread; raise what ended it, if anything."""
        self._done.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.stats

    def abandon(self) -> None:
        """:meth:`finish` when the cycle is already failing: the thread's own error is only logged."""
        try:
            self.finish()
        except BaseException as exc:  # the cycle's error is the one to report
            log.warning("outbox.background_failed", channel=self.channel, error=_describe(exc))

    def _stopping(self) -> bool:
        return self._done.is_set() or self.stop()

    def _run(self) -> None:
        seen = 0
        try:
            while not self._done.wait(self.interval_s):
                with self.conn_factory() as conn:
                    upto = outbox.last_id(conn)
                if upto == seen:
                    continue
                self.durable()  # nothing leaves before the ledger behind it is on disk
                self.stats += deliver_channel(
                    self.channel,
                    self.conn_factory,
                    self.send,
                    self.now,
                    max_age_hours=self.max_age_hours,
                    stop=self._stopping,
                    upto=upto,
                    holding=self.holding,
                )
                seen = upto
        except BaseException as exc:  # handed to the cycle's thread by finish()
            self._error = exc
