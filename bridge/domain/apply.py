"""Applying 1C's documents and the passage of time to a customer's book.

``apply_order`` makes the book equal to "what the current state of this order implies" by
posting only the *difference* against what the ledger already holds for it (SPEC §1): volume,
accrual and reservation each have a target computed from the order as it is now plus the
decisions the bridge made earlier and must keep (close time, earned tier, redemption decision).
Re-applying an unchanged order therefore posts nothing. ``advance`` posts what time alone
causes: expiries, hold ends, expiry warnings and level term ends.

Must not import anything outside bridge.domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal

from bridge.domain import levels
from bridge.domain.accrual import accrual
from bridge.domain.book import Book, OrderFacts, Rules
from bridge.domain.ledger import Event, LotDates, Reason, expiry_key, legacy_level_key, level_key
from bridge.domain.lots import available_at, next_available_at, total_at
from bridge.domain.model import ZERO, BonusRules, CardStatus, Order, OrderStatus, ReturnDoc, plus_days
from bridge.domain.purchase import goods_before_points, lines_after_returns, purchase_amount
from bridge.domain.redemption import Decision, decide
from bridge.domain.tiers import tier_by_code, tier_for

CLOSED_REDEEM_FROZEN = "Заказ закрыт: списание бонусов по нему уже не меняется"


def lot_dates(rules: BonusRules, accrued_at: datetime) -> LotDates:
    return LotDates(
        accrued_at=accrued_at,
        available_at=accrued_at + timedelta(days=rules.hold_days),
        expires_at=accrued_at + timedelta(days=rules.expiry_days),
    )


def current_tier_code(book: Book, rules: BonusRules, t: datetime) -> str:
    return tier_for(rules, book.volume_at(t, rules.volume_window_days)).code


def apply_order(
    book: Book,
    rules: Rules,
    order: Order,
    now: datetime,
    *,
    history: bool = False,
    tz: tzinfo | None = None,
) -> OrderFacts:
    """Bring the book in line with ``order`` as 1C holds it now.

    Args:
        book: the order's customer's book (mutated; new entries/events appended).
        rules: the programs in force.
        order: the order as of its current ``DataVersion``.
        now: the cycle's clock (close time of an order first seen closed).
        history: ``backfill``: the close time is the document date and no events are emitted.
        tz: the store's timezone, for dates in messages.

    Returns:
        The order's facts (also kept in ``book.orders``).
    """
    cause = f"doc:{order.id}@{order.version}"
    facts = book.orders.get(order.id)
    if facts is None:
        facts = OrderFacts(order.id, book.customer_id, first_seen_at=now)
        book.orders[order.id] = facts
    facts.order = order
    told = _window_told(book, rules, now)
    before = _snapshot(book, rules, now)
    _settle_reservation(book, rules, facts, order, now, history, tz, cause)
    _settle_purchase(book, rules, facts, order, now, history, cause, emit=not history)
    if not history:
        _emit_changes(book, rules, before, now, order.id)
    _window_after_document(book, rules, told, before[0], now, emit=not history)
    return facts


def apply_return(
    book: Book,
    rules: Rules,
    ret: ReturnDoc,
    now: datetime,
    *,
    history: bool = False,
    tz: tzinfo | None = None,
) -> OrderFacts | None:
    """Record a customer return against its order and re-evaluate that order.

    ``history`` (``backfill``) emits no events, like an order imported as history; the return's
    effects are the same and dated as without it (``now``, the order's close time for volume).

    Returns the order's facts, or None when the order is not known yet (the return is kept and
    takes effect when the order arrives).
    """
    if ret.order_id is None:
        return None
    book.returns.setdefault(ret.order_id, {})[ret.id] = ret
    facts = book.orders.get(ret.order_id)
    if facts is None or facts.order is None:
        return None
    cause = f"return:{ret.id}@{ret.version}"
    told = _window_told(book, rules, now)
    before = _snapshot(book, rules, now)
    _settle_purchase(book, rules, facts, facts.order, now, False, cause, emit=not history)
    if not history:
        _emit_changes(book, rules, before, now, facts.order_id)
    _window_after_document(book, rules, told, before[0], now, emit=not history)
    return facts


def advance(book: Book, rules: Rules, now: datetime, *, history: bool = False) -> None:
    """Post what time alone causes up to ``now``: expiries, hold ends, warnings, level term ends,
    and the tier a rolling volume window lowers.

    ``history`` (the end of a ``backfill``): the moments imported history has already passed are
    recorded as history, like the documents themselves; expiry warnings are left for the first live
    tick (``next_due`` makes it due at once), since the points they warn about are still to expire.
    """
    book.timed = True  # 1C's figures that time moves (volume, period sum) are written back
    if rules.bonus is not None:
        bonus = rules.bonus
        for lot in sorted(book.lots.values(), key=lambda x: (x.expires_at, x.id)):
            if lot.expires_at <= now and lot.remaining > ZERO:
                points = book.expire(lot)
                book.emit(
                    Event(
                        Reason.POINTS_EXPIRED,
                        book.customer_id,
                        expiry_key(lot.id, lot.write_offs),
                        now,
                        order_id=lot.order_id,
                        points=points,
                        when=lot.expires_at,
                    )
                )
            elif lot.available_at <= now < lot.expires_at and lot.remaining > ZERO:
                book.emit(
                    Event(
                        Reason.POINTS_AVAILABLE,
                        book.customer_id,
                        f"available:{lot.id}",
                        now,
                        order_id=lot.order_id,
                        points=lot.remaining,
                        when=lot.available_at,
                    )
                )
            warn_from = plus_days(lot.expires_at, -bonus.expiry_warning_days, now.tzinfo)
            if history:
                continue
            if bonus.expiry_warning_days and warn_from <= now < lot.expires_at and lot.remaining > ZERO:
                book.emit(
                    Event(
                        Reason.POINTS_EXPIRING,
                        book.customer_id,
                        f"expiring:{lot.id}",
                        now,
                        order_id=lot.order_id,
                        points=lot.remaining,
                        when=lot.expires_at,
                    )
                )
        if bonus.volume_window_days:
            _window_tier(book, bonus, now)
    if rules.discount is not None and book.level is not None:
        state, entries = levels.on_term_end(rules.discount, book.level, book.contribution_list(), now)
        _record_levels(book, rules, state, entries, now, "time", emit=True)


@dataclass(frozen=True, slots=True)
class _Told:
    """Before a document changes a book with a rolling volume window: the tier the customer was
    last told (None when nothing but the document can have changed it: no time has passed since
    ``tier_seen_at``, or it is unknown) and whether the book had no counting order yet."""

    tier: str | None
    fresh: bool


def _window_told(book: Book, rules: Rules, now: datetime) -> _Told | None:
    bonus = rules.bonus
    if bonus is None or not bonus.volume_window_days:
        return None
    seen = book.tier_seen_at
    fresh = not any(c.amount > ZERO for c in book.contributions.values())
    if seen is None or seen >= now:
        return _Told(None, fresh)
    return _Told(current_tier_code(book, bonus, seen), fresh)  # nothing but time changed it since


def _window_after_document(
    book: Book, rules: Rules, told: _Told | None, before: str | None, now: datetime, *, emit: bool
) -> None:
    """After a document changed the book: a fall the window caused since ``tier_seen_at`` that the
    document did not move past is announced (the document's own change, before → after, said the
    rest: a rise it brought is announced as a rise from the tier the window left); then
    ``tier_seen_at`` is ``now``. A book whose ``tier_seen_at`` is unknown (stored before it was
    kept) keeps it unknown, so the next tick looks back a whole window, unless it had no counting
    order before this one."""
    bonus = rules.bonus
    if told is None or bonus is None:
        return
    seen = book.tier_seen_at
    if seen is None and not told.fresh:
        return
    book.tier_seen_at = now if seen is None else max(seen, now)
    if not emit or told.tier is None or seen is None or told.tier == before:
        return
    if current_tier_code(book, bonus, now) == before:  # the document left the window's fall as it was
        _announce_window_fall(book, bonus, told.tier, before, seen, now)


def _announce_window_fall(
    book: Book, bonus: BonusRules, told: str, tier_now: str, since: datetime, now: datetime
) -> None:
    """``told`` → ``tier_now``, named after the latest departure in ``(since, now]`` that lowered
    the tier (nothing else changed the book in that stretch)."""
    days = bonus.volume_window_days or 0
    window = timedelta(days=days)
    lowering = [
        (c.closed_at + window, oid)
        for oid, c in book.contributions.items()
        if c.amount > ZERO
        and since < c.closed_at + window <= now
        and tier_for(bonus, book.volume_at(c.closed_at + window - _INSTANT, days)).code
        != tier_for(bonus, book.volume_at(c.closed_at + window, days)).code
    ]
    if not lowering:
        return
    moment, oid = max(lowering)
    _announce_window_tier(book, bonus, told, tier_now, oid, moment, now)


def _window_tier(book: Book, bonus: BonusRules, now: datetime) -> None:
    """With ``bonus.volume_window_days`` the volume falls as orders leave the window, and the tier
    with it (SPEC §2). Judged once for each stretch of time: the departures since
    ``book.tier_seen_at`` (the last unit of work or tick, after which nothing but time changed the
    book) lower the tier from the one the customer had then to the one they have now; a fall is
    announced once, named after the latest departure that lowered the tier (its key). Then
    ``tier_seen_at`` moves to ``now`` (documents move it too: ``_window_after_document``).

    A book stored before ``tier_seen_at`` was kept has none: its departures within the last window
    are each judged at their own moment, the tier just before against the tier at it, and the
    latest that changed the tier to the one the customer has now is announced."""
    days = bonus.volume_window_days or 0
    window = timedelta(days=days)
    seen = book.tier_seen_at
    if seen is not None and seen >= now:
        return
    since = seen if seen is not None else now - window
    moments = sorted(
        (c.closed_at + window, oid)
        for oid, c in book.contributions.items()
        if c.amount > ZERO and since < c.closed_at + window <= now
    )
    book.tier_seen_at = now
    if not moments:
        return
    tier_now = current_tier_code(book, bonus, now)
    if seen is not None:
        told = current_tier_code(book, bonus, seen)  # nothing but time has changed the book since
        if told != tier_now:
            _announce_window_fall(book, bonus, told, tier_now, seen, now)
        return
    for moment, oid in reversed(moments):
        old = tier_for(bonus, book.volume_at(moment - _INSTANT, days)).code
        new = tier_for(bonus, book.volume_at(moment, days)).code
        if old == new:
            continue
        if new != tier_now:
            return  # what this departure did no longer holds (an order since, or a later one said it)
        _announce_window_tier(book, bonus, old, new, oid, moment, now)
        return


def _announce_window_tier(
    book: Book, bonus: BonusRules, old: str, new: str, oid: str, moment: datetime, now: datetime
) -> None:
    book.emit(
        Event(
            Reason.TIER_CHANGED,
            book.customer_id,
            f"tier:{old}>{new}:window:{oid}:{moment.astimezone(UTC).isoformat()}",
            now,
            order_id=oid,
            when=moment,
            detail={"old_tier": tier_by_code(bonus, old).name, "tier": tier_by_code(bonus, new).name},
        )
    )


_INSTANT = timedelta(microseconds=1)


def next_due(book: Book, rules: Rules, now: datetime) -> datetime | None:
    """The next moment after ``now`` at which time alone changes this book (None: never); ``now``
    itself when something is due already (an expiry not yet written off, a warning not yet sent)."""
    moments: list[datetime] = []
    if rules.bonus is not None:
        warning = rules.bonus.expiry_warning_days
        for lot in book.lots.values():
            if lot.remaining <= ZERO:
                continue
            warn_from = plus_days(lot.expires_at, -warning, now.tzinfo)
            moments += [m for m in (lot.available_at, warn_from, lot.expires_at) if m > now]
            if lot.expires_at <= now:
                moments.append(now)  # an expiry not yet written off: due at once
            elif warning and warn_from <= now and not book.was_sent(f"expiring:{lot.id}"):
                moments.append(now)  # a warning a backfill left for the first live tick
        if rules.bonus.volume_window_days:
            moments += _departures(book, rules.bonus.volume_window_days, now)
    if rules.discount is not None and book.level is not None and book.level.valid_until is not None:
        moments.append(book.level.valid_until)
    if rules.discount is not None:
        moments += _departures(book, rules.discount.period_days, now)  # the period sum 1C shows falls
    return min(moments, default=None)


def _departures(book: Book, days: int, now: datetime) -> list[datetime]:
    """When the counting orders leave a window of ``days`` (after ``now``)."""
    window = timedelta(days=days)
    return [
        c.closed_at + window
        for c in book.contributions.values()
        if c.amount > ZERO and c.closed_at + window > now
    ]


# --- reservation ------------------------------------------------------------------------------------


def _settle_reservation(
    book: Book,
    rules: Rules,
    facts: OrderFacts,
    order: Order,
    now: datetime,
    history: bool,
    tz: tzinfo | None,
    cause: str,
) -> None:
    bonus = rules.bonus
    if bonus is None:
        target = ZERO
        facts.message = ""
    elif order.voided:
        target = ZERO
        facts.redeem_decided = False  # if it is ever restored, its request is checked afresh
        facts.redeem_accepted = ZERO
        facts.message = ""
    elif facts.redeem_decided and facts.redeem_requested == order.redeem_requested:
        target = facts.redeem_accepted
    elif facts.redeem_decided and order.status is OrderStatus.CLOSED:
        target = facts.redeem_accepted  # a closed order's spend is final
        facts.message = CLOSED_REDEEM_FROZEN
    else:
        # Check the request as if this order held nothing: its own reservation counts as available.
        # ``available`` at the order's time is what ``Book.reserve`` takes from (``Book.spendable``):
        # an accepted request can always be reserved, also from a lot that expired since ``t``.
        decision = _decide(book, bonus, order, order.date if history else now, tz)
        facts.redeem_decided = True
        facts.redeem_requested = order.redeem_requested
        facts.redeem_accepted = decision.accepted
        facts.message = decision.message
        target = decision.accepted
    current = book.reserved_on(order.id)
    if target == current:
        return
    released = book.release(order.id, now, cause)
    if target > ZERO:
        book.reserve(order.id, target, order.date if history else now, now, cause)
    if released > target:
        # Points handed back pay the debt first, as a new accrual's do (SPEC §2): also when the
        # request was only lowered. The lower reservation was taken first: it was decided against
        # what this order held, so it always fits; the debt takes what is left.
        book.settle_debt(now, cause)


def _decide(book: Book, bonus: BonusRules, order: Order, t: datetime, tz: tzinfo | None) -> Decision:
    """``redemption.decide`` on the order's request against the book at ``t``."""
    if order.redeem_requested <= ZERO:
        # Nothing asked (most orders): ``decide`` answers without looking at the balances.
        return decide(bonus, order.redeem_requested, ZERO, ZERO)
    held = book.reserved_on(order.id)
    own_available = sum(
        (
            part
            for lot_id, part in book.reserved.get(order.id, {}).items()
            if book.lots[lot_id].is_available(t)
        ),
        ZERO,
    )
    return decide(
        bonus,
        order.redeem_requested,
        available_at(book.lots.values(), t) + own_available,
        goods_before_points(bonus, order),
        pending=total_at(book.lots.values(), t) + held - available_at(book.lots.values(), t) - own_available,
        next_available_at=next_available_at(book.lots.values(), t),
        tz=tz,
    )


