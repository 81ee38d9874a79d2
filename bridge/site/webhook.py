"""The site webhook: the body of CONTRACT.md and the signed POST.

Owns:
- :func:`build_body`: the ``customer.updated`` body around a snapshot from ``bridge.service.snapshot``
  (numbers as strings, ``timestamp`` in the store's zone, ``sequence`` and ``reasons`` first in ``data``);
- :class:`WebhookSender`: one signed POST per attempt (Standard Webhooks headers, the real clock in
  ``webhook-timestamp``, the outbox ``message_id`` as ``webhook-id``); the answer is classified by
  :mod:`bridge.net`, the one retry policy: 2xx delivered; 408/429/5xx/timeouts/connection errors
  :class:`~bridge.errors.TransientError` (``retry_after`` from ``Retry-After``); anything else
  :class:`~bridge.errors.FatalHTTPError`.
The delivery loop (retries, dead messages, per-customer order) is ``bridge.service.delivery``.

The secret never reaches a log line, an exception or a ``repr``. Imports ``bridge.net`` and
``bridge.errors`` only; must not import bridge.onec, bridge.notify, bridge.store or bridge.service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any, Protocol

import requests
import structlog

from bridge.errors import ConfigError, FatalHTTPError
from bridge.net import classify_exception, classify_status, make_session, parse_retry_after, response_text
from bridge.site.signing import decode_secret, serialize, signature_header

__all__ = [
    "EVENT_CUSTOMER_UPDATED",
    "REASONS",
    "WebhookSender",
    "build_body",
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


class Outgoing(Protocol):
    """What the sender needs of an outbox message (``bridge.store.outbox.OutboxMessage`` fits)."""

    @property
    def message_id(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...

    @property
    def customer_id(self) -> str: ...

    @property
    def sequence(self) -> int | None: ...


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
        "timestamp": when.isoformat(timespec="seconds"),  # whole seconds, as CONTRACT.md's example
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

    def send(self, msg: Outgoing) -> None:
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
            excerpt = response_text(response)[:500]
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
