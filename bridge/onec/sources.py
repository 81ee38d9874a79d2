"""Change sources: how the cycle learns what changed in 1C (``poll.changes``; ONEC.md, "Finding what
changed").

The public face of ``sources_base`` (``Change``, ``TrackingState``, ``ChangeSource``),
``sources_scan`` (``ScanSource``, the default) and ``sources_feed`` (``ExchangePlanSource``,
``SoapSource``). The cycle drives any of them the same way::

    for change in source.read(state, now):   # lazily; memory stays bounded
        apply(change)                         # customers, cards, sales come before their documents
    commit(changes, source.cursor_updates())  # one transaction
    source.acknowledge()                      # only after the commit

Cursor names: ``orders_watermark``, ``returns_watermark``, ``last_reconcile`` (scan),
``exchange_message_no`` (exchange plan), ``soap_message_no`` (SOAP).

Must not import bridge.store, bridge.site or bridge.service.
"""

from __future__ import annotations

from bridge.onec.sources_base import (
    DOCUMENTS,
    OBJECTS,
    Change,
    ChangeSource,
    Entity,
    Related,
    TrackingState,
    entity_of_set,
)
from bridge.onec.sources_feed import (
    EXCHANGE_MESSAGE_NO,
    SOAP_MESSAGE_NO,
    ExchangePlanSource,
    FeedEntry,
    SoapSource,
    parse_changes_feed,
)
from bridge.onec.sources_scan import LAST_RECONCILE, PollSettings, ScanSource, watermark_cursor

__all__ = [
    "DOCUMENTS",
    "EXCHANGE_MESSAGE_NO",
    "LAST_RECONCILE",
    "OBJECTS",
    "SOAP_MESSAGE_NO",
    "Change",
    "ChangeSource",
    "Entity",
    "ExchangePlanSource",
    "FeedEntry",
    "PollSettings",
    "Related",
    "ScanSource",
    "SoapSource",
    "TrackingState",
    "entity_of_set",
    "parse_changes_feed",
    "watermark_cursor",
]
