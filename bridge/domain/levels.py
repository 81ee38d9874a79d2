"""Discount levels: the period sum, promotion, term end, reversal and the level history (SPEC §3).

Owns ``Contribution``, ``LevelState``, ``HistoryEntry`` and the transitions between states. Every
transition is a pure function ``(rules, state, contributions, …, now) -> (state, entries)``: the
caller stores the new state and appends the entries. Pure: no I/O, no clock (``now`` is always an
argument), must not import anything outside ``bridge.domain``.

Rules, and the interpretations chosen where SPEC §3 is silent:

* ``S(t)`` sums the contributions closed in ``(t − period_days, t]``: an order closed exactly
  ``period_days`` before ``t`` has left the window, one closed at ``t`` is in it.
* Days are added to aware datetimes as calendar days (``datetime + timedelta``): a term that starts
  at 12:00 Moscow time ends at 12:00 Moscow time ``term_days`` later.
* **Promotion** (``on_order_closed``) only ever raises the level, straight to the highest level
  ``S(now)`` reaches (several at once if need be), with a fresh term ``now + term_days``. Reaching
  the current level again does not extend its term. Term ends that fell due before the close are
  settled first (they happened earlier); that recomputation may lower the level, the close never.
* **Term end** (``on_term_end``) recomputes at the moment the term ended (``valid_until``, not
  ``now``) from ``S(valid_until)``; the new term starts at that moment. Terms that ended while the
  bridge was down are replayed one after another. A recomputation that keeps the level is still a
  history entry. ``since`` is the start of the current term (promotion, recomputation or manual
  change), ``None`` for the initial state.
* **Reversal** (``on_order_reversed``) undoes a promotion only if the reversed order triggered it
  (``promoted_by``) *and* ``S(now)`` without the order no longer reaches the current level.
  The customer then returns to the state before that promotion (``previous``, with its own term
  end), or, when ``S(now)`` still reaches a level above that one, to that level with a new term from
  ``now`` (as if promoted now; SPEC never grants a level without a term). If the restored term has
  already ended, it is recomputed at once, at ``now``, so the history stays in time order. Any
  other reversal changes nothing: no demotion before the term ends. Only the latest promotion can
  be undone: reversing an order whose promotion was followed by another leaves the level alone.
* **Manual** changes (``set_level_manually``) start a fresh term of the chosen level.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from bridge.domain.model import DiscountRules, Level

_ZERO = Decimal(0)
_KOPECK = Decimal("0.01")


class Reason(StrEnum):
    """Why a level history entry was written."""

    PROMOTION = "promotion"
    TERM_END = "term_end"
    ORDER_REVERSED = "order_reversed"
    MANUAL = "manual"


REASON_TEXT: dict[Reason, str] = {
    Reason.PROMOTION: "повышение",
    Reason.TERM_END: "пересчёт по окончании срока",
    Reason.ORDER_REVERSED: "отмена заказа",
    Reason.MANUAL: "вручную",
}


@dataclass(frozen=True, slots=True)
class Contribution:
    """A counting order's purchase amount (delivery excluded) at its close time."""

    order_id: str
    closed_at: datetime
    amount: Decimal


@dataclass(frozen=True, slots=True)
class LevelState:
    """A customer's level now.

    Attributes:
        level_code: the current level's code.
        valid_until: end of the current term; None for a level without a term.
        since: start of the current term; None for the initial state.
        promoted_by: the order whose close triggered the current level, if a promotion did.
        previous: the state before that promotion, restored if the promotion is undone.
    """

    level_code: str
    valid_until: datetime | None = None
    since: datetime | None = None
    promoted_by: str | None = None
    previous: LevelState | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change or recomputation of a customer's level."""

    at: datetime
    old_code: str
    new_code: str
    period_sum: Decimal
    reason: Reason
    order_id: str | None = None


Transition = tuple[LevelState, list[HistoryEntry]]


def _require_aware(moment: datetime, name: str = "now") -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")


def _index(rules: DiscountRules, code: str) -> int:
    for i, level in enumerate(rules.levels):
        if level.code == code:
            return i
    raise KeyError(f"unknown discount level {code!r}")


def _term_end(level: Level, start: datetime) -> datetime | None:
    if level.term_days is None:
        return None
    if level.term_days <= 0:
        # A zero term would end the moment it starts and replay forever.
        raise ValueError(f"level {level.code!r}: term_days must be positive, got {level.term_days}")
    return start + timedelta(days=level.term_days)


