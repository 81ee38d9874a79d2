"""Paging inside date windows, and walking adaptive windows — the algorithm, without HTTP.

1C has no server-side paging and deep ``$skip`` gets slower with depth, so collection reads page
with ``$top``/``$skip`` inside ``[low, high)`` date windows ordered by the date field then
``Ref_Key``. :func:`walk_windows` splits a window that is still going after ``max_pages`` full
pages: it restarts at the date of the last row read (``Ref_Key gt guid'…'`` fails in 1C, so the
rows of that second already yielded are skipped by key) and halves the following windows; a window
that fits in one page doubles the length again, up to the configured one. If every row read so far
shares the window's first second there is nothing to split on and paging simply goes on.

Memory stays bounded: one page plus the keys of one second. Pure over a ``fetch`` callable; must not
import requests, bridge.store, bridge.site or bridge.service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

__all__ = ["FetchPage", "iter_pages", "walk_windows"]

#: ``fetch(low, high, skip) -> rows``: one ``$top=size`` page of the window ``[low, high)``.
FetchPage = Callable[[datetime, datetime, int], list[dict[str, Any]]]

_SECOND = timedelta(seconds=1)


def iter_pages(fetch: FetchPage, low: datetime, high: datetime, size: int) -> Iterator[list[dict[str, Any]]]:
    """Yield the pages of one window, stopping after the first short page."""
    skip = 0
    while True:
        rows = fetch(low, high, skip)
        yield rows
        if len(rows) < size:
            return
        skip += size


def walk_windows(
    fetch: FetchPage,
    date_field: str,
    start: datetime,
    end: datetime,
    window: timedelta,
    size: int,
    max_pages: int,
    on_split: Callable[[datetime, int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield every row of ``[start, end)`` through consecutive, adaptive windows.

    Args:
        fetch: reads one page (see :data:`FetchPage`); rows carry ``Ref_Key`` and ``date_field``
            as aware datetimes.
        date_field: the field the windows are on (``Date``).
        start: aware start (floored to the second: 1C stores whole seconds).
        end: aware end, exclusive (ceiled to the second).
        window: the largest window length.
        size: the page size (``$top``).
        max_pages: full pages after which a window is split.
        on_split: called as ``on_split(restart_at, pages)`` (logging).
    """
    if window <= timedelta(0):
        raise ValueError("window must be positive")
    if max_pages < 1:
        raise ValueError("max_pages must be >= 1")
    span = window
    low = start.replace(microsecond=0)
    high = end if end.microsecond == 0 else end.replace(microsecond=0) + _SECOND
    boundary: set[str] = set()  # keys at `low` already yielded before a split
    while low < high:
        stop = min(low + span, high)
        pages = 0
        exhausted = False
        last_date: Any = None
        at_last: set[str] = set()
        for rows in iter_pages(fetch, low, stop, size):
            pages += 1
            for row in rows:
                key, when = str(row.get("Ref_Key")), row.get(date_field)
                if boundary and when == low and key in boundary:
                    continue
                if when != last_date:
                    last_date, at_last = when, set()
                at_last.add(key)
                yield row
            if len(rows) < size:
                exhausted = True
                break
            if pages >= max_pages and isinstance(last_date, datetime) and last_date > low:
                break
        if exhausted:
            low, boundary = stop, set()
            if pages <= 1 and span < window:
                span = min(span * 2, window)
            continue
        assert isinstance(last_date, datetime)
        if on_split is not None:
            on_split(last_date, pages)
        low, boundary = last_date, at_last
        span = max(span / 2, _SECOND)
