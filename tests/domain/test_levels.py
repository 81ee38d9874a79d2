"""Discount levels: period sum, promotion, term end, reversal, manual change, 1C history text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.domain.levels import (
    Contribution,
    HistoryEntry,
    LevelState,
    Reason,
    format_history,
    format_history_line,
    format_money,
    initial_state,
    level_for_sum,
    missing_to_next,
    on_order_closed,
    on_order_reversed,
    on_term_end,
    period_sum,
    set_level_manually,
)
from bridge.domain.model import DiscountRules, Level

MSK = ZoneInfo("Europe/Moscow")
D = Decimal

RULES = DiscountRules(
    levels=(
        Level("base", "Новичок", D(0), D(0), None),
        Level("fan", "Фанат животных", D(10_000), D(5), 180),
        Level("king", "Царь зверей", D(50_000), D(10), 180),
    ),
    period_days=365,
)


def msk(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=MSK)


def c(order_id: str, at: datetime, amount: int | str) -> Contribution:
    return Contribution(order_id, at, D(amount))


# --- SPEC worked example 5 -------------------------------------------------------------------


EX5 = [c("o1", msk(2025, 3, 15), 7_000), c("o2", msk(2025, 10, 10), 1_000), c("o3", msk(2026, 2, 1), 3_000)]


def test_example_5_promotion_then_term_end_back_to_base() -> None:
    state, promo = on_order_closed(RULES, initial_state(RULES), EX5, "o3", msk(2026, 2, 1))
    assert state.level_code == "fan"
    assert state.valid_until == msk(2026, 7, 31)  # 1 Feb 2026 + 180 days
    assert state.promoted_by == "o3"
    assert promo == [HistoryEntry(msk(2026, 2, 1), "base", "fan", D(11_000), Reason.PROMOTION, "o3")]

    # The day before the term ends nothing happens: no demotion before the term ends.
    same, none = on_term_end(RULES, state, EX5, msk(2026, 7, 30, 23, 59))
    assert (same, none) == (state, [])

    state, ended = on_term_end(RULES, state, EX5, msk(2026, 7, 31, 23, 0))
    assert state == LevelState("base", None, since=msk(2026, 7, 31))
    assert ended == [HistoryEntry(msk(2026, 7, 31), "fan", "base", D(4_000), Reason.TERM_END)]

    text = format_history(RULES, promo + ended, MSK)
    assert text.splitlines() == [
        "31.07.2026 Фанат животных → Новичок (пересчёт по окончании срока, сумма за период 4 000,00)",
        "01.02.2026 Новичок → Фанат животных (повышение, сумма за период 11 000,00)",
    ]


def test_example_5_sums() -> None:
    assert period_sum(EX5, msk(2026, 2, 1), 365) == D(11_000)
    assert period_sum(EX5, msk(2026, 7, 31), 365) == D(4_000)
    assert level_for_sum(RULES, D(11_000)).code == "fan"
    assert missing_to_next(RULES, "fan", D(11_000)) == (RULES.by_code("king"), D(39_000))


# --- period sum -----------------------------------------------------------------------------


def test_period_boundary_excludes_exactly_period_days_ago_and_includes_now() -> None:
    now = msk(2026, 5, 1)
    contribs = [
        c("old", now - timedelta(days=365), 100),
        c("just_in", now - timedelta(days=365) + timedelta(microseconds=1), 10),
        c("now", now, 1),
        c("future", now + timedelta(microseconds=1), 1000),
    ]
    assert period_sum(contribs, now, 365) == D(11)


def test_period_sum_compares_instants_across_time_zones() -> None:
    now = msk(2026, 5, 1, 3, 0)  # 00:00 UTC
    contribs = [
        c("a", datetime(2026, 5, 1, 0, 0, tzinfo=UTC), 5),
        c("b", datetime(2026, 5, 1, 0, 1, tzinfo=UTC), 7),
    ]
    assert period_sum(contribs, now, 365) == D(5)


def test_period_sum_empty_and_naive() -> None:
    assert period_sum([], msk(2026, 1, 1), 365) == D(0)
    with pytest.raises(ValueError):
        period_sum([], datetime(2026, 1, 1), 365)


# --- level arithmetic -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "code"),
    [
        ("0", "base"),
        ("9999.99", "base"),
        ("10000", "fan"),
        ("49999.99", "fan"),
        ("50000", "king"),
        ("1e9", "king"),
    ],
)
def test_level_for_sum(s: str, code: str) -> None:
    assert level_for_sum(RULES, D(s)).code == code


def test_missing_to_next() -> None:
    assert missing_to_next(RULES, "base", D(2_500)) == (RULES.by_code("fan"), D(7_500))
    # kept at fan by its term while S fell: the gap to king is measured from S
    assert missing_to_next(RULES, "fan", D(3_000)) == (RULES.by_code("king"), D(47_000))
    # S already past the next threshold (held below by nothing yet): never negative
    assert missing_to_next(RULES, "base", D(60_000)) == (RULES.by_code("fan"), D(0))
    assert missing_to_next(RULES, "king", D(80_000)) == (None, D(0))
    with pytest.raises(KeyError):
        missing_to_next(RULES, "gold", D(0))


def test_initial_state() -> None:
    assert initial_state(RULES) == LevelState("base", None, None, None, None)


# --- promotion ------------------------------------------------------------------------------


def test_promotion_across_two_levels_at_once() -> None:
    now = msk(2026, 3, 1)
    state, entries = on_order_closed(RULES, initial_state(RULES), [c("big", now, 55_000)], "big", now)
    assert state.level_code == "king"
    assert state.valid_until == now + timedelta(days=180)
    assert state.since == now
    assert state.previous == initial_state(RULES)
    assert entries == [HistoryEntry(now, "base", "king", D(55_000), Reason.PROMOTION, "big")]


def test_no_promotion_below_next_threshold_and_no_term_extension() -> None:
    t0 = msk(2026, 1, 10)
    contribs = [c("a", t0, 12_000)]
    fan, _ = on_order_closed(RULES, initial_state(RULES), contribs, "a", t0)
    t1 = msk(2026, 3, 1)
    contribs.append(c("b", t1, 20_000))
    same, entries = on_order_closed(RULES, fan, contribs, "b", t1)
    assert (same, entries) == (fan, [])


def test_promotion_from_fan_to_king_keeps_previous_chain() -> None:
    t0, t1 = msk(2026, 1, 10), msk(2026, 3, 1)
    contribs = [c("a", t0, 12_000)]
    fan, _ = on_order_closed(RULES, initial_state(RULES), contribs, "a", t0)
    contribs.append(c("b", t1, 40_000))
    king, entries = on_order_closed(RULES, fan, contribs, "b", t1)
    assert king == LevelState("king", t1 + timedelta(days=180), t1, "b", fan)
    assert entries == [HistoryEntry(t1, "fan", "king", D(52_000), Reason.PROMOTION, "b")]


def test_close_settles_a_pending_term_end_first() -> None:
    # The fan term ended on 31 Jul; the bridge only sees the next close on 5 Aug.
    fan = LevelState("fan", msk(2026, 7, 31), msk(2026, 2, 1), "o3", initial_state(RULES))
    contribs = [*EX5, c("o4", msk(2026, 8, 5), 7_000)]
    state, entries = on_order_closed(RULES, fan, contribs, "o4", msk(2026, 8, 5))
    assert [(e.reason, e.old_code, e.new_code, e.period_sum, e.at) for e in entries] == [
        (Reason.TERM_END, "fan", "base", D(4_000), msk(2026, 7, 31)),
        (Reason.PROMOTION, "base", "fan", D(11_000), msk(2026, 8, 5)),
    ]
    assert state.level_code == "fan"
    assert state.valid_until == msk(2026, 8, 5) + timedelta(days=180)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        on_order_closed(RULES, initial_state(RULES), [], "x", datetime(2026, 1, 1))


# --- term end -------------------------------------------------------------------------------


def test_term_end_stays_and_starts_a_new_term_at_the_end_moment() -> None:
    end = msk(2026, 7, 31)
    fan = LevelState("fan", end, msk(2026, 2, 1), "a", initial_state(RULES))
    contribs = [c("a", msk(2026, 2, 1), 15_000)]
    state, entries = on_term_end(RULES, fan, contribs, end + timedelta(days=3))
    assert state == LevelState("fan", end + timedelta(days=180), since=end)
    assert entries == [HistoryEntry(end, "fan", "fan", D(15_000), Reason.TERM_END)]
    assert format_history_line(RULES, entries[0], MSK) == (
        "31.07.2026 Фанат животных → Фанат животных (пересчёт по окончании срока, сумма за период 15 000,00)"
    )


def test_term_end_rises() -> None:
    end = msk(2026, 7, 31)
    fan = LevelState("fan", end, msk(2026, 2, 1))
    contribs = [c("a", msk(2026, 2, 1), 30_000), c("b", msk(2026, 6, 1), 25_000)]
    state, entries = on_term_end(RULES, fan, contribs, end)  # exactly at the end: it has ended
    assert state.level_code == "king"
    assert state.valid_until == end + timedelta(days=180)
    assert entries == [HistoryEntry(end, "fan", "king", D(55_000), Reason.TERM_END)]


def test_term_end_uses_sum_at_term_end_not_now() -> None:
    end = msk(2026, 7, 31)
    fan = LevelState("fan", end, msk(2026, 2, 1))
    # 12 000 closed on 1 Aug 2025 is still in the window on 31 Jul 2026 but gone by 10 Aug 2026.
    contribs = [c("a", msk(2025, 8, 1), 12_000)]
    state, entries = on_term_end(RULES, fan, contribs, msk(2026, 8, 10))
    assert state.level_code == "fan"
    assert entries[0].period_sum == D(12_000)


def test_long_outage_replays_every_term_end() -> None:
    start = msk(2025, 1, 1)
    king = LevelState("king", start + timedelta(days=180), start, "a")
    contribs = [c("a", start, 60_000), c("b", msk(2025, 8, 1), 20_000)]
    now = msk(2026, 12, 1)
    state, entries = on_term_end(RULES, king, contribs, now)
    t1 = start + timedelta(days=180)  # 30 Jun 2025: S = 60 000 → king again
    t2 = t1 + timedelta(days=180)  # 27 Dec 2025: S = 60 000 + 20 000 → king again
    t3 = t2 + timedelta(days=180)  # 25 Jun 2026: 1 Jan 2025 has left the window, S = 20 000 → fan
    t4 = t3 + timedelta(days=180)  # 22 Dec 2026 is after now: stop
    assert [(e.at, e.old_code, e.new_code, e.period_sum) for e in entries] == [
        (t1, "king", "king", D(60_000)),
        (t2, "king", "king", D(80_000)),
        (t3, "king", "fan", D(20_000)),
    ]
    assert all(e.reason is Reason.TERM_END for e in entries)
    assert state == LevelState("fan", t4, since=t3)


def test_long_outage_ends_at_a_level_without_term() -> None:
    start = msk(2024, 1, 1)
    king = LevelState("king", start + timedelta(days=180), start)
    contribs = [c("a", start, 60_000)]
    state, entries = on_term_end(RULES, king, contribs, msk(2026, 12, 1))
    # 29 Jun 2024 and 26 Dec 2024 still hold 1 Jan 2024's 60 000; 24 Jun 2025 no longer does.
    assert [e.new_code for e in entries] == ["king", "king", "base"]
    assert state.level_code == "base"
    assert state.valid_until is None


def test_no_term_no_term_end() -> None:
    state = initial_state(RULES)
    assert on_term_end(RULES, state, [c("a", msk(2026, 1, 1), 99_999)], msk(2030, 1, 1)) == (state, [])


def test_zero_term_days_is_refused_rather_than_looping() -> None:
    rules = DiscountRules((Level("base", "b", D(0), D(0), None), Level("x", "x", D(1), D(1), 0)))
    with pytest.raises(ValueError):
        on_order_closed(rules, initial_state(rules), [c("a", msk(2026, 1, 1), 5)], "a", msk(2026, 1, 1))


# --- reversal -------------------------------------------------------------------------------


def _fan_by_o3() -> LevelState:
    state, _ = on_order_closed(RULES, initial_state(RULES), EX5, "o3", msk(2026, 2, 1))
    return state


def test_reversal_of_the_promoting_order_undoes_the_promotion() -> None:
    now = msk(2026, 2, 20)
    without = EX5[:2]
    state, entries = on_order_reversed(RULES, _fan_by_o3(), without, "o3", now)
    assert state == initial_state(RULES)
    assert entries == [HistoryEntry(now, "fan", "base", D(8_000), Reason.ORDER_REVERSED, "o3")]
    assert format_history_line(RULES, entries[0], MSK) == (
        "20.02.2026 Фанат животных → Новичок (отмена заказа, сумма за период 8 000,00)"
    )


def test_reversal_of_another_order_changes_nothing() -> None:
    fan = _fan_by_o3()
    assert on_order_reversed(RULES, fan, [EX5[0], EX5[2]], "o2", msk(2026, 2, 20)) == (fan, [])


def test_reversal_while_sum_still_holds_the_level_changes_nothing() -> None:
    fan = _fan_by_o3()
    without = [*EX5[:2], c("o4", msk(2026, 2, 10), 5_000)]
    assert on_order_reversed(RULES, fan, without, "o3", msk(2026, 2, 20)) == (fan, [])


def test_partial_return_keeps_level_when_reduced_amount_still_reaches_it() -> None:
    fan = _fan_by_o3()
    reduced = [*EX5[:2], c("o3", msk(2026, 2, 1), 2_000)]  # S = 10 000
    assert on_order_reversed(RULES, fan, reduced, "o3", msk(2026, 2, 20)) == (fan, [])


def test_reversal_after_double_promotion_returns_to_the_previous_level_and_term() -> None:
    t0, t1, now = msk(2026, 1, 10), msk(2026, 3, 1), msk(2026, 3, 5)
    contribs = [c("a", t0, 12_000)]
    fan, _ = on_order_closed(RULES, initial_state(RULES), contribs, "a", t0)
    king, _ = on_order_closed(RULES, fan, [*contribs, c("b", t1, 40_000)], "b", t1)
    state, entries = on_order_reversed(RULES, king, contribs, "b", now)
    assert state == fan  # fan again, until t0 + 180 days, still undoable by "a"
    assert entries == [HistoryEntry(now, "king", "fan", D(12_000), Reason.ORDER_REVERSED, "b")]
    # Only the latest promotion is undone: reversing "a" while king changes nothing.
    assert on_order_reversed(RULES, king, [c("b", t1, 40_000)], "a", now) == (king, [])


def test_reversal_to_a_level_above_previous_starts_a_term_now() -> None:
    t0, t1, now = msk(2026, 1, 10), msk(2026, 2, 1), msk(2026, 3, 1)
    king, _ = on_order_closed(RULES, initial_state(RULES), [c("big", t0, 60_000)], "big", t0)
    # A later order alone would have made the customer a fan.
    king, none = on_order_closed(RULES, king, [c("big", t0, 60_000), c("b", t1, 15_000)], "b", t1)
    assert none == []
    state, entries = on_order_reversed(RULES, king, [c("b", t1, 15_000)], "big", now)
    assert state == LevelState("fan", now + timedelta(days=180), since=now)
    assert entries == [HistoryEntry(now, "king", "fan", D(15_000), Reason.ORDER_REVERSED, "big")]


def test_reversal_restoring_an_expired_term_recomputes_at_once() -> None:
    t0, t1, now = msk(2025, 6, 1), msk(2025, 11, 1), msk(2026, 1, 15)
    contribs = [c("a", t0, 10_000)]
    fan, _ = on_order_closed(RULES, initial_state(RULES), contribs, "a", t0)  # until 28 Nov 2025
    king, _ = on_order_closed(RULES, fan, [*contribs, c("b", t1, 45_000)], "b", t1)  # until 30 Apr 2026
    state, entries = on_order_reversed(RULES, king, contribs, "b", now)
    assert [(e.at, e.old_code, e.new_code, e.reason) for e in entries] == [
        (now, "king", "fan", Reason.ORDER_REVERSED),
        (now, "fan", "fan", Reason.TERM_END),  # S(now) = 10 000 still supports fan
    ]
    assert state == LevelState("fan", now + timedelta(days=180), since=now)


def test_reversal_settles_pending_term_end_first() -> None:
    fan = _fan_by_o3()
    state, entries = on_order_reversed(RULES, fan, EX5[:2], "o3", msk(2026, 8, 10))
    assert [e.reason for e in entries] == [Reason.TERM_END]
    assert entries[0].period_sum == D(1_000)  # 10 Oct 2025 only, at 31 Jul 2026 without o3
    assert state.level_code == "base"


# --- manual ---------------------------------------------------------------------------------


def test_manual_level_gets_a_fresh_term() -> None:
    now = msk(2026, 4, 1)
    state, entries = set_level_manually(RULES, initial_state(RULES), "king", [c("a", now, 100)], now)
    assert state == LevelState("king", now + timedelta(days=180), since=now)
    assert entries == [HistoryEntry(now, "base", "king", D(100), Reason.MANUAL)]
    assert "(вручную, сумма за период 100,00)" in format_history(RULES, entries, MSK)
    with pytest.raises(KeyError):
        set_level_manually(RULES, state, "emperor", [], now)


# --- history text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("0", "0,00"),
        ("5", "5,00"),
        ("999.999", "1 000,00"),
        ("1234567.891", "1 234 567,89"),
        ("0.005", "0,01"),
        ("-1500", "-1 500,00"),
    ],
)
def test_format_money(amount: str, text: str) -> None:
    assert format_money(D(amount)) == text


def test_history_date_is_shown_in_the_store_time_zone() -> None:
    at = datetime(2026, 7, 30, 22, 30, tzinfo=UTC)  # 31 Jul 01:30 in Moscow
    entry = HistoryEntry(at, "fan", "base", D(4_000), Reason.TERM_END)
    assert format_history(RULES, [entry], MSK).startswith("31.07.2026 ")
    assert format_history(RULES, [entry], UTC).startswith("30.07.2026 ")


def test_history_empty_and_unknown_level() -> None:
    assert format_history(RULES, [], MSK) == ""
    entry = HistoryEntry(msk(2026, 1, 1), "gold", "base", D(0), Reason.MANUAL)
    assert format_history(RULES, [entry], MSK) == "01.01.2026 gold → Новичок (вручную, сумма за период 0,00)"


# --- properties -----------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
moments = st.integers(-800, 800).map(lambda h: T0 + timedelta(hours=h * 12))
amounts = st.decimals(min_value=0, max_value=100_000, places=2, allow_nan=False, allow_infinity=False)
contributions = st.lists(
    st.builds(Contribution, st.text("abcdef", min_size=1, max_size=4), moments, amounts), max_size=12
)
states = st.builds(
    LevelState,
    st.sampled_from([lvl.code for lvl in RULES.levels]),
    st.one_of(st.none(), moments),
    st.one_of(st.none(), moments),
    st.one_of(st.none(), st.text("abcdef", min_size=1, max_size=4)),
)


@given(contributions, moments, st.builds(Contribution, st.just("x"), moments, amounts))
def test_adding_a_contribution_never_lowers_the_sum(
    cs: list[Contribution], t: datetime, extra: Contribution
) -> None:
    before = period_sum(cs, t, 365)
    after = period_sum([*cs, extra], t, 365)
    assert after >= before >= 0
    assert after - before == (extra.amount if t - timedelta(days=365) < extra.closed_at <= t else 0)


@given(contributions, moments, st.integers(1, 400), st.integers(0, 400))
def test_longer_period_never_lowers_the_sum(cs: list[Contribution], t: datetime, p: int, more: int) -> None:
    assert period_sum(cs, t, p + more) >= period_sum(cs, t, p)


@given(amounts, amounts)
def test_level_for_sum_is_monotone(a: Decimal, b: Decimal) -> None:
    lo, hi = sorted((a, b))
    assert level_for_sum(RULES, lo).threshold <= level_for_sum(RULES, hi).threshold
    assert level_for_sum(RULES, a).threshold <= a


@given(st.sampled_from(["base", "fan", "king"]), amounts)
def test_missing_is_never_negative(code: str, s: Decimal) -> None:
    _, missing = missing_to_next(RULES, code, s)
    assert missing >= 0


@given(states, contributions, moments)
def test_order_close_never_demotes_a_running_term(
    state: LevelState, cs: list[Contribution], now: datetime
) -> None:
    if state.valid_until is not None and state.valid_until <= now:
        state = LevelState(state.level_code, now + timedelta(days=1), state.since)
    new, entries = on_order_closed(RULES, state, cs, "x", now)
    order = [lvl.code for lvl in RULES.levels]
    assert order.index(new.level_code) >= order.index(state.level_code)
    assert all(e.reason is Reason.PROMOTION for e in entries)
    assert len(entries) == (new != state)


@given(states, contributions, moments)
def test_after_term_end_no_term_is_overdue(state: LevelState, cs: list[Contribution], now: datetime) -> None:
    new, entries = on_term_end(RULES, state, cs, now)
    assert new.valid_until is None or new.valid_until > now
    for prev, nxt in pairwise(entries):
        assert prev.new_code == nxt.old_code and prev.at < nxt.at
    again, more = on_term_end(RULES, new, cs, now)
    assert (again, more) == (new, [])


@given(states, contributions, moments, st.text("abcdef", min_size=1, max_size=4))
def test_reversal_never_raises_a_running_level(
    state: LevelState, cs: list[Contribution], now: datetime, order_id: str
) -> None:
    if state.valid_until is not None and state.valid_until <= now:
        state = LevelState(state.level_code, now + timedelta(days=1), state.since, state.promoted_by)
    new, entries = on_order_reversed(RULES, state, cs, order_id, now)
    order = [lvl.code for lvl in RULES.levels]
    assert order.index(new.level_code) <= order.index(state.level_code)
    if state.promoted_by != order_id:
        assert (new, entries) == (state, [])
    assert new.valid_until is None or new.valid_until > now
