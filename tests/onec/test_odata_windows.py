"""Date windows: paging stops at a short page, adaptive splits never lose or repeat a row."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.net import RetryPolicy
from bridge.onec.odata import ODataClient
from bridge.onec.odata_windows import FetchPage, iter_pages, walk_windows

MSK = ZoneInfo("Europe/Moscow")
BASE = "http://1c.local/ut/odata/standard.odata/"
ORDERS = "Document_ЗаказКлиента"
T0 = datetime(2026, 3, 1, tzinfo=MSK)


def make_rows(dates: list[datetime]) -> list[dict[str, Any]]:
    rows = [{"Ref_Key": str(uuid.UUID(int=i + 1)), "Date": d} for i, d in enumerate(dates)]
    return sorted(rows, key=lambda r: (r["Date"], r["Ref_Key"]))


def pure_fetch(rows: list[dict[str, Any]], size: int, log: list[tuple[datetime, datetime, int]]) -> FetchPage:
    def fetch(low: datetime, high: datetime, skip: int) -> list[dict[str, Any]]:
        log.append((low, high, skip))
        inside = [r for r in rows if low <= r["Date"] < high]
        return inside[skip : skip + size]

    return fetch


def test_iter_pages_stops_at_short_page() -> None:
    rows = make_rows([T0 + timedelta(minutes=i) for i in range(5)])
    log: list[tuple[datetime, datetime, int]] = []
    pages = list(iter_pages(pure_fetch(rows, 2, log), T0, T0 + timedelta(days=1), 2))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [skip for _, _, skip in log] == [0, 2, 4]


def test_iter_pages_full_last_page_needs_one_empty_read() -> None:
    rows = make_rows([T0 + timedelta(minutes=i) for i in range(4)])
    pages = list(iter_pages(pure_fetch(rows, 2, []), T0, T0 + timedelta(days=1), 2))
    assert [len(p) for p in pages] == [2, 2, 0]


def test_walk_windows_splits_a_crowded_window_and_regrows() -> None:
    crowded = [T0 + timedelta(hours=1, seconds=i // 3) for i in range(30)]  # 3 rows per second
    sparse = [T0 + timedelta(days=d, hours=5) for d in range(1, 4)]
    rows = make_rows(crowded + sparse)
    log: list[tuple[datetime, datetime, int]] = []
    splits: list[datetime] = []
    out = list(
        walk_windows(
            pure_fetch(rows, 4, log),
            "Date",
            T0,
            T0 + timedelta(days=4),
            timedelta(days=1),
            size=4,
            max_pages=2,
            on_split=lambda at, pages: splits.append(at),
        )
    )
    assert [r["Ref_Key"] for r in out] == [r["Ref_Key"] for r in rows]  # once each, in order
    assert splits, "a window of 30 rows with 2 pages of 4 must split"
    assert max(skip for _, _, skip in log) <= 4  # never deeper than max_pages - 1 pages
    spans = [high - low for low, high, skip in log if skip == 0]
    smallest = spans.index(min(spans))
    assert spans[smallest] < timedelta(days=1)  # halved after the splits...
    assert max(spans[smallest:]) > spans[smallest]  # ...then regrown once windows are quiet again


def test_walk_windows_pages_on_when_one_second_holds_everything() -> None:
    rows = make_rows([T0 + timedelta(hours=2)] * 11)
    log: list[tuple[datetime, datetime, int]] = []
    out = list(
        walk_windows(pure_fetch(rows, 2, log), "Date", T0, T0 + timedelta(days=1), timedelta(days=1), 2, 2)
    )
    assert sorted(r["Ref_Key"] for r in out) == sorted(r["Ref_Key"] for r in rows)
    assert len(out) == 11


def test_walk_windows_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        list(walk_windows(pure_fetch([], 1, []), "Date", T0, T0, timedelta(0), 1, 1))
    with pytest.raises(ValueError):
        list(walk_windows(pure_fetch([], 1, []), "Date", T0, T0, timedelta(days=1), 1, 0))


@settings(max_examples=150, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 3 * 86400 - 1), max_size=120),
    clump=st.lists(st.integers(0, 3 * 86400 - 1), max_size=3),
    size=st.integers(1, 7),
    max_pages=st.integers(1, 4),
    window_s=st.integers(600, 4 * 86400),
)
def test_walk_windows_every_row_exactly_once(
    offsets: list[int], clump: list[int], size: int, max_pages: int, window_s: int
) -> None:
    dates = [T0 + timedelta(seconds=s) for s in offsets]
    dates += [T0 + timedelta(seconds=s) for s in clump for _ in range(size * max_pages + 1)]
    rows = make_rows(dates)
    out = list(
        walk_windows(
            pure_fetch(rows, size, []),
            "Date",
            T0,
            T0 + timedelta(days=3),
            timedelta(seconds=window_s),
            size,
            max_pages,
        )
    )
    assert [r["Ref_Key"] for r in out] == [r["Ref_Key"] for r in rows]


# ---------------------------------------------------------------- through HTTP, against a tiny fake 1C


class FakeCollection:
    """Answers ``$filter=Date ge … and Date lt …`` with ``$top``/``$skip`` over fixed rows."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = sorted(rows, key=lambda r: (r["Date"], r["Ref_Key"]))
        self.queries: list[dict[str, list[str]]] = []

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        query = parse_qs(urlsplit(request.url).query)
        self.queries.append(query)
        flt = query["$filter"][0]
        low = re.search(r"Date ge datetime'([^']+)'", flt)
        high = re.search(r"Date lt datetime'([^']+)'", flt)
        assert low and high and query["$format"] == ["json"]
        assert query["$orderby"] == ["Date,Ref_Key"]
        top, skip = int(query["$top"][0]), int(query.get("$skip", ["0"])[0])
        inside = [r for r in self.rows if low.group(1) <= r["Date"] < high.group(1)]
        page = inside[skip : skip + top]
        body = "\ufeff" + json.dumps({"odata.metadata": "x", "value": page}, ensure_ascii=False)
        return 200, {"Content-Type": "application/json;charset=utf-8"}, body