def initial_state(rules: DiscountRules) -> LevelState:
    """A new customer's state: the minimum level, no term."""
    return LevelState(level_code=rules.minimum.code)


def period_sum(contributions: Iterable[Contribution], t: datetime, period_days: int) -> Decimal:
    """S(t): the purchase amounts of the contributions closed in ``(t − period_days, t]``.

    Args:
        contributions: the customer's counting orders (at least those in the window).
        t: the moment, timezone-aware.
        period_days: ``discount.period_days``.

    Returns:
        The sum, ``Decimal(0)`` when the window is empty.
    """
    _require_aware(t, "t")
    start = t - timedelta(days=period_days)
    return sum((c.amount for c in contributions if start < c.closed_at <= t), _ZERO)


def level_for_sum(rules: DiscountRules, s: Decimal) -> Level:
    """The highest level whose threshold is ≤ ``s`` (the minimum level when none is)."""
    found = rules.minimum
    for level in rules.levels:
        if level.threshold <= s:
            found = level
    return found


def missing_to_next(rules: DiscountRules, level_code: str, s: Decimal) -> tuple[Level | None, Decimal]:
    """The level above ``level_code`` and what is still missing to reach it.

    Args:
        rules: the discount rules.
        level_code: the customer's current level.
        s: the customer's period sum now.

    Returns:
        ``(next level, max(0, its threshold − s))``, or ``(None, 0)`` at the top level.

    Raises:
        KeyError: ``level_code`` is not a configured level.
    """
    i = _index(rules, level_code)
    if i + 1 >= len(rules.levels):
        return None, _ZERO
    nxt = rules.levels[i + 1]
    return nxt, max(_ZERO, nxt.threshold - s)


def _recompute(
    rules: DiscountRules, state: LevelState, contributions: Sequence[Contribution], at: datetime
) -> tuple[LevelState, HistoryEntry]:
    s = period_sum(contributions, at, rules.period_days)
    level = level_for_sum(rules, s)
    new = LevelState(level.code, _term_end(level, at), since=at)
    return new, HistoryEntry(at, state.level_code, level.code, s, Reason.TERM_END)


def on_term_end(
    rules: DiscountRules, state: LevelState, contributions: Iterable[Contribution], now: datetime
) -> Transition:
    """Settle every term that ended at or before ``now``.

    Each term is recomputed at its end moment from ``S(valid_until)``: the level may stay, fall
    (down to the minimum) or rise, and a new term starts at that moment. A recomputed level whose
    own term also ended by ``now`` (after a long outage) is recomputed again, and so on.

    Args:
        rules: the discount rules.
        state: the customer's stored state.
        contributions: the customer's counting orders.
        now: the cycle's clock, timezone-aware.

    Returns:
        The new state and one ``term_end`` entry per recomputation (oldest first); the same state
        and no entries when no term has ended.
    """
    _require_aware(now)
    contribs = tuple(contributions)
    entries: list[HistoryEntry] = []
    while state.valid_until is not None and state.valid_until <= now:
        # In the clock's zone: a stored term end comes back in UTC, and the next term is counted
        # in calendar days from it (see ``plus_days``).
        state, entry = _recompute(rules, state, contribs, state.valid_until.astimezone(now.tzinfo))
        entries.append(entry)
    return state, entries


def on_order_closed(
    rules: DiscountRules,
    state: LevelState,
    contributions: Iterable[Contribution],
    order_id: str,
    now: datetime,
) -> Transition:
    """Promote the customer if the order that just closed lifts S(now) to a higher level.

    Term ends that fell due before ``now`` are settled first (see :func:`on_term_end`). Then, if
    ``S(now)`` reaches a level above the current one, the customer gets the highest level reached,
    valid until ``now + term_days``. The level is never lowered here.

    Args:
        rules: the discount rules.
        state: the customer's stored state.
        contributions: the customer's counting orders, including the one that closed.
        order_id: the order that closed.
        now: its close time, timezone-aware.

    Returns:
        The new state and its history entries (``term_end`` ones first, then ``promotion``).
    """
    contribs = tuple(contributions)
    state, entries = on_term_end(rules, state, contribs, now)
    s = period_sum(contribs, now, rules.period_days)
    reached = level_for_sum(rules, s)
    if _index(rules, reached.code) <= _index(rules, state.level_code):
        return state, entries
    promoted = LevelState(reached.code, _term_end(reached, now), now, promoted_by=order_id, previous=state)
    entries.append(HistoryEntry(now, state.level_code, reached.code, s, Reason.PROMOTION, order_id))
    return promoted, entries


