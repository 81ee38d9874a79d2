"""The date index serves a ``Date`` range exactly as visiting every row does: same bytes for every
filter, order, page and count, before and after rows are created, re-dated, patched and deleted."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.simulator.endpoints import ODataService, _orderby_keys, order_by_passes
from bridge.simulator.filters import compile_query
from bridge.simulator.store import SimStore

ORDERS = "Document_ЗаказКлиента"
START = datetime(2026, 3, 1)


def _date(minutes: int) -> str:
    return (START + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S")


def _services(store: SimStore) -> tuple[ODataService, ODataService]:
    indexed = ODataService(store, lambda: "http://sim/")
    scanning = ODataService(store, lambda: "http://sim/")
    scanning.use_indexes = False
    return indexed, scanning


def _get(service: ODataService, query: dict[str, str]) -> tuple[int, bytes]:
    reply = service.handle("GET", ORDERS, {"$format": "json", **query}, {}, b"")
    return reply.status, reply.body


def _count(service: ODataService, query: dict[str, str]) -> tuple[int, bytes]:
    reply = service.handle("GET", f"{ORDERS}/$count", query, {}, b"")
    return reply.status, reply.body


minutes = st.integers(min_value=-5, max_value=60)
ops = st.sampled_from(["ge", "gt", "le", "lt", "eq", "ne"])
term = st.one_of(
    st.tuples(ops, minutes).map(lambda t: f"Date {t[0]} datetime'{_date(t[1])}'"),
    st.tuples(ops, minutes).map(lambda t: f"datetime'{_date(t[1])}' {t[0]} Date"),
    st.sampled_from(["Posted eq true", "DeletionMark eq false", "Number ne 'УТ-00000003'"]),
)


@st.composite
def filters(draw: Any) -> str:
    terms = draw(st.lists(term, min_size=1, max_size=4))
    text = terms[0]
    for t in terms[1:]:
        joiner = draw(st.sampled_from([" and ", " and ", " or "]))
        text = f"({text}){joiner}{t}" if draw(st.booleans()) else f"{text}{joiner}{t}"
    return f"not ({text})" if draw(st.integers(0, 9)) == 0 else text


@st.composite
def queries(draw: Any) -> dict[str, str]:
    query = {"$filter": draw(filters())}
    query["$select"] = draw(st.sampled_from(["Ref_Key,DataVersion", "Ref_Key,Date,Number"]))
    query["$orderby"] = draw(st.sampled_from(["Date,Ref_Key", "Date desc", "Number", "Ref_Key desc", ""]))
    if draw(st.booleans()):
        query["$top"] = str(draw(st.integers(0, 12)))
    if draw(st.booleans()):
        query["$skip"] = str(draw(st.integers(0, 12)))
    if draw(st.integers(0, 5)) == 0:
        query["$inlinecount"] = "allpages"
    return {k: v for k, v in query.items() if v}


edits = st.lists(
    st.tuples(st.sampled_from(["create", "redate", "patch", "delete"]), st.integers(0, 10**6), minutes),
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dates=st.lists(st.one_of(minutes, st.none()), min_size=0, max_size=30),
    before=st.lists(queries(), min_size=1, max_size=4),
    changes=edits,
    after=st.lists(queries(), min_size=1, max_size=4),
)
def test_the_date_index_answers_exactly_as_the_scan(
    dates: list[int | None], before: list[dict[str, str]], changes: list[Any], after: list[dict[str, str]]
) -> None:
    store = SimStore()
    for n, minute in enumerate(dates):
        store.insert(
            ORDERS, {"Date": _date(minute) if minute is not None else None, "Posted": n % 3 != 0}, track=False
        )
    indexed, scanning = _services(store)
    for query in before:
        assert _get(indexed, query) == _get(scanning, query), query
    for action, pick, minute in changes:
        keys = [r["Ref_Key"] for r in store.snapshot(ORDERS)]
        key = keys[pick % len(keys)] if keys else None
        if action == "create" or key is None:
            store.insert(ORDERS, {"Date": _date(minute)})
        elif action == "redate":
            store.patch(ORDERS, key, {"Date": _date(minute)})
        elif action == "patch":
            store.patch(ORDERS, key, {"Posted": True})
        else:
            store.delete(ORDERS, key)
    for query in after:
        assert _get(indexed, query) == _get(scanning, query), query
        counted = {"$filter": query["$filter"]}
        assert _count(indexed, counted) == _count(scanning, counted)


def test_a_date_window_visits_only_the_rows_of_its_range(monkeypatch: pytest.MonkeyPatch) -> None:
    store = SimStore()
    for minute in range(100):
        store.insert(ORDERS, {"Date": _date(minute)}, track=False)
    indexed, _ = _services(store)
    monkeypatch.setattr(store, "snapshot", lambda name: pytest.fail("visited every row"))
    window = f"Date ge datetime'{_date(10)}' and Date lt datetime'{_date(20)}'"
    status, body = _count(indexed, {"$filter": window})
    assert (status, body) == (200, b"10")


@pytest.mark.parametrize(
    ("expression", "ranges"),
    [
        (
            "Date ge datetime'2026-03-01T00:00:00' and Date lt datetime'2026-03-02T00:00:00'",
            {"Date": (datetime(2026, 3, 1), datetime(2026, 3, 2))},
        ),
        (
            "(Date gt datetime'2026-03-01T00:00:00' and Posted eq true)"
            " and datetime'2026-03-05T00:00:00' ge Date",
            {"Date": (datetime(2026, 3, 1), datetime(2026, 3, 5))},
        ),
        ("Date eq datetime'2026-03-01T00:00:00'", {"Date": (datetime(2026, 3, 1), datetime(2026, 3, 1))}),
        ("Date ge datetime'2026-03-01T00:00:00' or Posted eq true", {}),
        ("not (Date ge datetime'2026-03-01T00:00:00')", {}),
        ("Date ne datetime'2026-03-01T00:00:00'", {}),
        (
            "Date gt datetime'2026-03-01T00:00:00' and Date ge datetime'2026-03-01T00:00:00'",
            {"Date": (datetime(2026, 3, 1), None)},
        ),
        ("Posted eq true", {}),
    ],
)
def test_ranges_come_only_from_the_top_level_and_chain(expression: str, ranges: dict[str, Any]) -> None:
    es = SimStore().schema[ORDERS]
    assert compile_query(expression, es).ranges == ranges


orderings = st.lists(
    st.tuples(
        st.sampled_from(["Date", "Number", "Ref_Key", "Posted"]), st.sampled_from(["", " asc", " desc"])
    ),
    max_size=3,
).map(lambda keys: ",".join(name + way for name, way in keys))


@settings(max_examples=200, deadline=None)
@given(dates=st.lists(st.integers(0, 5), max_size=25), orderby=orderings)
def test_one_sort_orders_as_the_stable_sorts_do(dates: list[int], orderby: str) -> None:
    store = SimStore()
    for n, minute in enumerate(dates):
        store.insert(
            ORDERS, {"Date": _date(minute), "Number": f"N{n % 4}", "Posted": n % 3 == 0}, track=False
        )
    service, _ = _services(store)
    es = store.schema[ORDERS]
    rows = store.snapshot(ORDERS)
    expected = list(rows)
    order_by_passes(expected, _orderby_keys(es, orderby), store.order_hash)
    service._order(es, rows, orderby)
    assert [r["Ref_Key"] for r in rows] == [r["Ref_Key"] for r in expected]


def test_a_filter_of_date_bounds_alone_is_a_window() -> None:
    es = SimStore().schema[ORDERS]
    both = "Date gt datetime'2026-03-01T00:00:00' and Date lt datetime'2026-03-02T00:00:00'"
    window = compile_query(both, es).window
    assert window is not None and (window.field, window.low_strict, window.high_strict) == (
        "Date",
        True,
        True,
    )
    assert compile_query(both + " and Posted eq true", es).window is None
    assert compile_query(f"not ({both})", es).window is None
