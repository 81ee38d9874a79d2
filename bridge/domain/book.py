"""A customer's book: the state one unit of work reads, and the postings that change it.

The store rebuilds a ``Book`` from the ledger for one customer (under that customer's lock); the
rules in ``bridge.domain.apply`` mutate it and append ``Entry``/``Event`` records to
``book.new_entries`` / ``book.new_events``; the store inserts exactly those. Keeping the postings
here (rather than in the store) means the in-memory book used by the domain's own tests and the
database behave identically.

Must not import anything outside bridge.domain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from bridge.domain.ledger import Allocation, Entry, EntryKind, Event, LotDates, canonical_key, stored_key
from bridge.domain.levels import Contribution, HistoryEntry, LevelState
from bridge.domain.lots import Lot, spend_order, take
from bridge.domain.model import ZERO, BonusRules, Card, DiscountRules, Order, ReturnDoc

_ACCRUAL_KINDS = (EntryKind.ACCRUE, EntryKind.CLAWBACK)
_RESERVATION_KINDS = (EntryKind.RESERVE, EntryKind.RELEASE)


@dataclass(frozen=True, slots=True)
class Rules:
    """The programs in force: either may be off (None)."""

    bonus: BonusRules | None
    discount: DiscountRules | None


@dataclass(slots=True)
class OrderFacts:
    """What the bridge decided about one order and must remember (not derivable from 1C).

    ``close_time`` is when the bridge first saw the order counting; ``earned_tier`` the tier it
    earned at (kept for returns and re-closes); the redemption decision is sticky for a request.
    """

    order_id: str
    customer_id: str
    first_seen_at: datetime
    order: Order | None = None  # the last version seen (re-evaluated when a return arrives)
    close_time: datetime | None = None
    earned_tier: str | None = None
    redeem_decided: bool = False
    redeem_requested: Decimal = ZERO
    redeem_accepted: Decimal = ZERO
    message: str = ""


@dataclass(slots=True)
class Book:
    """One customer's loyalty state, rebuilt from the ledger for a unit of work."""

    customer_id: str
    lots: dict[str, Lot] = field(default_factory=dict)
    debt: Decimal = ZERO
    # current per-order effects, derived from the entries
    accrued: dict[str, Decimal] = field(default_factory=dict)
    reserved: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # order -> lot -> points
    # order -> other lot -> points its reversals took from the customer's other lots (given back first
    # when the order earns again: ``give_back``)
    taken: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    contributions: dict[str, Contribution] = field(default_factory=dict)  # order -> (close, amount)
    orders: dict[str, OrderFacts] = field(default_factory=dict)
    returns: dict[str, dict[str, ReturnDoc]] = field(default_factory=dict)  # order -> return id -> doc
    level: LevelState | None = None
    level_history: list[HistoryEntry] = field(default_factory=list)
    card: Card | None = None
    sent_keys: set[str] = field(default_factory=set)  # events already emitted
    # With a rolling volume window: the moment up to which the tier's fall by time was judged (the
    # last unit of work or tick); None for a book stored before the bridge kept it.
    tier_seen_at: datetime | None = None
    # produced by this unit of work
    new_entries: list[Entry] = field(default_factory=list)
    new_events: list[Event] = field(default_factory=list)
    new_history: list[HistoryEntry] = field(default_factory=list)
    timed: bool = False  # advanced by time in this unit: 1C's time-moved figures are written back
    resync: bool = False  # send the whole state again (1C and a snapshot) though nothing changed

    # --- reading ---------------------------------------------------------------------------------

    def was_sent(self, key: str) -> bool:
        """Whether the event with ``key`` was emitted already (``emit`` keeps it once)."""
        return stored_key(canonical_key(key)) in self.sent_keys

    def reserved_on(self, order_id: str) -> Decimal:
        return sum(self.reserved.get(order_id, {}).values(), ZERO)

    def volume_at(self, t: datetime, window_days: int | None, exclude: str | None = None) -> Decimal:
        """Σ purchase amounts of counting orders closed at or before ``t`` (within the window)."""
        since = t - timedelta(days=window_days) if window_days else None
        return sum(
            (
                c.amount
                for oid, c in self.contributions.items()
                if oid != exclude and c.closed_at <= t and (since is None or c.closed_at > since)
            ),
            ZERO,
        )

    def contribution_list(self, exclude: str | None = None) -> list[Contribution]:
        return [c for oid, c in self.contributions.items() if oid != exclude and c.amount > ZERO]

    # --- posting (every change goes through here, so the book always matches its entries) --------

    def post(self, entry: Entry) -> Entry:
        """Apply ``entry`` to the in-memory state and queue it for insertion."""
        self.absorb(entry)
        self.new_entries.append(entry)
        return entry

    def absorb(self, entry: Entry) -> None:
        """Apply an entry to the in-memory state."""
        self.replay(
            entry.kind,
            entry.order_id,
            entry.lot_id,
            entry.lot,
            entry.points,
            entry.money,
            entry.debt_delta,
            entry.effective_at,
            entry.allocations,
        )

    def replay(
        self,
        kind: EntryKind,
        order_id: str | None,
        lot_id: str | None,
        lot_dates: LotDates | None,
        points: Decimal,
        money: Decimal,
        debt_delta: Decimal,
        effective_at: datetime,
        allocations: Sequence[Allocation],
    ) -> None:
        """``absorb`` from an entry's fields: how the store rebuilds a book without building an
        ``Entry`` for every row of the ledger."""
        if kind is EntryKind.ACCRUE:
            assert lot_id is not None and lot_dates is not None and order_id is not None
            lot = self.lots.get(lot_id)
            if lot is None:
                lot = Lot(
                    id=lot_id,
                    order_id=order_id,
                    accrued_at=lot_dates.accrued_at,
                    available_at=lot_dates.available_at,
                    expires_at=lot_dates.expires_at,
                )
                self.lots[lot.id] = lot
            lot.amount += points
        if kind is EntryKind.EXPIRE and lot_id is not None:
            self.lots[lot_id].write_offs += 1
            self.lots[lot_id].expired -= points
        elif kind is EntryKind.UNEXPIRE and lot_id is not None:
            self.lots[lot_id].expired -= points
            self.lots[lot_id].unexpired += points
        if order_id is not None and kind in _ACCRUAL_KINDS:
            self.accrued[order_id] = self.accrued.get(order_id, ZERO) + points
        if allocations:
            reserving = order_id is not None and kind in _RESERVATION_KINDS
            clawing = order_id is not None and kind is EntryKind.CLAWBACK
            for alloc in allocations:
                self.lots[alloc.lot_id].allocated += alloc.points
                if reserving or (clawing and alloc.lot_id != order_id):
                    assert order_id is not None
                    held = self.reserved if reserving else self.taken
                    per_lot = held.setdefault(order_id, {})
                    per_lot[alloc.lot_id] = per_lot.get(alloc.lot_id, ZERO) + alloc.points
                    if per_lot[alloc.lot_id] == ZERO:
                        del per_lot[alloc.lot_id]
        self.debt += debt_delta
        if kind is EntryKind.VOLUME and order_id is not None:
            old = self.contributions.get(order_id)
            amount = (old.amount if old else ZERO) + money
            self.contributions[order_id] = Contribution(order_id, effective_at, amount)

    def emit(self, event: Event, *, legacy: Iterable[str] = ()) -> None:
        """Queue ``event`` unless an event with its key was already emitted.

        Keys are compared (and stored) in canonical form (``ledger.canonical_key``), a long one
        shortened with a hash (``ledger.stored_key``); the store loads ``sent_keys`` in that form
        too. ``legacy`` are the keys older versions gave the same event
        (``ledger.legacy_level_key``): one of them stored counts as sent, but only the event's own
        key is recorded, so a later, distinct event with the same legacy form is not held back by
        it.
        """
        key = stored_key(canonical_key(event.key))
        if key in self.sent_keys or any(stored_key(canonical_key(k)) in self.sent_keys for k in legacy):
            return
        self.sent_keys.add(key)
        self.new_events.append(event if key == event.key else replace(event, key=key))

    # --- primitive movements ---------------------------------------------------------------------

    def accrue(self, order_id: str, points: Decimal, dates: LotDates, cause: str) -> None:
        self.post(
            Entry(
                EntryKind.ACCRUE,
                self.customer_id,
                dates.accrued_at,
                points=points,
                order_id=order_id,
                lot_id=order_id,
                lot=dates,
                cause=cause,
            )
        )

    def clawback(self, order_id: str, points: Decimal, now: datetime, cause: str) -> Decimal:
        """Take back ``points`` of an order's accrual: its own lot first, then the customer's other
        live lots (first to expire first); what cannot be covered becomes debt. Returns the debt.

        Points the lot lost to expiry were never spent: what its own remaining points do not cover
        is taken from that write-off first (an ``UNEXPIRE`` entry gives them back to the lot, and
        the clawback takes them), not from the customer's other lots or as debt. The ledger then
        equals one where the order never earned them: nothing to spend, nothing to expire."""
        lot = self.lots.get(order_id)
        if lot is not None and lot.expired > ZERO:
            undo = min(points - max(lot.remaining, ZERO), lot.expired)
            if undo > ZERO:
                self.post(
                    Entry(
                        EntryKind.UNEXPIRE,
                        self.customer_id,
                        now,
                        points=undo,
                        lot_id=lot.id,
                        order_id=lot.order_id,
                        allocations=(Allocation(lot.id, -undo),),
                        cause=cause,
                    )
                )
        own = [lot] if lot is not None else []
        others = spend_order(lot for lot in self.lots.values() if lot.id != order_id and lot.is_live(now))
        plan = take([*own, *others], points)
        covered = sum((part for _, part in plan), ZERO)
        shortfall = points - covered
        self.post(
            Entry(
                EntryKind.CLAWBACK,
                self.customer_id,
                now,
                points=-points,
                debt_delta=shortfall,
                order_id=order_id,
                lot_id=order_id,
                allocations=tuple(Allocation(lot.id, part) for lot, part in plan),
                cause=cause,
            )
        )
        return shortfall

    def give_back(self, order_id: str, points: Decimal, now: datetime, cause: str) -> Decimal:
        """An order earns again (re-closed, a return deleted) what a reversal of it took from the
        customer's *other* lots: give those lots their points back first, up to ``points`` (a
        negative clawback), so the ledger equals one where the reversal never happened — the
        customer's lots as they were, not the order's own lot refilled (which may have expired
        meanwhile). Returns the points given back; the caller accrues the rest."""
        per_lot = self.taken.get(order_id, {})
        plan: list[tuple[str, Decimal]] = []
        left = points
        for lot in reversed(
            spend_order(self.lots[lot_id] for lot_id in per_lot)
        ):  # the latest to expire first
            if left <= ZERO:
                break
            part = min(left, per_lot[lot.id])
            plan.append((lot.id, part))
            left -= part
        back = points - left
        if back > ZERO:
            self.post(
                Entry(
                    EntryKind.CLAWBACK,
                    self.customer_id,
                    now,
                    points=back,
                    order_id=order_id,
                    lot_id=order_id,
                    allocations=tuple(Allocation(lot_id, -part) for lot_id, part in plan),
                    cause=cause,
                )
            )
        return back

    def re_expire(self, lot: Lot, now: datetime, cause: str) -> Decimal:
        """The order of an expired lot earns again after a reversal took back part of its
        write-off (``clawback``): put those points back where they were — written off, and already
        announced — with a negative ``UNEXPIRE``, instead of a second write-off and a second
        «expired» message. Returns the points."""
        points = min(lot.remaining, lot.unexpired)
        if lot.expires_at > now or points <= ZERO:
            return ZERO
        self.post(
            Entry(
                EntryKind.UNEXPIRE,
                self.customer_id,
                now,
                points=-points,
                lot_id=lot.id,
                order_id=lot.order_id,
                allocations=(Allocation(lot.id, points),),
                cause=cause,
            )
        )
        return points

    def spendable(self, t: datetime) -> list[Lot]:
        """The lots an order at time ``t`` may spend from, the first to expire first: those
        *available* at ``t`` (SPEC §2). The redemption decision counts exactly these
        (``lots.available_at``), so an accepted request can always be reserved. For an order
        imported by ``backfill`` ``t`` is its document date: a lot available then that has expired
        since was spent before its expiry, and only what it has left is written off."""
        return spend_order(lot for lot in self.lots.values() if lot.is_available(t))

    def reserve(self, order_id: str, points: Decimal, t: datetime, now: datetime, cause: str) -> None:
        """Reserve ``points`` from the lots spendable at ``t`` (the order's time), the first to
        expire first; the entry is posted at ``now``. The caller has checked the request against
        ``available`` at ``t`` (``redemption.decide``)."""
        plan = take(self.spendable(t), points)
        if sum((part for _, part in plan), ZERO) != points:
            # Unreachable when the request was decided against available_at(t): a broken invariant.
            raise ValueError(
                f"order {order_id}: cannot reserve {points} points at {t.isoformat()}: "
                f"only {sum((part for _, part in plan), ZERO)} available"
            )
        self.post(
            Entry(
                EntryKind.RESERVE,
                self.customer_id,
                now,
                points=-points,
                order_id=order_id,
                allocations=tuple(Allocation(lot.id, part) for lot, part in plan),
                cause=cause,
            )
        )

    def release(self, order_id: str, now: datetime, cause: str) -> Decimal:
        """Return every point reserved on an order to the lots it came from (original expiry)."""
        per_lot = dict(self.reserved.get(order_id, {}))
        points = sum(per_lot.values(), ZERO)
        if points == ZERO:
            return ZERO
        self.post(
            Entry(
                EntryKind.RELEASE,
                self.customer_id,
                now,
                points=points,
                order_id=order_id,
                allocations=tuple(Allocation(lot_id, -part) for lot_id, part in sorted(per_lot.items())),
                cause=cause,
            )
        )
        return points

    def settle_debt(self, now: datetime, cause: str) -> Decimal:
        """Pay debt off from the points the customer has (new accruals and returned points pay it
        first): live lots, and an expired lot's points not yet written off — points handed back
        to a lot that has expired were spent once and are unspent now, so they cover the debt
        their reversal made before expiry takes them (the result does not depend on which of two
        cancellations 1C shows first)."""
        if self.debt <= ZERO:
            return ZERO
        plan = take(spend_order(self.lots.values()), self.debt)
        paid = sum((part for _, part in plan), ZERO)
        if paid > ZERO:
            self.post(
                Entry(
                    EntryKind.DEBT_REPAY,
                    self.customer_id,
                    now,
                    debt_delta=-paid,
                    allocations=tuple(Allocation(lot.id, part) for lot, part in plan),
                    cause=cause,
                )
            )
        return paid

    def expire(self, lot: Lot, cause: str = "time") -> Decimal:
        points = lot.remaining
        if points <= ZERO:
            return ZERO
        self.post(
            Entry(
                EntryKind.EXPIRE,
                self.customer_id,
                lot.expires_at,
                points=-points,
                lot_id=lot.id,
                order_id=lot.order_id,
                allocations=(Allocation(lot.id, points),),
                cause=cause,
            )
        )
        return points

    def add_volume(self, order_id: str, money: Decimal, closed_at: datetime, cause: str) -> None:
        self.post(
            Entry(
                EntryKind.VOLUME,
                self.customer_id,
                closed_at,
                money=money,
                order_id=order_id,
                cause=cause,
            )
        )
