"""Lots of points: what each accrual left, what was taken from it, and balances at any moment.

A lot is created by an accrual (``accrued_at``, ``available_at = accrued_at + hold``,
``expires_at = accrued_at + expiry``). Every reduction — a reservation, an expiry write-off, a
clawback, a debt repayment — is an *allocation* naming the lot it took from; a released
reservation is a negative allocation returning points to the very lots they came from (original
expiry). ``remaining = amount − allocated`` and never goes below zero.

At time *t*: ``total`` = remaining of lots with ``t < expires_at``; ``available`` = remaining of lots
with ``available_at ≤ t < expires_at``; ``pending = total − available``.
Must not import anything outside bridge.domain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bridge.domain.model import ZERO


@dataclass(slots=True)
class Lot:
    """One accrual's points (mutable inside a unit of work; rebuilt from the ledger each time)."""

    id: str
    order_id: str
    accrued_at: datetime
    available_at: datetime
    expires_at: datetime
    amount: Decimal = ZERO
    allocated: Decimal = ZERO
    write_offs: int = 0  # EXPIRE entries so far (points given back after expiry are written off again)
    expired: Decimal = ZERO  # points written off at expiry, less those a reversed accrual took back
    unexpired: Decimal = ZERO  # of those taken back, the ones not yet put back (``Book.re_expire``)

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.allocated

    def is_live(self, t: datetime) -> bool:
        return t < self.expires_at

    def is_available(self, t: datetime) -> bool:
        return self.available_at <= t < self.expires_at


def spend_order(lots: Iterable[Lot]) -> list[Lot]:
    """First the lots that expire first (then the older, then by id: deterministic)."""
    return sorted(lots, key=lambda lot: (lot.expires_at, lot.accrued_at, lot.id))


def total_at(lots: Iterable[Lot], t: datetime) -> Decimal:
    return sum((lot.remaining for lot in lots if lot.is_live(t)), ZERO)


def available_at(lots: Iterable[Lot], t: datetime) -> Decimal:
    return sum((lot.remaining for lot in lots if lot.is_available(t)), ZERO)


def next_available_at(lots: Iterable[Lot], t: datetime) -> datetime | None:
    """When the earliest pending points become available (None if nothing is pending)."""
    times = [
        lot.available_at for lot in lots if lot.remaining > ZERO and t < lot.available_at < lot.expires_at
    ]
    return min(times, default=None)


def take(lots: Iterable[Lot], points: Decimal) -> list[tuple[Lot, Decimal]]:
    """Plan taking up to ``points`` from ``lots`` in the given order; returns (lot, points) pairs.

    Takes nothing from a lot with nothing remaining; the caller decides what a shortfall means.
    """
    plan: list[tuple[Lot, Decimal]] = []
    left = points
    for lot in lots:
        if left <= ZERO:
            break
        if lot.remaining <= ZERO:
            continue
        part = min(left, lot.remaining)
        plan.append((lot, part))
        left -= part
    return plan
