"""The site webhook: the body of CONTRACT.md, the signed POST, and the outbox delivery loop.

Owns:
- :func:`build_body`: the ``customer.updated`` body around a snapshot from ``bridge.service.snapshot``
  (numbers as strings, ``timestamp`` in the store's zone, ``sequence`` and ``reasons`` first in ``data``);
- :class:`WebhookSender`: one signed POST per attempt (Standard Webhooks headers, the real clock in
  ``webhook-timestamp``, the outbox ``message_id`` as ``webhook-id``); the answer is classified by
  :mod:`bridge.net`, the one retry policy: 2xx delivered; 408/429/5xx/timeouts/connection errors
  :class:`~bridge.errors.TransientError` (``retry_after`` from ``Retry-After``); anything else
  :class:`~bridge.errors.FatalHTTPError`;
- :func:`deliver_channel`: the generic outbox loop any channel reuses (webhook, SMS, e-mail): due
  messages (a customer's oldest pending only, so per-customer order holds), one short transaction
  per outcome, backoff with jitter from :func:`bridge.net.backoff_delay`, ``Retry-After`` honoured,
  dead after ``max_age_hours`` or at once on a fatal answer; :func:`deliver_webhooks` wraps it.

The secret never reaches a log line, an exception or a ``repr``. Imports ``bridge.net``,
``bridge.errors`` and ``bridge.store.outbox`` only; must not import bridge.onec, bridge.notify or
bridge.service.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

import requests
import structlog
from sqlalchemy import Connection

from bridge.errors import BridgeError, ConfigError, FatalHTTPError, TransientError
from bridge.net import backoff_delay, classify_exception, classify_status, make_session, parse_retry_after
from bridge.site.signing import decode_secret, serialize, signature_header
from bridge.store import outbox

__all__ = [
    "EVENT_CUSTOMER_UPDATED",
    "REASONS",
    "DeliveryStats",
    "WebhookSender",
    "build_body",
    "deliver_channel",
    "deliver_webhooks",
    "retry_at",
]

log = structlog.get_logger(__name__)

EVENT_CUSTOMER_UPDATED = "customer.updated"

#: Why a snapshot was sent (CONTRACT.md); anything else is a bug in the caller.
REASONS = frozenset(
    {
        "points_accrued",
        "points_available",
        "points_redeemed",
        "points_released",
        "points_reversed",
        "points_expired",
        "points_expiring",
        "tier_changed",
        "level_changed",
        "level_recomputed",
        "card_created",
        "card_issued",
    }
)

ConnFactory = Callable[[], AbstractContextManager[Connection]]


def build_body(
    event_type: str = EVENT_CUSTOMER_UPDATED,
    *,
    timestamp: datetime,
    data: Mapping[str, Any],
    sequence: int,
    reasons: Iterable[str],
    tz: tzinfo | None = None,
) -> dict[str, Any]:
    """The webhook body of CONTRACT.md: ``{"type", "timestamp", "data": {"sequence", "reasons", ...}}``.

    Args:
        event_type: ``customer.updated``.
        timestamp: the cycle's clock (aware); rendered in ``tz`` when given, else in its own zone
            (pass it already in the store's zone).
        data: the snapshot from ``bridge.service.snapshot.snapshot_data`` (``customer``, ``bonus``,
            ``discount``); numbers in it must already be strings.
        sequence: the customer's snapshot number (``outbox.next_sequence``).
        reasons: why it is sent, each from :data:`REASONS`; duplicates are dropped, order kept.

    Raises:
        ValueError: a naive timestamp, an unknown reason, a bad sequence or a number that is not a
            string inside ``data`` (floats are not exact; the site parses decimals from strings).
    """
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise ValueError("the webhook timestamp must be timezone-aware (the store's zone)")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1:
        raise ValueError(f"sequence must be a positive integer, got {sequence!r}")
    listed = list(dict.fromkeys(reasons))
    unknown = [r for r in listed if r not in REASONS]
    if unknown:
        raise ValueError(f"unknown webhook reason(s) {unknown}; allowed: {sorted(REASONS)}")
    if "customer" not in data:
        raise ValueError("the snapshot has no 'customer'")
    _check_numbers_are_strings(data, "data")
    when = timestamp.astimezone(tz) if tz is not None else timestamp
    snapshot = {k: v for k, v in data.items() if k not in ("sequence", "reasons")}
    return {
        "type": event_type,
        "timestamp": when.isoformat(),
        "data": {"sequence": sequence, "reasons": listed, **snapshot},
    }


def _check_numbers_are_strings(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int | float | Decimal):
        raise ValueError(f"{path}: numbers go to the site as strings (exact decimals), got {value!r}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_numbers_are_strings(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_numbers_are_strings(item, f"{path}[{index}]")
    elif isinstance(value, datetime):
        raise ValueError(f"{path}: times go to the site as ISO-8601 strings, got a datetime")


class WebhookSender:
    """Sends one outbox message to ``site.webhook_url`` per call, signed per Standard Webhooks.

    Args:
        url: ``site.webhook_url``.
        secret: ``whsec_`` + base64 (from ``site.secret_env``).
        previous_secret: the secret being rotated out (``site.previous_secret_env``); while set, each
            call carries two signatures.
        timeout_s: connect and read timeout of each POST.
        session: a ``requests`` session (tests); default :func:`bridge.net.make_session`.
        clock: Unix seconds for ``webhook-timestamp``. Always the real clock in production: sites
            reject a timestamp more than 5 minutes off, whatever ``--now`` says.

    Raises:
        ConfigError: a secret is not ``whsec_`` + base64 (the message names the key, not the value).
    """

    def __init__(
        self,
        url: str,
        secret: str,
        previous_secret: str | None = None,
        *,
        timeout_s: float = 10,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        problems = []
        for key, value in (("site.secret_env", secret), ("site.previous_secret_env", previous_secret)):
            if value is None and key == "site.previous_secret_env":
                continue
            try:
                decode_secret(value or "")
            except ValueError as exc:
                problems.append(f"{key}: {exc}; generate one with: echo whsec_$(openssl rand -base64 32)")
        if problems:
            raise ConfigError(problems)
        self.url = url
        self._secrets = (secret, previous_secret)
        self.timeout = (float(timeout_s), float(timeout_s))
        self.session = session if session is not None else make_session(timeout=self.timeout)
        self.clock = clock

    def __repr__(self) -> str:  # the secret must not show up in a traceback's locals
        rotating = self._secrets[1] is not None
        return f"<WebhookSender url={self.url!r} rotating={rotating}>"

    def headers(self, msg_id: str, body: bytes, timestamp: int) -> dict[str, str]:
        """The request headers of one attempt (exposed for tests and the docs)."""
        return {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(self._secrets, msg_id, timestamp, body),
        }

    def send(self, msg: outbox.OutboxMessage) -> None:
        """POST ``msg.payload["body"]``; return on any 2xx.

        Raises:
            TransientError: 408/429 (``retry_after`` set from ``Retry-After``), 5xx, timeouts and
                connection errors — retry later with the same ``webhook-id``.
            FatalHTTPError: any other answer (4xx, a redirect), or a message without a body: dead.
        """
        body_dict = msg.payload.get("body") if isinstance(msg.payload, Mapping) else None
        if not isinstance(body_dict, Mapping):
            raise FatalHTTPError(
                f"outbox message {msg.message_id} has no webhook body", message_id=msg.message_id
            )
        body = serialize(body_dict)
        headers = self.headers(msg.message_id, body, int(self.clock()))
        bound = log.bind(webhook_id=msg.message_id, customer=msg.customer_id, sequence=msg.sequence)
        try:
            response = self.session.post(
                self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            failure = classify_exception(exc, url=self.url)
            bound.info("webhook.failed", error=str(failure))
            raise failure from exc
        with response:
            status = response.status_code
            if 200 <= status < 300:
                bound.debug("webhook.delivered", status=status)
                return
            excerpt = response.text[:500] if response.content else ""
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error = classify_status(status, url=self.url, retry_after=retry_after, body=excerpt)
        if error is None:  # 1xx/3xx: the URL points somewhere else; retrying cannot fix it
            location = response.headers.get("Location", "")
            hint = f"set site.webhook_url to the final address {location}".rstrip()
            error = FatalHTTPError(
                f"HTTP {status} from {self.url}: {hint}",
                status=status,
                body=excerpt,
                url=self.url,
            )
        bound.info("webhook.rejected", status=status, retry_after=retry_after)
        raise error


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
    send: Callable[[outbox.OutboxMessage], None],
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
    ``mark_sent``; on :class:`TransientError` ``mark_retry`` at :func:`retry_at` or ``mark_dead``
    once the message is ``max_age_hours`` old; on :class:`FatalHTTPError` (or any other
    :class:`BridgeError`) ``mark_dead`` at once — a dead message no longer blocks its customer.
    Runs until nothing is due at ``now`` or ``stop()`` is true (checked before every send).

    Args:
        channel: ``webhook`` | ``sms`` | ``email`` (``onec`` has its own write-back loop).
        conn_factory: returns a context manager yielding a connection in a transaction
            (``engine.begin``).
        send: delivers one message or raises; the message's ``message_id`` is its idempotency key.
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
                send(msg)
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
                with conn_factory() as conn:
                    outbox.mark_sent(conn, msg.id, now)
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