# --- purchase: volume, accrual, level ---------------------------------------------------------------


def _settle_purchase(
    book: Book,
    rules: Rules,
    facts: OrderFacts,
    order: Order,
    now: datetime,
    history: bool,
    cause: str,
    *,
    emit: bool,
) -> None:
    bonus = rules.bonus
    counts = order.counts
    if counts and facts.close_time is None:
        facts.close_time = order.date if history else now
    spent = book.reserved_on(order.id)
    lines = lines_after_returns(order, book.returns.get(order.id, {}).values())
    amount_rules = bonus if bonus is not None else _NEUTRAL
    amount = purchase_amount(amount_rules, lines, spent) if counts else ZERO
    closed_at = facts.close_time or now

    old = book.contributions.get(order.id)
    old_amount = old.amount if old else ZERO
    if amount != old_amount:
        book.add_volume(order.id, amount - old_amount, closed_at, cause)

    if bonus is not None:
        target = ZERO
        if counts:
            if facts.earned_tier is None:
                before = book.volume_at(closed_at, bonus.volume_window_days, exclude=order.id)
                facts.earned_tier = tier_for(bonus, before).code
            target = accrual(bonus, lines, tier_by_code(bonus, facts.earned_tier), spent)
        delta = target - book.accrued.get(order.id, ZERO)
        if delta > ZERO:
            delta -= book.give_back(order.id, delta, now, cause)  # what a reversal took from other lots
            if delta > ZERO:
                book.accrue(order.id, delta, lot_dates(bonus, closed_at.astimezone(now.tzinfo)), cause)
            book.settle_debt(now, cause)
            if order.id in book.lots:
                book.re_expire(book.lots[order.id], now, cause)  # what a reversal un-wrote-off
        elif delta < ZERO:
            book.clawback(order.id, -delta, now, cause)

    if rules.discount is not None and amount != old_amount:
        state = book.level or levels.initial_state(rules.discount)
        at = closed_at if history else now
        if amount > old_amount:
            state, entries = levels.on_order_closed(
                rules.discount, state, book.contribution_list(), order.id, at
            )
        else:
            state, entries = levels.on_order_reversed(
                rules.discount, state, book.contribution_list(), order.id, at
            )
        _record_levels(book, rules, state, entries, now, cause, emit=emit)
    elif rules.discount is not None and book.level is None:
        book.level = levels.initial_state(rules.discount)