def on_order_reversed(
    rules: DiscountRules,
    state: LevelState,
    contributions_without_the_order: Iterable[Contribution],
    order_id: str,
    now: datetime,
) -> Transition:
    """Undo the promotion an order triggered, if the order stopped counting and S no longer holds.

    See the module docstring for the exact rule. Term ends that fell due before ``now`` are
    settled first, from the contributions as given (1C's current truth).

    Args:
        rules: the discount rules.
        state: the customer's stored state.
        contributions_without_the_order: the customer's counting orders, the reversed one excluded
            (or with its reduced amount, after a partial return).
        order_id: the order that stopped counting or whose amount fell.
        now: when the bridge saw it, timezone-aware.

    Returns:
        The new state and its history entries; the same state and no entries when nothing changes.
    """
    contribs = tuple(contributions_without_the_order)
    state, entries = on_term_end(rules, state, contribs, now)
    if state.promoted_by != order_id:
        return state, entries
    s = period_sum(contribs, now, rules.period_days)
    current = rules.levels[_index(rules, state.level_code)]
    if s >= current.threshold:
        return state, entries
    restored = state.previous if state.previous is not None else initial_state(rules)
    supported = level_for_sum(rules, s)
    if _index(rules, supported.code) > _index(rules, restored.level_code):
        new = LevelState(supported.code, _term_end(supported, now), since=now)
        entries.append(
            HistoryEntry(now, state.level_code, supported.code, s, Reason.ORDER_REVERSED, order_id)
        )
        return new, entries
    entries.append(
        HistoryEntry(now, state.level_code, restored.level_code, s, Reason.ORDER_REVERSED, order_id)
    )
    if restored.valid_until is not None and restored.valid_until <= now:
        restored, entry = _recompute(rules, restored, contribs, now)
        entries.append(entry)
    return restored, entries


def set_level_manually(
    rules: DiscountRules,
    state: LevelState,
    level_code: str,
    contributions: Iterable[Contribution],
    now: datetime,
) -> Transition:
    """An operator sets the level: it holds for a fresh term from ``now`` (``manual`` entry).

    Raises:
        KeyError: ``level_code`` is not a configured level.
    """
    _require_aware(now)
    level = rules.levels[_index(rules, level_code)]
    s = period_sum(contributions, now, rules.period_days)
    new = LevelState(level.code, _term_end(level, now), since=now)
    return new, [HistoryEntry(now, state.level_code, level.code, s, Reason.MANUAL)]


def format_money(amount: Decimal) -> str:
    """Money as 1C shows it in text: ``4 000,00`` (space between thousands, comma, kopecks)."""
    q = amount.quantize(_KOPECK, rounding=ROUND_HALF_UP)
    sign = "-" if q < 0 else ""
    whole, frac = f"{abs(q):.2f}".split(".")
    groups: list[str] = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return f"{sign}{' '.join(groups)},{frac}"


def _level_name(rules: DiscountRules, code: str) -> str:
    # A level removed from the config since the entry was written still shows, by its code.
    try:
        return rules.by_code(code).name
    except KeyError:
        return code


def format_history_line(rules: DiscountRules, entry: HistoryEntry, tz: tzinfo) -> str:
    """One line of 1C's ``История уровней`` for one entry.

    Example: ``31.07.2026 Фанат животных → Новичок (пересчёт по окончании срока, сумма за
    период 4 000,00)``.
    """
    _require_aware(entry.at, "entry.at")
    return (
        f"{entry.at.astimezone(tz):%d.%m.%Y} {_level_name(rules, entry.old_code)} → "
        f"{_level_name(rules, entry.new_code)} ({REASON_TEXT[entry.reason]}, "
        f"сумма за период {format_money(entry.period_sum)})"
    )


def format_history(rules: DiscountRules, entries: Sequence[HistoryEntry], tz: tzinfo) -> str:
    """1C's ``История уровней`` text: newest first, one line per entry.

    Args:
        rules: the discount rules (for the level names).
        entries: the customer's history in the order it was written (oldest first).
        tz: the store's time zone, in which the dates are shown.

    Returns:
        The lines joined by ``\\n``; ``""`` for an empty history.
    """
    return "\n".join(format_history_line(rules, e, tz) for e in reversed(entries))
