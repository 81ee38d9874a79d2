"""Delivering the outbox: one generic loop for every channel (1C write-backs, webhooks, SMS, e-mail).

Each customer's oldest pending message of a channel only is due (``outbox.due``), so one customer's
messages go out in order and a customer waiting for a retry holds up nobody else. Each outcome
commits in its own short transaction (with the sender's own bookkeeping, if it returns any); no
transaction ever waits on a network call. A channel may send several messages at once
(``workers``: the 1C write-backs with ``onec.write_workers``); their outcomes are still written by
the calling thread, one transaction each.
"""

from __future__ import annotations

import contextvars
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection

from bridge import crashpoints
from bridge.errors import BridgeError, TransientError
from bridge.net import NoAnswerError, backoff_delay
from bridge.site.webhook import WebhookSender
from bridge.store import outbox

log = structlog.get_logger(__name__)

ConnFactory = Callable[[], AbstractContextManager[Connection]]
# What a sender may return: state to write in the very transaction that marks its message sent
# (the 1C write-back's own DataVersions), so a delivery costs one commit, not two.
Bookkeeping = Callable[[Connection], None]


@dataclass(slots=True)
class DeliveryStats:
    """What one delivery pass did (``requests`` counts every attempt made).

    ``unanswered`` counts the attempts that got no answer at all from the peer
    (:class:`~bridge.net.NoAnswerError`: refused, reset, timed out, name not resolved; an error
    status is an answer) and ``unanswered_error`` describes the last of them.
    """

    sent: int = 0
    retried: int = 0
    dead: int = 0
    requests: int = 0
    unanswered: int = 0
    unanswered_error: str = field(default="", compare=False)

    def __add__(self, other: DeliveryStats) -> DeliveryStats:
        return DeliveryStats(
            self.sent + other.sent,
            self.retried + other.retried,
            self.dead + other.dead,
            self.requests + other.requests,
            self.unanswered + other.unanswered,
            other.unanswered_error or self.unanswered_error,
        )

    @property
    def unreachable(self) -> bool:
        """The peer could not be reached at all in this pass: it sent something, and not one
        attempt got an answer (an error status is an answer). False when nothing was due."""
        return self.requests > 0 and self.unanswered == self.requests


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
    workers: int = 1,
    prepare: Callable[[list[outbox.OutboxMessage]], None] | None = None,
) -> DeliveryStats:
    """Deliver every message of ``channel`` due at ``now``; return what happened.

    Each customer's oldest pending message only is due (``outbox.due``), so messages of one
    customer go out in order and a customer waiting for a retry holds up nobody else. Each outcome
    commits in its own short transaction (no transaction ever waits on a network call):
    ``mark_sent`` (after what ``send`` returned, if anything, ran in the same transaction); on
    :class:`TransientError` ``mark_retry`` at :func:`retry_at` or ``mark_dead``
    once the message is ``max_age_hours`` old; on :class:`FatalHTTPError` (or any other
    :class:`BridgeError`) ``mark_dead`` at once — a dead message no longer blocks its customer.
    Runs until nothing is due at ``now`` or ``stop()`` is true (checked before every send).

    With ``workers`` > 1 the messages of one batch are sent by that many threads at once. A batch
    holds one message per customer, so no two messages in flight share a customer (or a 1C
    object). Only the sending runs in the threads; every outcome is written by the calling thread,
    in the order the sends finish, as soon as each finishes.

    Args:
        channel: ``webhook`` | ``sms`` | ``email`` | ``onec`` (the 1C write-backs).
        conn_factory: returns a context manager yielding a connection in a transaction
            (``engine.begin``).
        send: delivers one message or raises; the message's ``message_id`` is its idempotency key.
            It may return a :data:`Bookkeeping` callable, run in the transaction that marks the
            message sent. An exception it raises may carry one as its ``bookkeeping`` attribute
            (state that a failed delivery still produced): it is run in the transaction that
            records the failure.
        now: the cycle's clock (aware), deciding what is due and when a retry is due.
        max_age_hours: a message failing this long after it was created is dead.
        rng: jitter source (``random.Random(seed)`` in tests).
        base_s: backoff base; attempt *n* waits up to ``base_s * 2**(n-1)`` seconds.
        cap_s: the longest computed wait (``Retry-After`` may ask for more).
        limit: messages fetched per batch.
        stop: polled before every send; true ends the pass early (shutdown).
        workers: how many messages are sent at once (``send`` must then be safe to call from
            several threads).
        prepare: called with each batch before any of it is sent (the 1C write-backs look the
            batch's card numbers up together); it must not raise for a failure it can leave to
            the sends.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    outcomes = _Outcomes(
        channel, conn_factory, now, max_age_hours, rng if rng is not None else random.Random(), base_s, cap_s
    )
    tried: set[int] = set()
    pool = ThreadPoolExecutor(workers, thread_name_prefix=f"deliver-{channel}") if workers > 1 else None
    # A send takes a slot, and the slot is given back once its outcome is written: at most
    # ``workers`` messages are ever sent and not yet recorded (what a crash would send again).
    slots, halted = threading.Semaphore(workers), threading.Event()

    def task(msg: outbox.OutboxMessage) -> _Outcome | None:
        slots.acquire()
        if halted.is_set() or (stop is not None and stop()):
            return None  # not sent
        return _attempt(send, msg)

    try:
        while True:
            with conn_factory() as conn:
                batch = [m for m in outbox.due(conn, channel, now, limit) if m.id not in tried]
            if not batch:  # nothing due, or only what this pass already tried (never loop on it)
                return outcomes.stats
            tried.update(m.id for m in batch)
            if prepare is not None:
                prepare(batch)
            if pool is None or len(batch) == 1:
                for msg in batch:
                    if stop is not None and stop():
                        return outcomes.stats
                    outcomes.settle(msg, _attempt(send, msg))
                continue
            pending = {pool.submit(contextvars.copy_context().run, task, msg): msg for msg in batch}
            stopped = False
            for future in as_completed(pending):
                outcome = future.result()
                if outcome is None:
                    stopped = True  # stop() was true before this send: the others still count
                else:
                    outcomes.settle(pending[future], outcome)
                slots.release()
            if stopped:
                return outcomes.stats
    finally:
        if pool is not None:
            halted.set()  # an error above: the sends not yet begun never begin
            slots.release(workers)
            pool.shutdown(wait=True, cancel_futures=True)


# What one send came to: what it returned (the bookkeeping or None), or what it raised.
_Outcome = tuple[Bookkeeping | None, BaseException | None]


def _attempt(
    send: Callable[[outbox.OutboxMessage], Bookkeeping | None], msg: outbox.OutboxMessage
) -> _Outcome:
    try:
        return send(msg), None
    except BaseException as exc:
        return None, exc


@dataclass(slots=True)
class _Outcomes:
    """Writes each send's outcome in its own transaction and counts it (see ``deliver_channel``)."""

    channel: str
    conn_factory: ConnFactory
    now: datetime
    max_age_hours: float
    rng: random.Random
    base_s: float
    cap_s: float
    stats: DeliveryStats = field(default_factory=DeliveryStats)

    def settle(self, msg: outbox.OutboxMessage, outcome: _Outcome) -> None:
        bookkeeping, exc = outcome
        bound = log.bind(channel=self.channel, message_id=msg.message_id, customer=msg.customer_id)
        self.stats.requests += 1
        if exc is None:
            if self.channel == "webhook":
                crashpoints.point("webhook_sent")
            with self.conn_factory() as conn:
                if bookkeeping is not None:
                    bookkeeping(conn)
                outbox.mark_sent(conn, msg.id, self.now)
            crashpoints.point("delivery_marked")
            self.stats.sent += 1
            return
        kept: Bookkeeping | None = getattr(exc, "bookkeeping", None)
        if not isinstance(exc, BridgeError):
            if kept is not None:  # not marked sent: no later transaction to ride along with
                with self.conn_factory() as conn:
                    kept(conn)
            raise exc
        next_at = None
        if isinstance(exc, TransientError):
            if isinstance(exc, NoAnswerError):
                self.stats.unanswered += 1
                self.stats.unanswered_error = str(exc)
            max_age = timedelta(hours=self.max_age_hours)
            next_at = retry_at(
                msg, self.now, exc, max_age=max_age, rng=self.rng, base_s=self.base_s, cap_s=self.cap_s
            )
            if next_at is None:
                exc_text = f"gave up after {self.max_age_hours:g} h: {_describe(exc)}"
            else:
                exc_text = _describe(exc)
        else:  # FatalHTTPError or any other BridgeError: dead at once
            exc_text = _describe(exc)
        with self.conn_factory() as conn:
            if kept is not None:
                kept(conn)
            if next_at is None:
                outbox.mark_dead(conn, msg.id, exc_text)
            else:
                outbox.mark_retry(conn, msg.id, next_at, exc_text)
        if next_at is None:
            self.stats.dead += 1
            bound.warning("outbox.dead", attempts=msg.attempts + 1, error=_describe(exc))
        else:
            self.stats.retried += 1
            bound.info("outbox.retry", attempts=msg.attempts + 1, next_at=next_at.isoformat(), error=exc_text)


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