_NEUTRAL = BonusRules(tiers=())


def _record_levels(
    book: Book,
    rules: Rules,
    state: levels.LevelState,
    entries: list[levels.HistoryEntry],
    now: datetime,
    cause: str,
    *,
    emit: bool,
) -> None:
    book.level = state
    for entry in entries:
        book.level_history.append(entry)
        book.new_history.append(entry)
        if not emit:
            continue
        changed = entry.old_code != entry.new_code
        assert rules.discount is not None
        book.emit(
            Event(
                Reason.LEVEL_CHANGED if changed else Reason.LEVEL_RECOMPUTED,
                book.customer_id,
                level_key(entry.reason, entry.at, entry.old_code, entry.new_code, cause),
                now,
                order_id=entry.order_id,
                when=state.valid_until if entry is entries[-1] else None,
                detail={
                    "old_level": rules.discount.by_code(entry.old_code).name,
                    "level": rules.discount.by_code(entry.new_code).name,
                    "percent": str(rules.discount.by_code(entry.new_code).percent),
                },
            ),
            legacy=(legacy_level_key(entry.reason, entry.at, entry.old_code, entry.new_code),),
        )


# --- events: compare before and after ----------------------------------------------------------------


def _snapshot(book: Book, rules: Rules, now: datetime) -> tuple[str | None, dict[str, Decimal], Decimal]:
    tier = current_tier_code(book, rules.bonus, now) if rules.bonus is not None else None
    return tier, dict(book.accrued), Decimal(sum(sum(v.values(), ZERO) for v in book.reserved.values()))


