"""The site edge: Standard Webhooks signing and the ``customer.updated`` POST.

``signing.py`` owns the bytes (secret format, signature, serialisation); ``webhook.py`` owns the
body and the sender. The outbox delivery loop is ``bridge.service.delivery``. See
``docs/readme/site.md``. Must not import bridge.onec, bridge.notify, bridge.store or bridge.service.
"""

from bridge.site.signing import SECRET_PREFIX, decode_secret, serialize, sign, signature_header, verify
from bridge.site.webhook import EVENT_CUSTOMER_UPDATED, REASONS, WebhookSender, build_body

__all__ = [
    "EVENT_CUSTOMER_UPDATED",
    "REASONS",
    "SECRET_PREFIX",
    "WebhookSender",
    "build_body",
    "decode_secret",
    "serialize",
    "sign",
    "signature_header",
    "verify",
]
