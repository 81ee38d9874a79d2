"""Standard Webhooks signing (standardwebhooks.com): the secret format, the signature, the body bytes.

Owns the byte-exact part of CONTRACT.md's "Webhook to the site": a secret is ``whsec_`` + base64 key;
a signature is ``v1,`` + base64 HMAC-SHA256 of ``"{webhook-id}.{webhook-timestamp}.{raw body}"``;
while a secret is rotated the header carries one signature per secret, space-separated, so a site
holding either secret verifies. The body is serialised once (UTF-8, no ASCII escaping, compact
separators) and exactly those bytes are signed and sent.

Pure functions: no I/O, no clock. Must not import bridge.onec, bridge.notify or bridge.service.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_PREFIX = "whsec_"

__all__ = ["SECRET_PREFIX", "decode_secret", "serialize", "sign", "signature_header", "verify"]


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional, padding may be missing).

    Raises:
        ValueError: the secret is empty or not base64. The message never repeats the secret.
    """
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    text = text.rstrip("=")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook secret is not whsec_ followed by base64") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature: ``v1,<base64 HMAC-SHA256 of "{id}.{ts}.{body}">``.

    Args:
        secret: ``whsec_`` + base64 key.
        msg_id: the ``webhook-id`` header.
        timestamp: the ``webhook-timestamp`` header (Unix seconds).
        body: the exact bytes sent as the request body.
    """
    signed = msg_id.encode("utf-8") + b"." + str(int(timestamp)).encode("ascii") + b"." + body
    digest = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Iterable[str | None], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one signature per configured secret, space-separated.

    ``None`` and empty entries are skipped, so ``signature_header([secret, previous_or_none], ...)``
    works whether or not a rotation is under way.
    """
    signatures = [sign(s, msg_id, timestamp, body) for s in secrets if s]
    if not signatures:
        raise ValueError("no webhook secret configured")
    return " ".join(signatures)


def verify(
    secrets: Iterable[str],
    msg_id: str,
    timestamp: int,
    body: bytes,
    header: str,
    *,
    now: float,
    tolerance_s: float = 300.0,
) -> bool:
    """True when ``header`` holds a ``v1`` signature by any of ``secrets`` and the timestamp is fresh.

    The bridge itself never verifies; this is the reference check for tests and for sites written
    in Python without the ``standardwebhooks`` package.
    """
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = [sign(s, msg_id, timestamp, body).encode("ascii") for s in secrets]
    for candidate in header.split():
        version, _, value = candidate.partition(",")
        if version != "v1":
            continue
        sent = ("v1," + value).encode("ascii", "replace")
        if any(hmac.compare_digest(sent, e) for e in expected):
            return True
    return False


def serialize(body: Mapping[str, Any]) -> bytes:
    """The body's one serialisation: UTF-8, Cyrillic as is, compact separators, key order kept.

    Key order is the order :func:`bridge.site.webhook.build_body` built (JSON columns keep it), so
    the same stored body always gives the same bytes.
    """
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
