"""Notifications to customers (SPEC §4): SMS and e-mail, texts from ``notify.templates``.

- :mod:`bridge.notify.templates` — :func:`render`: an event becomes the messages to enqueue (pure);
- :mod:`bridge.notify.sms` — :class:`SmsSender`: one HTTP POST per message to the SMS gateway;
- :mod:`bridge.notify.email` — :class:`EmailSender`: one SMTP session per message;
- :mod:`bridge.notify.recipients` — recipient checks and :class:`UndeliverableError`.

The service renders messages inside the unit of work and enqueues them in the outbox with their
``dedup_key`` (each sent at most once); the delivery loop hands each row to the channel's sender,
which makes one attempt and raises from the one exception tree (``TransientError``: retry later;
``FatalHTTPError``: dead). Must not import bridge.onec, bridge.site, bridge.store or bridge.service.
"""

from bridge.notify.email import EmailSender
from bridge.notify.recipients import Outgoing, UndeliverableError
from bridge.notify.sms import SmsSender
from bridge.notify.templates import Rendered, render

__all__ = ["EmailSender", "Outgoing", "Rendered", "SmsSender", "UndeliverableError", "render"]
