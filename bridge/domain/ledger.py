"""Ledger entries and events: what the rules decide, as insert-only records.

Every change to a customer's points is an ``Entry``; corrections are new entries, never edits.
Signs: ``points`` is the entry's effect on the customer's net balance (Σ lot remaining − debt);
``allocations`` name the lots an entry took points from (positive) or returned them to
(negative); ``debt_delta`` moves the debt. VOLUME entries carry the money an order adds to (or,
negative, takes from) the purchase volume and the period sum, dated at the order's close time.

Must not import anything outside bridge.domain.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from bridge.domain.model import ZERO


class EntryKind(StrEnum):
    ACCRUE = "accrue"  # +points into the order's lot
    CLAWBACK = "clawback"  # −points of an order's accrual (from its lot, then others, then debt)
    RESERVE = "reserve"  # −points reserved / spent on an order (FIFO by expiry)
    RELEASE = "release"  # +points of a released reservation back to their original lots
    EXPIRE = "expire"  # −points written off at a lot's expiry
    UNEXPIRE = "unexpire"  # ±points of a write-off undone (the lot's accrual reversed) or redone
    DEBT_REPAY = "debt_repay"  # points of a lot paying off debt (net 0)
    VOLUME = "volume"  # ±money of an order's purchase amount (volume and period sum)


@dataclass(frozen=True, slots=True)
class Allocation:
    lot_id: str
    points: Decimal  # > 0 taken from the lot, < 0 returned to it


@dataclass(frozen=True, slots=True)
class LotDates:
    accrued_at: datetime
    available_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Entry:
    kind: EntryKind
    customer_id: str
    effective_at: datetime  # when it takes effect (close time for accruals/volume, expiry moment)
    points: Decimal = ZERO
    money: Decimal = ZERO
    debt_delta: Decimal = ZERO
    order_id: str | None = None
    lot_id: str | None = None  # ACCRUE: the lot credited; EXPIRE/UNEXPIRE: the lot written off
    lot: LotDates | None = None  # ACCRUE: the lot's dates (fixed at the first accrual)
    allocations: tuple[Allocation, ...] = ()
    cause: str = ""  # what triggered it: "doc:<id>@<version>", "time", "return:<id>@<version>"


class Reason(StrEnum):
    """Why a snapshot goes to the site (CONTRACT.md ``reasons``) and which notification fires."""

    POINTS_ACCRUED = "points_accrued"
    POINTS_AVAILABLE = "points_available"
    POINTS_REDEEMED = "points_redeemed"
    POINTS_RELEASED = "points_released"
    POINTS_REVERSED = "points_reversed"
    POINTS_EXPIRED = "points_expired"
    POINTS_EXPIRING = "points_expiring"
    TIER_CHANGED = "tier_changed"
    LEVEL_CHANGED = "level_changed"
    LEVEL_RECOMPUTED = "level_recomputed"
    CARD_CREATED = "card_created"
    CARD_ISSUED = "card_issued"


@dataclass(frozen=True, slots=True)
class Event:
    """Something a customer should hear about; ``key`` makes it happen at most once."""

    reason: Reason
    customer_id: str
    key: str
    at: datetime
    order_id: str | None = None
    points: Decimal | None = None
    when: datetime | None = None  # the date the figure is about (available from, expires at)
    detail: dict[str, str] = field(default_factory=dict)  # tier / level names and the like


# --- event keys --------------------------------------------------------------------------------------

# ``level:<reason>:<moment>:<old>><new>``: the one key that names a moment (level events).
_LEVEL_KEY = re.compile(
    r"(level:[a-z_]+:)"
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?)"
    r"(:.*)",
    re.DOTALL,
)


def key_time(moment: datetime) -> str:
    """A moment as an event key writes it: ISO-8601 in UTC, whatever zone ``moment`` is in.

    The cycle's clock runs in the store's zone while the times of a reloaded book come back
    from the database in UTC: one form keeps the key of a transition the same either way.
    """
    return moment.astimezone(UTC).isoformat()


def level_key(reason: str, moment: datetime, old_code: str, new_code: str, cause: str) -> str:
    """The key of one level transition: ``level:<reason>:<moment>:<old>><new>:<cause>``.

    ``cause`` is the unit of work that made the transition (``doc:<id>@<version>``,
    ``return:<id>@<version>``, ``time``): within one cycle (one ``now``) an order can promote, a
    return undo that and another order promote again, each a transition of its own with the same
    reason, moment and levels. Re-applying the same unit of work gives the same key.
    """
    return f"{legacy_level_key(reason, moment, old_code, new_code)}:{cause}"


def legacy_level_key(reason: str, moment: datetime, old_code: str, new_code: str) -> str:
    """The same transition's key as versions before the cause was part of it wrote it.

    ``Book.emit`` counts a stored key of this form as sent for the transition (after an upgrade a
    transition already announced is not announced again). A key of this form is never stored by
    this version: it only matches rows older versions wrote.
    """
    return f"level:{reason}:{key_time(moment)}:{old_code}>{new_code}"


def expiry_key(lot_id: str, write_off: int) -> str:
    """The key of a lot's ``write_off``-th write-off (1, 2, …): ``expired:<lot>:#<n>``.

    A lot is written off again when an order gives points back to it after its expiry; each
    write-off is announced. Older versions wrote ``expired:<lot>:<allocated>``, which after the
    write-off is always the lot's full amount, so a second write-off got the first one's key and
    was never announced. That form is not matched on purpose: an expiry event is stored together
    with its write-off entry, so this version never posts again a write-off an older key
    announced, and matching it would swallow the later write-offs again.
    """
    return f"expired:{lot_id}:#{write_off}"


KEY_MAX = 200  # the events table's key column


def stored_key(key: str) -> str:
    """``key`` in the form the events table keeps (at most :data:`KEY_MAX` characters).

    A longer key (a level key names two level codes, the order and its DataVersion) keeps its first
    135 characters, readable, and ends with ``#`` and the SHA-256 of the whole key: two keys that
    differ only past the cut stay distinct, and the same key always gives the same stored form (it
    used to be cut at 200 characters, so such keys could collide, and a key re-emitted after a
    reload no longer matched its stored, cut form).
    """
    if len(key) <= KEY_MAX:
        return key
    return f"{key[: KEY_MAX - 65]}#{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def canonical_key(key: str) -> str:
    """``key`` with the moment of a level key rewritten by :func:`key_time`; any other key as is.

    Keys are compared in this form: older versions wrote a level key's moment in whatever zone
    it had (the store's zone for a promotion, UTC for a term end read back from the database), and
    such a stored key must still match the same transition's key after an upgrade.
    """
    if not key.startswith("level:"):
        return key
    known = _CANONICAL_KEYS.get(key)
    if known is None:
        known = _canonical_level_key(key)
        if len(_CANONICAL_KEYS) >= 4_096:  # bounded: every unit of work reads its customer's keys
            _CANONICAL_KEYS.clear()
        _CANONICAL_KEYS[key] = known
    return known


_CANONICAL_KEYS: dict[str, str] = {}  # level key -> canonical form (a pure function, memoised)


def _canonical_level_key(key: str) -> str:
    match = _LEVEL_KEY.fullmatch(key)
    if match is None:
        return key
    try:
        moment = datetime.fromisoformat(match.group(2))
    except ValueError:
        return key
    if moment.tzinfo is None or moment.utcoffset() is None:
        return key
    return f"{match.group(1)}{key_time(moment)}{match.group(3)}"
