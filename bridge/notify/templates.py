"""Turning one event into the SMS and e-mail messages a customer receives (pure: no I/O, no clock).

Owns :func:`render`, the values behind every placeholder (:func:`template_values`) and the outbox
dedup key. The texts themselves come from the config (``notify.templates``, validated at load by
``bridge.runtime.config_channels``, which also holds the Russian defaults), so a rendered template
never meets an unknown placeholder here.

Rules:
- a message goes only to a contact the customer has: no phone, no SMS; no e-mail, no e-mail;
- a channel that is off (``notify.sms.url`` / ``notify.email.smtp_host`` null) or a reason (or one
  channel of it) set to null in the templates produces nothing;
- each message carries ``dedup_key`` = ``<channel>:<customer id>:<event key>``; the outbox's unique
  ``dedup_key`` makes each one happen at most once, however often the event is seen again. (The
  customer id is part of it because some event keys, e.g. a level change at a moment, are only
  unique per customer.)

Figures are shown the way a Russian reader expects them: points without trailing zeros and with a
space between thousands (``639``, ``1 500``, ``12,5``), dates as ``ДД.ММ.ГГГГ`` in the store's time
zone, and the plural of «бонус» agreeing with the number (``{points_word}``).

Must not import bridge.onec, bridge.site, bridge.store or bridge.service.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from bridge.domain.ledger import Event
from bridge.domain.model import ZERO, Customer
from bridge.domain.money import ru_number, ru_plural
from bridge.domain.views import CustomerView
from bridge.runtime.config_channels import NotifyConfig, template_fields

__all__ = [
    "DEDUP_KEY_MAX",
    "Rendered",
    "dedup_key",
    "format_date",
    "format_points",
    "render",
    "template_values",
]

#: Length of the outbox's ``dedup_key`` column; longer keys are shortened with a hash.
DEDUP_KEY_MAX = 200
_NO_NAME = "уважаемый покупатель"  # "Здравствуйте, {name}!" for a partner without a name
_NO_TERM = "бессрочно"

Channel = Literal["sms", "email"]


@dataclass(frozen=True, slots=True)
class Rendered:
    """One message ready for the outbox.

    Attributes:
        channel: ``sms`` or ``email`` (the outbox channel).
        to: the recipient (E.164 phone or e-mail address), also the outbox ``target``.
        payload: SMS ``{"to", "text", "sender"}``; e-mail ``{"to", "subject", "body"}``.
        dedup_key: the outbox's at-most-once key.
        kind: the event reason (the outbox ``kind``).
    """

    channel: Channel
    to: str
    payload: dict[str, Any]
    dedup_key: str
    kind: str


def render(
    event: Event, view: CustomerView, customer: Customer, notify: NotifyConfig, tz: tzinfo
) -> list[Rendered]:
    """The messages ``event`` sends to ``customer`` (possibly none).

    Args:
        event: what happened (from ``bridge.domain``).
        view: the customer's loyalty state right after the event (totals, tier, level, card).
        customer: the partner with the contacts from 1C (``phone`` in E.164, ``email``).
        notify: the ``notify`` config: channels on/off, SMS sender, shop name, templates.
        tz: the store's time zone (``Config.tz``): dates are shown as the customer's calendar has them.

    Returns:
        SMS first, then e-mail; empty when the reason is silent, its channels are off, or the customer
        has no matching contact.

    Raises:
        ValueError: the event, view and customer are not about the same customer (a wiring bug
            that would otherwise send one customer's figures to another).
    """
    if not (event.customer_id == view.customer_id == customer.id):
        raise ValueError(
            f"event for {event.customer_id!r}, view for {view.customer_id!r} and customer "
            f"{customer.id!r} differ: refusing to render"
        )
    templates = notify.templates.for_reason(str(event.reason))
    if templates is None:
        return []
    values = template_values(event, view, customer, shop=notify.shop_name, tz=tz)
    kind = str(event.reason)
    messages: list[Rendered] = []
    if notify.sms.enabled and templates.sms is not None and customer.phone:
        text = templates.sms.format_map(values)
        payload = {"to": customer.phone, "text": text, "sender": notify.sms.sender}
        messages.append(Rendered("sms", customer.phone, payload, dedup_key("sms", event), kind))
    if notify.email.enabled and templates.email is not None and customer.email:
        payload = {
            "to": customer.email,
            "subject": templates.email.subject.format_map(values),
            "body": templates.email.body.format_map(values),
        }
        messages.append(Rendered("email", customer.email, payload, dedup_key("email", event), kind))
    return messages


def dedup_key(channel: str, event: Event) -> str:
    """``<channel>:<customer id>:<event key>``, hashed when it would not fit the outbox column."""
    key = f"{channel}:{event.customer_id}:{event.key}"
    if len(key) <= DEDUP_KEY_MAX:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{channel}:sha256:{digest}"


def template_values(
    event: Event, view: CustomerView, customer: Customer, *, shop: str, tz: tzinfo
) -> dict[str, str]:
    """Every placeholder ``event.reason`` may use, rendered as text.

    ``{date}`` is the date the figure is about: when accrued points become available, when points
    expire, until when a level holds (``event.when``); the event's own date when there is none.
    ``{term}`` is ``до ДД.ММ.ГГГГ`` for a level with an end date, else ``бессрочно``.
    """
    detail = event.detail
    points = event.points if event.points is not None else ZERO
    total, available = max(view.total, ZERO), max(view.available, ZERO)
    level = detail.get("level") or (view.level.name if view.level else "")
    percent = detail.get("percent") or (str(view.level.percent) if view.level else "")
    valid_until = _level_until(event, view, level)
    values = {
        "name": customer.name.strip() or _NO_NAME,
        "shop": shop,
        "card": detail.get("card") or view.card_number or "",
        "date": format_date(event.when or event.at, tz),
        "total": format_points(total),
        "total_word": _word(total),
        "available": format_points(available),
        "available_word": _word(available),
        "tier": detail.get("tier") or (view.tier.name if view.tier else ""),
        "old_tier": detail.get("old_tier", ""),
        "level": level,
        "old_level": detail.get("old_level", ""),
        "percent": _percent(percent),
        "valid_until": format_date(valid_until, tz) if valid_until else "",
        "term": f"до {format_date(valid_until, tz)}" if valid_until else _NO_TERM,
        "points": format_points(points),
        "points_word": _word(points),
    }
    allowed = template_fields(str(event.reason))
    return {name: value for name, value in values.items() if name in allowed}


def format_points(value: Decimal) -> str:
    """Points for people: ``639``, ``1 500``, ``12,5`` (no trailing zeros)."""
    normalized = value.normalize()
    exponent = normalized.as_tuple().exponent
    places = max(0, -exponent) if isinstance(exponent, int) else 0
    return ru_number(value, places)


def format_date(moment: datetime, tz: tzinfo) -> str:
    """``ДД.ММ.ГГГГ`` of ``moment`` in ``tz`` (a naive moment is taken as already local)."""
    local = moment.astimezone(tz) if moment.tzinfo is not None else moment
    return local.strftime("%d.%m.%Y")


def _word(value: Decimal) -> str:
    return ru_plural(value.normalize(), "бонус", "бонуса", "бонусов")


def _percent(text: str) -> str:
    try:
        return format_points(Decimal(text))
    except (InvalidOperation, ValueError):
        return text


def _level_until(event: Event, view: CustomerView, level: str) -> datetime | None:
    if str(event.reason).startswith("level_"):
        if event.when is not None:
            return event.when
        # Only the last of several level entries in one cycle carries the date; an earlier one
        # may borrow it only if it names the level the customer is at now.
        return view.valid_until if view.level is not None and view.level.name == level else None
    return view.valid_until
