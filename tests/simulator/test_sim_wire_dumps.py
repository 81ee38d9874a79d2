"""``wire.dumps`` writes exactly what ``json.dumps(…, ensure_ascii=False)`` per value wrote."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.simulator.wire import _number, dumps, format_date


def reference(obj: Any) -> str:
    if isinstance(obj, Decimal):
        return _number(obj)
    if isinstance(obj, datetime):
        return json.dumps(format_date(obj))
    if isinstance(obj, Mapping):
        items = (json.dumps(str(k), ensure_ascii=False) + ":" + reference(v) for k, v in obj.items())
        return "{" + ",".join(items) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(reference(v) for v in obj) + "]"
    return json.dumps(obj, ensure_ascii=False)


scalars = st.one_of(
    st.text(),
    st.sampled_from(['Заказ "№1"\n\t\\', "\x00\x1f\u2028", "ё"]),
    st.integers(),
    st.booleans(),
    st.none(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_dumps_writes_what_it_always_wrote(obj: Any) -> None:
    assert dumps(obj) == reference(obj)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.none() | st.timezones()))
def test_dates_are_written_as_they_always_were(value: datetime) -> None:
    old = value.strftime("%Y-%m-%dT%H:%M:%S") if value.year >= 1000 else "0001-01-01T00:00:00"
    assert format_date(value) == old
