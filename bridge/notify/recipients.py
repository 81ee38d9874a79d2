"""What the senders share: the message they are handed, the checks a recipient must pass before
anything is sent, and the error for a message that can never be delivered as it stands.

Phone numbers arrive in E.164 (``+79161234567``): the 1C adapter normalises them at the edge, so a
number that is not E.164 here means the payload was built or edited wrongly, and repeating the send
cannot fix it. Such a message fails with :class:`UndeliverableError` (a
:class:`~bridge.errors.FatalHTTPError`: the outbox marks it dead at once, listed by ``outbox`` and
re-sendable by hand once fixed). Recipients are personal data: logs show them masked (:func:`mask`).

Must not import bridge.onec, bridge.site, bridge.store or bridge.service.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from bridge.errors import FatalHTTPError

__all__ = ["Outgoing", "UndeliverableError", "check_email", "check_phone", "mask"]

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Deliberately loose: the SMTP server is the judge of an address; this only keeps out what would
# break the message itself (no @, spaces, line breaks that could inject headers).
_EMAIL = re.compile(r"^[^@\s<>\",;]+@[^@\s<>\",;]+\.[^@\s<>\",;]+$")


class Outgoing(Protocol):
    """What a sender needs of an outbox row (``bridge.store.outbox.OutboxMessage`` has it)."""

    @property
    def message_id(self) -> str: ...

    @property
    def payload(self) -> dict[str, Any]: ...


class UndeliverableError(FatalHTTPError):
    """This message can never be delivered as it is: a bad recipient or a permanent rejection.

    ``status`` is the HTTP status or SMTP reply code when the peer refused, else None.
    """


def check_phone(value: Any, *, message_id: str = "") -> str:
    """Return ``value`` if it is an E.164 number, else raise :class:`UndeliverableError`."""
    if isinstance(value, str) and _E164.match(value):
        return value
    raise UndeliverableError(
        f"SMS recipient {mask(value)} is not an E.164 phone number (+79161234567); "
        "fix the customer's phone in 1C, then re-send the message with `outbox retry`",
        message_id=message_id,
        to=mask(value),
    )


def check_email(value: Any, *, message_id: str = "") -> str:
    """Return ``value`` if it looks like one e-mail address, else raise :class:`UndeliverableError`."""
    if isinstance(value, str) and _EMAIL.match(value):
        return value
    raise UndeliverableError(
        f"e-mail recipient {mask(value)} is not an e-mail address; fix the customer's e-mail in 1C, "
        "then re-send the message with `outbox retry`",
        message_id=message_id,
        to=mask(value),
    )


def mask(value: Any) -> str:
    """A recipient as logs may show it: ``+7916***4567``, ``iv***@mail.ru``."""
    if not isinstance(value, str) or not value:
        return repr(value)
    if "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:2]}***@{domain}"
    if len(value) <= 8:
        return value[:2] + "***"
    return f"{value[:5]}***{value[-4:]}"
