"""The SMS channel: one HTTP POST per message to the store's SMS gateway.

Owns :class:`SmsSender`. The wire format is CONTRACT.md's: ``POST notify.sms.url`` with JSON
``{"to": "+79161234567", "text": "…", "sender": "SHOP"}`` and ``Authorization: Bearer <token>``;
any 2xx means sent. One call is one attempt: the outbox schedules retries with the webhook's backoff.

Failures are classified by :mod:`bridge.net` — the one retry policy — as a non-idempotent request,
because a gateway that received the request may already have sent the SMS:
- connect errors, connect timeouts, 408, 429 (``retry_after`` from ``Retry-After``) and 503 prove
  nothing was sent: :class:`~bridge.errors.TransientError`;
- 500/502/504, read timeouts and resets after sending: :class:`~bridge.net.OutcomeUnknownError`
  (also a ``TransientError``; a retry may send the SMS twice, a gateway honouring the
  ``Idempotency-Key`` header, set to the outbox ``message_id``, can drop the duplicate);
- any other 4xx: :class:`~bridge.errors.FatalHTTPError` (the message is dead at once);
- a recipient that is not E.164: :class:`~bridge.notify.recipients.UndeliverableError` (a
  ``FatalHTTPError``), and nothing is sent.

The bearer token never appears in logs, errors or ``repr``; error fields name the gateway URL
without its query string (some gateways take keys there).

Must not import bridge.onec, bridge.site, bridge.store or bridge.service.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import structlog

from bridge.errors import FatalHTTPError
from bridge.net import classify_exception, classify_status, make_session, parse_retry_after, response_text
from bridge.notify.recipients import Outgoing, check_phone, mask

__all__ = ["SmsSender"]

log = structlog.get_logger(__name__)


class SmsSender:
    """Sends ``sms`` outbox messages through an HTTP gateway.

    Args:
        url: the gateway endpoint (``notify.sms.url``).
        token: the bearer token (``notify.sms.token``'s secret value).
        sender: the sender name registered with the gateway; used when a payload has none.
        timeout_s: seconds for connecting and for the answer (``notify.sms.timeout_s``).
        session: a ``requests.Session`` to reuse (tests, connection pooling); one is made otherwise.
    """

    def __init__(
        self,
        url: str,
        token: str,
        sender: str,
        *,
        timeout_s: float,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url
        self.sender = sender
        self.timeout = (float(timeout_s), float(timeout_s))
        self._token = token
        self._session = session if session is not None else make_session(timeout=self.timeout)
        parts = urlsplit(url)
        self._shown_url = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))

    def __repr__(self) -> str:
        return f"SmsSender(url={self._shown_url!r}, sender={self.sender!r})"

    def send(self, msg: Outgoing) -> None:
        """POST one message; return when the gateway answered 2xx.

        Raises:
            TransientError: worth retrying later (``retry_after`` set from ``Retry-After``);
                :class:`~bridge.net.OutcomeUnknownError` when the SMS may already have gone out.
            FatalHTTPError: the gateway refused it for good (4xx), or the payload is unusable
                (:class:`~bridge.notify.recipients.UndeliverableError`).
        """
        payload = msg.payload
        to = check_phone(payload.get("to"), message_id=msg.message_id)
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            raise FatalHTTPError(
                "SMS message has no text; the outbox payload is damaged", message_id=msg.message_id
            )
        body: dict[str, Any] = {"to": to, "text": text, "sender": payload.get("sender") or self.sender}
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Idempotency-Key": msg.message_id,
            "Accept": "application/json, */*;q=0.5",
        }
        try:
            response = self._session.post(
                self.url, json=body, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            error = classify_exception(exc, url=self._shown_url, idempotent=False)
            error.fields["message_id"] = msg.message_id
            raise error from None  # the exception's repr may carry the request and its headers
        with response:
            excerpt = _excerpt(response)
            problem = classify_status(
                response.status_code,
                url=self._shown_url,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                body=excerpt,
                idempotent=False,
            )
        if problem is not None:
            problem.fields["message_id"] = msg.message_id
            raise problem
        # A redirect is not followed (a POST must not turn into a GET), so 3xx is not "sent".
        if not 200 <= response.status_code < 300:
            raise FatalHTTPError(
                f"HTTP {response.status_code} from {self._shown_url} is not a 2xx; check notify.sms.url",
                status=response.status_code,
                body=excerpt,
                message_id=msg.message_id,
            )
        log.debug("sms sent", message_id=msg.message_id, to=mask(to), status=response.status_code)


def _excerpt(response: requests.Response) -> str:
    try:
        return response_text(response)[:500]
    except requests.RequestException:
        return ""
