"""The loyalty engine: one document (or one customer's clock) per database transaction.

``Engine.apply_order`` is the unit of work the daemon's cycle runs for every order it reads:
skip a version already applied, lock the customer, rebuild the book, apply the rules, insert the
new entries / events / history, remember the order's facts and mark the version processed — all
in one transaction. The cycle (issue 4) adds the outbox rows to the same transaction through
``on_commit`` hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

import structlog
from sqlalchemy import Connection

from bridge import crashpoints
from bridge.domain import apply as rules_apply
from bridge.domain.book import Book, OrderFacts, Rules
from bridge.domain.cards import card_number
from bridge.domain.ledger import Event, Reason
from bridge.domain.model import Card, CardStatus, Order, ReturnDoc
from bridge.domain.present import customer_view, order_view
from bridge.domain.views import CustomerView, OrderView
from bridge.errors import DocumentError
from bridge.store import tracking
from bridge.store.ledger import LedgerStore

log = structlog.get_logger(__name__)

UnitHook = Callable[[Connection, Book, datetime, bool], None]  # (conn, book, now, history)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one unit of work did."""

    duplicate: bool  # this document version had been applied before: nothing changed
    customer_id: str | None
    facts: OrderFacts | None = None
    events: tuple[Event, ...] = ()
    entries: int = 0


