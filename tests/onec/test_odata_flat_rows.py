"""The client's shortcut for rows of plain strings (the narrow ``Ref_Key,DataVersion`` scans) gives
exactly what ``normalize_row`` gives, for every row it takes and leaves to the general path."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.onec.normalize import normalize_row
from bridge.onec.odata import ODataClient

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")  # has DST gaps and folds

dates = st.datetimes(min_value=datetime(1, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%S") + (f".{d.microsecond:06d}"[:4] if d.microsecond % 3 else "")
)
strings = st.one_of(
    dates,
    st.sampled_from(
        [
            "00000000-0000-0000-0000-000000000000",
            "0001-01-01T00:00:00",
            "2021-03-28T02:30:00",  # inside Berlin's spring-forward gap
            "2021-03-28T01:59:59",
            "2021-03-28T02:00:00",
            "2021-03-28T03:00:00",
            "2021-10-31T02:30:00",  # Berlin's autumn fold
            "2021-10-31T01:59:59",
            "2021-10-31T02:59:59",
            "2021-10-31T03:00:00",
            "1919-07-01T00:30:00",  # Moscow's odd historical offsets
            "2026-13-01T10:00:00",  # date-shaped, no date
            "2026-03-01T10:00",
            "2026-03-01T10:00:00Z",
            "2026-03-01 10:00:00",
            "١٢٣٤-٠١-٠١T00:00:00",
            "AAAAAAAAB2c=",
            "Edm.String",
            "line\x00\x07one\n\ttwo\x9f",
            "",
        ]
    ),
    st.text(max_size=24),
)
keys = st.sampled_from(
    "Ref_Key DataVersion Date Number LineNumber Значение Значение_Type odata.etag X@y".split()
)
values = st.one_of(
    strings, strings, st.none(), st.booleans(), st.decimals(allow_nan=False), st.lists(strings)
)


@settings(max_examples=500, deadline=None)
@given(row=st.dictionaries(keys, values, max_size=6), berlin=st.booleans())
def test_rows_read_the_same_through_the_shortcut(row: dict[str, Any], berlin: bool) -> None:
    tz = BERLIN if berlin else MSK
    client = ODataClient("http://1c/odata/standard.odata/", "u", "p", tz)
    try:
        expected: Any = normalize_row(row, tz)
    except ValueError as exc:  # a date-shaped text that is no date: the same error either way
        expected = type(exc)
    try:
        got: Any = client._row(row, "Document_X")
    except ValueError as exc:
        got = type(exc)
    assert got == expected
    if isinstance(got, dict):
        assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]
        assert [getattr(v, "tzinfo", None) for v in got.values()] == [
            getattr(v, "tzinfo", None) for v in expected.values()
        ]
        assert [getattr(v, "fold", None) for v in got.values()] == [
            getattr(v, "fold", None) for v in expected.values()
        ]


def test_narrow_rows_take_the_shortcut_and_others_do_not() -> None:
    client = ODataClient("http://1c/odata/standard.odata/", "u", "p", MSK)
    narrow = {"Ref_Key": "6f1c…", "DataVersion": "AAAAAAAB2c=", "Date": "2026-03-01T10:00:00"}
    assert client._flat_row(narrow) is not None
    assert client._flat_row({**narrow, "Сумма": Decimal(1)}) is None
    assert client._flat_row({**narrow, "LineNumber": "1"}) is None
    assert client._flat_row({**narrow, "Значение": "x", "Значение_Type": "Edm.String"}) is None
