"""The ledger's memoised conversions give exactly what ``bridge.store.schema``'s functions give."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.domain.levels import LevelState
from bridge.store import hot
from bridge.store.schema import time_param, time_value

ZONES = [
    UTC,
    ZoneInfo("Europe/Moscow"),
    ZoneInfo("America/New_York"),
    timezone(timedelta(hours=-3, minutes=-30)),
]
moments = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(ZONES),
    allow_imaginary=True,
)


@settings(max_examples=400)
@given(st.lists(moments, min_size=1, max_size=8), st.booleans())
def test_time_param_memo_matches_schema(values: list[datetime], pg: bool) -> None:
    for value in values * 2:  # the second round is served from the memo
        for candidate in (value, value.replace(fold=1 - value.fold)):
            assert hot.bind_time(candidate, pg) == time_param(candidate, pg)
            assert type(hot.bind_time(candidate, pg)) is type(time_param(candidate, pg))


def test_folded_wall_times_stay_apart() -> None:
    """01:30 on 2025-11-02 in New York happens twice; the two compare equal but are 5 and 6 UTC."""
    ny = ZoneInfo("America/New_York")
    first = datetime(2025, 11, 2, 1, 30, tzinfo=ny)
    second = first.replace(fold=1)
    assert first == second  # same zone: compared without the fold
    assert hot.bind_time(first, False) == "2025-11-02T05:30:00.000000"
    assert hot.bind_time(second, False) == "2025-11-02T06:30:00.000000"
    assert hot.bind_time(first, False) == "2025-11-02T05:30:00.000000"


def test_naive_times_are_refused_every_time() -> None:
    naive = datetime(2026, 3, 1, 9)
    for _ in range(2):
        with pytest.raises(ValueError, match="naive"):
            hot.bind_time(naive, False)
    assert hot.bind_time(None, False) is None


readable = st.datetimes(  # schema's text of years before 1000 does not read back (strftime's %Y)
    min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from(ZONES)
)


@given(st.lists(readable, min_size=1, max_size=8))
def test_time_value_memo_matches_schema(values: list[datetime]) -> None:
    for value in values * 2:
        text = time_param(value, False)
        assert hot.read_time(text) == time_value(text)
        assert hot.read_time(text).tzinfo is UTC  # type: ignore[union-attr]
    assert hot.read_time(None) is None


# --- the level state's JSON and the events' details ---------------------------------------------------

SQLITE = hot.Sql(False)
states = st.recursive(
    st.none(),
    lambda inner: st.builds(
        LevelState,
        st.sampled_from(["base", "fan", "king"]),
        st.one_of(st.none(), readable),
        st.one_of(st.none(), readable),
        st.one_of(st.none(), st.text(max_size=5)),
        inner,
    ),
    max_leaves=4,
)


@given(st.lists(states, min_size=1, max_size=6))
def test_previous_level_text_is_json_dumps(values: list[LevelState | None]) -> None:
    for value in values * 2:
        text = json.dumps(hot.level_to_json(value))
        assert hot.previous_param(SQLITE, value) == text
        assert hot.previous_state(SQLITE, text) == hot.level_from_json(json.loads(text))


def test_equal_states_in_other_zones_keep_their_own_text() -> None:
    msk = datetime(2026, 3, 1, 12, tzinfo=ZoneInfo("Europe/Moscow"))
    a = LevelState("fan", msk, msk)
    b = LevelState("fan", msk.astimezone(UTC), msk.astimezone(UTC))
    assert a == b  # the same instants
    assert hot.previous_param(SQLITE, a) == json.dumps(hot.level_to_json(a))
    assert hot.previous_param(SQLITE, b) == json.dumps(hot.level_to_json(b))
    assert hot.previous_param(SQLITE, a) != hot.previous_param(SQLITE, b)


@given(
    st.lists(
        st.dictionaries(
            st.text(max_size=4), st.one_of(st.text(max_size=6), st.integers(0, 2), st.booleans()), max_size=3
        )
    )
)
def test_detail_text_is_json_dumps(details: list[dict[str, Any]]) -> None:
    for detail in details * 2:
        assert hot.detail_param(SQLITE, detail) == json.dumps(detail)
    assert hot.detail_param(SQLITE, {"a": 1}) == '{"a": 1}'
    assert hot.detail_param(SQLITE, {"a": True}) == '{"a": true}'
