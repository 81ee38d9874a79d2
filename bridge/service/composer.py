"""Turning a unit of work into outgoing messages, inside the same transaction (transactional outbox).

After the rules ran for one document (or one customer's clock), the composer enqueues:
* ``onec``/``order`` — the order's loyalty fields for every order the unit touched;
* ``onec``/``discount`` — the level discount for an order still open (the writer never touches a
  closed one), and for every other open order of the customer when the level changed;
* ``onec``/``partner`` — the customer's loyalty state;
* ``onec``/``card`` — a card created for the customer, to be created in 1C;
* ``webhook``/``customer.updated`` — the full snapshot with the next ``sequence`` and the reasons
  (none for a resync — the end of a ``backfill``, or ``loyalty-bridge resync`` — nor for a purchase
  that moved only the volume and the period sum);
* notifications, through the injected ``notifier`` (SMS / e-mail, each at most once).
Newer 1C write-backs of the same object supersede undelivered older ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from bridge.domain.book import Book, Rules
from bridge.domain.ledger import EntryKind, Event, Reason
from bridge.domain.model import ZERO, OrderStatus
from bridge.domain.present import customer_view, order_view
from bridge.domain.views import CustomerView
from bridge.service.codec import view_to_json
from bridge.service.snapshot import iso, snapshot_data
from bridge.store import outbox, tracking

Notifier = Callable[[Connection, Event, CustomerView, datetime], None]


class Composer:
    """An ``Engine`` hook: enqueue what a unit of work must tell 1C, the site and the customer."""

    def __init__(
        self,
        rules: Rules,
        tz: tzinfo,
        *,
        writeback: bool = True,
        webhook: bool = True,
        notifier: Notifier | None = None,
    ) -> None:
        self.rules = rules
        self.tz = tz
        self.writeback = writeback
        self.webhook = webhook
        self.notifier = notifier
        self.precision = rules.bonus.point_precision if rules.bonus else 0

    def __call__(self, conn: Connection, book: Book, now: datetime, history: bool) -> None:
        view = customer_view(book, self.rules, now, self.tz)
        events = list(book.new_events)
        changed = bool(book.new_entries or book.new_history or events or book.timed or book.resync)
        if self.writeback:
            self._onec(conn, book, view, now, changed, events)
        # A purchase counted, corrected or reversed moves the volume and the period sum the site
        # shows (SPEC §3) even when it earns no points and changes no level (a sale item; any
        # purchase with the discount program alone): the site gets the snapshot with no reason, so
        # nobody is notified, as after a resync.
        moved = any(entry.kind is EntryKind.VOLUME for entry in book.new_entries)
        if history or not (events or book.resync or moved):
            return  # a snapshot without reasons: nothing to announce, the site catches up
        if self.webhook:
            sequence = outbox.next_sequence(conn, book.customer_id)
            body = {
                "type": "customer.updated",
                "timestamp": iso(now, self.tz),
                "data": {
                    "sequence": sequence,
                    "reasons": list(dict.fromkeys(e.reason.value for e in events)),
                    **snapshot_data(view, self.tz, precision=self.precision),
                },
            }
            outbox.enqueue(
                conn,
                channel="webhook",
                kind="customer.updated",
                customer_id=book.customer_id,
                target=book.customer_id,
                sequence=sequence,
                payload={"body": body},
                now=now,
            )
        if self.notifier is not None:
            for event in events:
                self.notifier(conn, event, view, now)

    def _onec(
        self,
        conn: Connection,
        book: Book,
        view: CustomerView,
        now: datetime,
        changed: bool,
        events: list[Event],
    ) -> None:
        cid = book.customer_id
        # The unit's write-backs go in with one supersede pass and one INSERT (``enqueue_many``:
        # the same rows, in the same order, as one ``enqueue`` after another).
        messages: list[outbox.NewMessage] = []
        for oid, facts in book.orders.items():
            if facts.order is None:
                continue
            ov = order_view(book, oid)
            messages.append(_write_back("order", cid, oid, {"view": view_to_json(ov)}))
            order = facts.order
            if self.rules.discount is not None and order.status is OrderStatus.OPEN and not order.deleted:
                percent = view.level.percent if view.level else ZERO
                has_auto = any(line.auto_discount_percent for line in order.lines)
                if percent > ZERO or has_auto:
                    messages.append(_discount(cid, oid, percent))
        if self.rules.discount is not None and any(
            e.reason in (Reason.LEVEL_CHANGED, Reason.LEVEL_RECOMPUTED) for e in events
        ):
            # A new level applies to every order still being assembled, not only this unit's.
            percent = view.level.percent if view.level else ZERO
            for oid in tracking.open_order_ids(conn, cid):
                if oid not in book.orders:
                    messages.append(_discount(cid, oid, percent))
        if changed or book.orders:
            messages.append(_write_back("partner", cid, cid, {"view": view_to_json(view)}))
        outbox.enqueue_many(conn, messages, now)
        for event in events:
            if event.reason is Reason.CARD_CREATED:
                number = event.detail["card"]
                outbox.enqueue(
                    conn,
                    channel="onec",
                    kind="card",
                    customer_id=cid,
                    target=number,
                    payload={"number": number, "customer_id": cid},
                    now=now,
                    dedup_key=f"card:{number}",
                )


def _write_back(kind: str, customer_id: str, target: str, payload: dict[str, Any]) -> outbox.NewMessage:
    """A 1C write-back of one object (a newer one supersedes it while undelivered)."""
    return outbox.NewMessage("onec", kind, customer_id, payload, target=target, supersede=True)


def _discount(customer_id: str, order_id: str, percent: Decimal) -> outbox.NewMessage:
    """The level discount for an open order (the writer re-reads it and never touches a closed one)."""
    return _write_back("discount", customer_id, order_id, {"order_id": order_id, "percent": str(percent)})