def _emit_changes(
    book: Book,
    rules: Rules,
    before: tuple[str | None, dict[str, Decimal], Decimal],
    now: datetime,
    order_id: str,
) -> None:
    bonus = rules.bonus
    if bonus is None:
        return
    old_tier, old_accrued, _ = before
    n = len(book.sent_keys)  # distinguishes repeated changes of one order
    accrued_delta = book.accrued.get(order_id, ZERO) - old_accrued.get(order_id, ZERO)
    lot = book.lots.get(order_id)
    if accrued_delta > ZERO and lot is not None:
        book.emit(
            Event(
                Reason.POINTS_ACCRUED,
                book.customer_id,
                f"accrued:{order_id}:{book.accrued[order_id]}:{n}",
                now,
                order_id=order_id,
                points=accrued_delta,
                when=lot.available_at,
            )
        )
    elif accrued_delta < ZERO:
        book.emit(
            Event(
                Reason.POINTS_REVERSED,
                book.customer_id,
                f"reversed:{order_id}:{book.accrued.get(order_id, ZERO)}:{n}",
                now,
                order_id=order_id,
                points=-accrued_delta,
            )
        )
    reserved_entries = [
        e for e in book.new_entries if e.order_id == order_id and e.kind in ("reserve", "release")
    ]
    if reserved_entries:
        spent = book.reserved_on(order_id)
        reason = Reason.POINTS_REDEEMED if spent > ZERO else Reason.POINTS_RELEASED
        released = sum((e.points for e in reserved_entries if e.kind == "release"), ZERO)
        book.emit(
            Event(
                reason,
                book.customer_id,
                f"{reason.value}:{order_id}:{spent}:{n}",
                now,
                order_id=order_id,
                points=spent if spent > ZERO else released,
            )
        )
    new_tier = current_tier_code(book, bonus, now)
    if old_tier is not None and new_tier != old_tier:
        book.emit(
            Event(
                Reason.TIER_CHANGED,
                book.customer_id,
                f"tier:{old_tier}>{new_tier}:{order_id}:{n}",
                now,
                order_id=order_id,
                detail={
                    "old_tier": tier_by_code(bonus, old_tier).name,
                    "tier": tier_by_code(bonus, new_tier).name,
                },
            )
        )


def card_to_issue(book: Book, order: Order) -> bool:
    """An order being assembled is flagged while the customer has no physical card (SPEC §3)."""
    if order.voided or order.status is OrderStatus.CLOSED:
        return False
    return book.card is None or book.card.status is not CardStatus.ISSUED
