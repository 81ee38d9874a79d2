"""Presenting a book: the customer's and the order's figures at one moment, as views.

Must not import anything outside bridge.domain.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from bridge.domain import levels
from bridge.domain.apply import card_to_issue
from bridge.domain.book import Book, Rules
from bridge.domain.lots import available_at, next_available_at, total_at
from bridge.domain.model import ZERO
from bridge.domain.tiers import next_tier, tier_for
from bridge.domain.views import CustomerView, LevelView, OrderView, TierView


def customer_view(book: Book, rules: Rules, now: datetime, tz: tzinfo) -> CustomerView:
    """Everything the customer, the site and the 1C operator see about this customer at ``now``."""
    lots = book.lots.values()
    tier = nxt = None
    missing = None
    volume = ZERO
    total = available = ZERO
    if rules.bonus is not None:
        volume = book.volume_at(now, rules.bonus.volume_window_days)
        t = tier_for(rules.bonus, volume)
        tier = TierView(t.code, t.name)
        n, missing = next_tier(rules.bonus, volume)
        nxt = TierView(n.code, n.name) if n is not None else None
        total = total_at(lots, now)
        available = available_at(lots, now)
    level = next_level = None
    level_missing = None
    valid_until = None
    period = ZERO
    history = ""
    if rules.discount is not None:
        state = book.level or levels.initial_state(rules.discount)
        current = rules.discount.by_code(state.level_code)
        level = LevelView(current.code, current.name, current.percent)
        valid_until = state.valid_until
        period = levels.period_sum(book.contribution_list(), now, rules.discount.period_days)
        nl, level_missing_amount = levels.missing_to_next(rules.discount, current.code, period)
        if nl is not None:
            next_level = LevelView(nl.code, nl.name, nl.percent)
            level_missing = level_missing_amount
        history = levels.format_history(rules.discount, book.level_history, tz)
    return CustomerView(
        customer_id=book.customer_id,
        at=now,
        card_number=book.card.number if book.card else None,
        card_status=book.card.status.value if book.card else None,
        tier=tier,
        volume=volume,
        total=total,
        available=available,
        pending=total - available,
        debt=book.debt,
        next_available_at=next_available_at(lots, now) if rules.bonus is not None else None,
        next_tier=nxt,
        next_tier_missing=missing,
        level=level,
        valid_until=valid_until,
        period_sum=period,
        next_level=next_level,
        next_level_missing=level_missing,
        level_history_text=history,
    )


def order_view(book: Book, order_id: str) -> OrderView:
    """The loyalty fields of one order as 1C should show them."""
    facts = book.orders[order_id]
    lot = book.lots.get(order_id)
    earned = book.accrued.get(order_id, ZERO)
    return OrderView(
        order_id=order_id,
        points_spent=book.reserved_on(order_id),
        points_earned=earned,
        available_from=lot.available_at if lot is not None and earned > ZERO else None,
        message=facts.message,
        issue_card=card_to_issue(book, facts.order) if facts.order is not None else False,
    )