def client(**kwargs: Any) -> ODataClient:
    return ODataClient(
        BASE,
        "Администратор",
        "secret",
        MSK,
        retry_policy=RetryPolicy(max_attempts=2),
        sleep=lambda s: None,
        **kwargs,
    )


def naive_rows(count: int, start: datetime, step: timedelta) -> list[dict[str, Any]]:
    return [
        {
            "Ref_Key": str(uuid.UUID(int=i + 1)),
            "Date": (start + i * step).strftime("%Y-%m-%dT%H:%M:%S"),
            "Number": f"{i:05}",
        }
        for i in range(count)
    ]


@responses.activate
def test_iter_window_pages_until_short_page() -> None:
    fake = FakeCollection(naive_rows(7, datetime(2026, 3, 1, 1), timedelta(minutes=10)))
    responses.add_callback(responses.GET, re.compile(re.escape(BASE) + ".*"), callback=fake)
    c = client(page_size=3)
    got = list(c.iter_window(ORDERS, "Date", T0, T0 + timedelta(days=1)))
    assert [r["Number"] for r in got] == [f"{i:05}" for i in range(7)]
    assert got[0]["Date"] == datetime(2026, 3, 1, 1, 0, tzinfo=MSK)
    assert c.requests_made == 3
    assert [q.get("$skip") for q in fake.queries] == [None, ["3"], ["6"]]
    assert all(q["$top"] == ["3"] for q in fake.queries)


@responses.activate
def test_iter_window_is_lazy() -> None:
    fake = FakeCollection(naive_rows(10, datetime(2026, 3, 1, 1), timedelta(minutes=1)))
    responses.add_callback(responses.GET, re.compile(re.escape(BASE) + ".*"), callback=fake)
    c = client(page_size=2)
    rows = c.iter_window(ORDERS, "Date", T0, T0 + timedelta(days=1))
    assert c.requests_made == 0
    next(rows)
    assert c.requests_made == 1


@responses.activate
def test_iter_windows_walks_consecutive_windows_and_splits() -> None:
    busy = naive_rows(12, datetime(2026, 3, 2, 9), timedelta(seconds=1))
    quiet = [
        {"Ref_Key": str(uuid.UUID(int=100 + d)), "Date": f"2026-03-0{d}T12:00:00", "Number": f"q{d}"}
        for d in (1, 3, 4)
    ]
    fake = FakeCollection(busy + quiet)
    responses.add_callback(responses.GET, re.compile(re.escape(BASE) + ".*"), callback=fake)
    c = client(page_size=3, max_window_pages=2)
    got = list(
        c.iter_windows(ORDERS, "Date", T0, T0 + timedelta(days=4), timedelta(days=1), select=["Number"])
    )
    assert sorted(r["Number"] for r in got) == sorted(r["Number"] for r in busy + quiet)
    assert len({r["Ref_Key"] for r in got}) == len(got) == 15
    assert all(q["$select"] == ["Number,Ref_Key,Date"] for q in fake.queries)
    assert max(int(q.get("$skip", ["0"])[0]) for q in fake.queries) <= 3
    bounds = [re.findall(r"datetime'([^']+)'", q["$filter"][0]) for q in fake.queries]
    assert bounds[0] == ["2026-03-01T00:00:00", "2026-03-02T00:00:00"]
    assert bounds[-1][1] == "2026-03-05T00:00:00"
    assert any(low.startswith("2026-03-02T09:00") for low, _ in bounds)  # restarted inside the busy hour
