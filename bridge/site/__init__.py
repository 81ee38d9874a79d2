"""The site edge: Standard Webhooks signing, the ``customer.updated`` POST and the outbox delivery loop.

``signing.py`` owns the bytes (secret format, signature, serialisation); ``webhook.py`` owns the
body, the sender and :func:`deliver_channel`, the retry/backoff loop the SMS and e-mail channels
reuse. See ``docs/readme/site.md``. Must not import bridge.onec, bridge.notify or bridge.service.
"""

from bridge.site.signing import SECRET_PREFIX, decode_secret, serialize, sign, signature_header, verify
from bridge.site.webhook import (
    EVENT_CUSTOMER_UPDATED,
    REASONS,
    DeliveryStats,
    WebhookSender,
    build_body,
    deliver_channel,
    deliver_webhooks,
    retry_at,
)

__all__ = [
    "EVENT_CUSTOMER_UPDATED",
    "REASONS",
    "SECRET_PREFIX",
    "DeliveryStats",
    "WebhookSender",
    "build_body",
    "decode_secret",
    "deliver_channel",
    "deliver_webhooks",
    "retry_at",
    "serialize",
    "sign",
    "signature_header",
    "verify",
]