class Engine:
    """Applies documents and the passage of time to the ledger, one transaction each."""

    def __init__(
        self,
        store: LedgerStore,
        rules: Rules,
        tz: tzinfo,
        *,
        card_prefix: str | None = None,
        hooks: list[UnitHook] | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.tz = tz
        self.card_prefix = card_prefix
        self.hooks = hooks or []

    # --- documents -------------------------------------------------------------------------------

    def apply_order(
        self,
        order: Order,
        now: datetime,
        *,
        history: bool = False,
        prepare: Callable[[Connection], None] | None = None,
    ) -> Applied:
        """Apply one order version (a no-op if this exact version was applied before).

        ``prepare`` runs inside the transaction once the customer is locked (e.g. to store the
        contacts the notifications of this unit of work need).
        """
        if order.customer_id is None:
            raise DocumentError(
                f"order {order.number} ({order.id}) names no customer: set the partner (or a card) in 1C",
                document=order.id,
                field="customer",
            )
        customer = order.customer_id
        with self.store.transaction() as conn:
            processed, previous = self.store.order_state(conn, order.id, order.version)
            if processed:
                return Applied(True, customer)
            for cid in sorted({c for c in (customer, previous) if c is not None}):
                self.store.lock_customer(conn, cid, now)
            if previous is not None and previous != customer:
                # The order moved to another partner: undo everything it did for the old one.
                old = self.store.load_book(conn, previous, [order.id], history=self._history)
                with _rules_of(_order_name(order), order.id):
                    rules_apply.apply_order(old, self.rules, replace(order, deleted=True), now, tz=self.tz)
                old.orders[order.id].customer_id = previous
                self._finish(conn, old, now, history)
                del old.orders[order.id]
            if prepare is not None:
                prepare(conn)
            book = self.store.load_book(conn, customer, [order.id], history=self._history)
            if book.card is None and self.card_prefix is not None and not order.voided:
                self._issue_card(conn, book, now, history)
            with _rules_of(_order_name(order), order.id):
                facts = rules_apply.apply_order(book, self.rules, order, now, history=history, tz=self.tz)
            facts.customer_id = customer
            events = tuple(book.new_events)
            entries = len(book.new_entries)
            self._finish(conn, book, now, history)
            self.store.mark_processed(conn, order.id, order.version, customer, now)
            return Applied(False, customer, facts, events, entries)

    def apply_return(self, ret: ReturnDoc, now: datetime, *, history: bool = False) -> Applied:
        """Record a return and correct its order's effects by the difference.

        ``history`` (``backfill``): the return is imported as history, like ``apply_order``'s: no
        events, so nothing is sent to the site or the customer; 1C's fields are still written.
        """
        with self.store.transaction() as conn:
            if self.store.is_processed(conn, ret.id, ret.version):
                return Applied(True, ret.customer_id)
            customer = self.store.order_customer(conn, ret.order_id) if ret.order_id else None
            customer = customer or ret.customer_id
            self.store.save_return(conn, ret, customer, now)
            if customer is None:
                self.store.mark_processed(conn, ret.id, ret.version, None, now)
                return Applied(False, None)
            self.store.lock_customer(conn, customer, now)
            order_ids = [ret.order_id] if ret.order_id else []
            book = self.store.load_book(conn, customer, order_ids, history=self._history)
            with _rules_of(_return_name(ret, book), ret.id):
                facts = rules_apply.apply_return(book, self.rules, ret, now, history=history, tz=self.tz)
            events = tuple(book.new_events)
            entries = len(book.new_entries)
            self._finish(conn, book, now, history)
            self.store.mark_processed(conn, ret.id, ret.version, customer, now)
            return Applied(False, customer, facts, events, entries)

    # --- cards ---------------------------------------------------------------------------------------

    def adopt_card(self, card: Card, now: datetime, version: str = "") -> bool:
        """Register a card 1C already has for the customer (its number is kept). False if known."""
        with self.store.transaction() as conn:
            self.store.lock_customer(conn, card.customer_id, now)
            if self.store.customer_card(conn, card.customer_id) is not None:
                return False
            if self.store.card_number_taken(conn, card.number):
                return False
            self.store.add_card(conn, card, None, now, onec_version=version or None)
            return True

    def card_issued(self, customer_id: str, now: datetime) -> Applied:
        """The warehouse handed the card out: the card is ``issued``, open orders stop asking for one."""
        with self.store.transaction() as conn:
            self.store.lock_customer(conn, customer_id, now)
            order_ids = tracking.open_order_ids(conn, customer_id)
            book = self.store.load_book(conn, customer_id, order_ids, history=self._history)
            if book.card is None or book.card.status is CardStatus.ISSUED:
                return Applied(True, customer_id)
            self.store.set_card_status(conn, customer_id, CardStatus.ISSUED, now)
            book.card = replace(book.card, status=CardStatus.ISSUED)
            book.emit(
                Event(
                    Reason.CARD_ISSUED,
                    customer_id,
                    f"card_issued:{book.card.number}",
                    now,
                    detail={"card": book.card.number},
                )
            )
            events = tuple(book.new_events)
            self._finish(conn, book, now, False)
            return Applied(False, customer_id, None, events, 0)

    # --- time ----------------------------------------------------------------------------------------

    def tick(
        self,
        now: datetime,
        failures: list[str] | None = None,
        *,
        customers: Collection[str] | None = None,
        history: bool = False,
    ) -> list[Applied]:
        """Post what time alone causes up to ``now`` for every customer it concerns.

        ``customers`` names whom to advance instead (due or not); ``history`` (the end of a
        ``backfill``, for the customers it imported) records it as history: the expiries, hold
        ends, level term ends and tier drops the imported past already went through are written,
        not announced (``advance``).

        A customer whose rules raise (a broken invariant, see :func:`_rules_of`) is logged
        (``engine.tick_failed``), appended to ``failures`` and left as it was, due again next time;
        every other customer is still advanced.
        """
        if customers is not None:
            # Every one of them, due or not: a lot whose hold ended before the import, or an order
            # that left the volume window then, makes no customer due, but is history to record.
            due = sorted(customers)
        else:
            with self.store.transaction() as conn:
                due = self.store.due_customers(conn, now)
        done = []
        for customer in due:
            try:
                with self.store.transaction() as conn:
                    self.store.lock_customer(conn, customer, now)
                    book = self.store.load_book(conn, customer, history=self._history)
                    with _rules_of(f"customer {customer} (what time alone causes)", customer):
                        rules_apply.advance(book, self.rules, now, history=history)
                    events = tuple(book.new_events)
                    entries = len(book.new_entries)
                    self._finish(conn, book, now, history)
            except DocumentError as exc:
                log.error("engine.tick_failed", customer=customer, error=str(exc))
                if failures is not None:
                    failures.append(str(exc))
                continue
            done.append(Applied(False, customer, None, events, entries))
        return done

    def resync(self, customers: Iterable[str], now: datetime) -> int:
        """Send each customer's whole current state again, though nothing changed: the partner's
        loyalty fields to 1C and a snapshot with no reason to the site (through the hooks, in the
        outbox like everything else). The end of a ``backfill`` does it for the customers it
        imported, whose history announced nothing; ``loyalty-bridge resync`` for a site that lost
        its data. Returns the number of customers."""
        count = 0
        for customer in customers:
            with self.store.transaction() as conn:
                self.store.lock_customer(conn, customer, now)
                book = self.store.load_book(conn, customer, history=self._history)
                book.resync = True
                self._finish(conn, book, now, False)
            count += 1
        return count

    def customer_ids(self) -> list[str]:
        with self.store.engine.connect() as conn:
            return sorted(self.store.customer_ids(conn))

    # --- reading -------------------------------------------------------------------------------------

    def book(self, customer_id: str, order_ids: tuple[str, ...] = ()) -> Book:
        with self.store.engine.connect() as conn:
            return self.store.load_book(conn, customer_id, order_ids)

    def customer_view(self, customer_id: str, now: datetime) -> CustomerView:
        with self.store.engine.connect() as conn:
            # A view never emits events: the event keys are not needed.
            book = self.store.load_book(conn, customer_id, keys=False)
        return customer_view(book, self.rules, now, self.tz)

    def order_view(self, order_id: str) -> OrderView | None:
        with self.store.engine.connect() as conn:
            customer = self.store.order_customer(conn, order_id)
            if customer is None:
                return None
            book = self.store.load_book(conn, customer, [order_id])
        return order_view(book, order_id)

    def order_snapshot(self, order_id: str) -> Order | None:
        """The last version of an order the bridge applied (None if never seen)."""
        with self.store.engine.connect() as conn:
            customer = self.store.order_customer(conn, order_id)
            if customer is None:
                return None
            facts = self.store.load_book(conn, customer, [order_id]).orders.get(order_id)
        return facts.order if facts is not None else None

    def resolve_customer(self, id_or_card: str) -> str | None:
        """A partner id as given, or the owner of a card number."""
        with self.store.engine.connect() as conn:
            owner = self.store.customer_by_card(conn, id_or_card.replace(" ", ""))
            if owner is not None:
                return owner
            if id_or_card in self.store.customer_ids(conn):
                return id_or_card
        return None

    # --- internals -----------------------------------------------------------------------------------

    @property
    def _history(self) -> bool:
        """Whether a unit of work needs the level history: only views read it (the hooks present
        the customer); the rules merely append to it, and ``save_book`` inserts ``new_history``."""
        return self.rules.discount is not None and bool(self.hooks)

    def _issue_card(self, conn: Connection, book: Book, now: datetime, history: bool) -> None:
        assert self.card_prefix is not None
        while True:
            serial = self.store.next_serial(conn)
            number = card_number(self.card_prefix, serial)
            if not self.store.card_number_taken(conn, number):
                break
        book.card = Card(number, book.customer_id, CardStatus.VIRTUAL)
        self.store.add_card(conn, book.card, serial, now)
        # Emitted for history too: the card must exist in 1C whatever the age of the first order.
        book.emit(
            Event(Reason.CARD_CREATED, book.customer_id, f"card:{number}", now, detail={"card": number})
        )

    def _finish(self, conn: Connection, book: Book, now: datetime, history: bool) -> None:
        for hook in self.hooks:
            hook(conn, book, now, history)
        next_due = rules_apply.next_due(book, self.rules, now)
        self.store.save_book(conn, book, now, history=history, next_due=next_due)
        crashpoints.point("before_commit")


@contextmanager
def _rules_of(document: str, doc_id: str) -> Iterator[None]:
    """The rules applied to one document: a ``ValueError`` they raise is a broken invariant (a
    reservation the lots cannot cover, a level term that cannot start, …) that retrying will not
    mend. As a ``DocumentError`` naming the document the cycle quarantines it with that reason and
    carries on with the others; the transaction it is raised in stores nothing of the unit."""
    try:
        yield
    except ValueError as exc:
        raise DocumentError(f"{document}: the loyalty rules cannot apply it: {exc}", document=doc_id) from exc


def _order_name(order: Order) -> str:
    return f"order {order.number} ({order.id})"


def _return_name(ret: ReturnDoc, book: Book) -> str:
    facts = book.orders.get(ret.order_id) if ret.order_id else None
    if facts is not None and facts.order is not None:
        return f"return {ret.id} against {_order_name(facts.order)}"
    return f"return {ret.id} against order {ret.order_id}"
