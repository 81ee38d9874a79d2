"""Bonus tiers: which tier a purchase volume reaches and what is missing to the next one.

Must not import anything outside bridge.domain.
"""

from __future__ import annotations

from decimal import Decimal

from bridge.domain.model import ZERO, BonusRules, Tier


def tier_for(rules: BonusRules, volume: Decimal) -> Tier:
    """The highest tier whose threshold is at or below ``volume`` (the first tier at least)."""
    chosen = rules.tiers[0]
    for tier in rules.tiers:
        if tier.threshold <= volume:
            chosen = tier
    return chosen


def tier_by_code(rules: BonusRules, code: str) -> Tier:
    for tier in rules.tiers:
        if tier.code == code:
            return tier
    # A tier removed from the config since the order earned at it: the nearest is the first.
    return rules.tiers[0]


def next_tier(rules: BonusRules, volume: Decimal) -> tuple[Tier | None, Decimal | None]:
    """The tier above the current one and the volume still missing to reach it."""
    current = tier_for(rules, volume)
    for tier in rules.tiers:
        if tier.threshold > current.threshold:
            return tier, max(ZERO, tier.threshold - volume)
    return None, None
