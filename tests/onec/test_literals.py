"""bridge.onec.literals: the exact bytes of 1C OData URLs."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.onec.literals import (
    Cast,
    Guid,
    and_,
    cast_literal,
    datetime_literal,
    encode,
    entity_path,
    eq,
    ge,
    guid_literal,
    key_chunks,
    key_path,
    literal,
    lt,
    ne,
    not_,
    number_literal,
    or_,
    query_string,
    readable_path,
    string_literal,
)

MSK = ZoneInfo("Europe/Moscow")
KEY = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def test_cyrillic_entity_set_is_utf8_percent_encoded_six_bytes_per_letter() -> None:
    assert entity_path("Document_ЗаказКлиента") == (
        "Document_%D0%97%D0%B0%D0%BA%D0%B0%D0%B7%D0%9A%D0%BB%D0%B8%D0%B5%D0%BD%D1%82%D0%B0"
    )
    assert len(encode("Ж")) == 6


def test_key_path_keeps_parentheses_and_quotes() -> None:
    assert key_path("Catalog_Партнеры", KEY.upper()) == (
        "Catalog_%D0%9F%D0%B0%D1%80%D1%82%D0%BD%D0%B5%D1%80%D1%8B(guid'" + KEY + "')"
    )


@given(st.text(min_size=1, max_size=40).filter(lambda s: "(" not in s), st.uuids())
def test_key_path_is_the_whole_path_encoded_and_reads_back(entity_set: str, key: uuid.UUID) -> None:
    # key_path encodes only the set's name (the rest is SAFE); the bytes must be those of
    # encoding the whole path, and readable_path must give back what unquote gives.
    path = key_path(entity_set, key)
    assert path == encode(f"{entity_set}({guid_literal(key)})")
    assert readable_path(path) == unquote(path) == f"{entity_set}({guid_literal(key)})"
    assert readable_path(encode(entity_set) + "?$top=1") == unquote(encode(entity_set) + "?$top=1")


def test_guid_literal_validates_and_lowercases() -> None:
    assert guid_literal(KEY.upper()) == f"guid'{KEY}'"
    assert guid_literal(uuid.UUID(KEY)) == f"guid'{KEY}'"
    for bad in ("", "nope", KEY + "0", "{" + KEY + "}"):
        with pytest.raises(ValueError):
            guid_literal(bad)


def test_string_literal_doubles_quotes() -> None:
    assert string_literal("O'Brien") == "'O''Brien'"
    assert string_literal("''") == "''''''"
    assert eq("Description", "O'Brien").text == "Description eq 'O''Brien'"


def test_datetime_literal_from_aware_time_in_moscow() -> None:
    moment = datetime(2026, 2, 28, 21, 0, 0, tzinfo=UTC)  # 00:00 on 1 March in Moscow (UTC+3)
    assert datetime_literal(moment, MSK) == "datetime'2026-03-01T00:00:00'"
    other = datetime(2026, 3, 1, 1, 30, 15, 999_999, tzinfo=timezone(timedelta(hours=4)))
    assert datetime_literal(other, MSK) == "datetime'2026-03-01T00:30:15'"  # microseconds dropped


def test_datetime_literal_refuses_naive() -> None:
    with pytest.raises(ValueError):
        datetime_literal(datetime(2026, 3, 1), MSK)
    with pytest.raises(ValueError):
        literal(datetime(2026, 3, 1, tzinfo=UTC))  # no zone given


def test_numbers_booleans_null() -> None:
    assert number_literal(Decimal("14200.50")) == "14200.50"
    assert number_literal(Decimal("1E+3")) == "1000"
    assert number_literal(Decimal("-0")) == "0"
    assert number_literal(42) == "42"
    with pytest.raises(TypeError):
        number_literal(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        number_literal(True)
    with pytest.raises(ValueError):
        number_literal(Decimal("NaN"))
    assert literal(True) == "true" and literal(False) == "false" and literal(None) == "null"
    with pytest.raises(TypeError):
        literal(0.1)  # type: ignore[arg-type]


def test_cast_for_composite_fields() -> None:
    text = cast_literal(KEY, "Document_РеализацияТоваровУслуг")
    assert text == f"cast(guid'{KEY}','Document_РеализацияТоваровУслуг')"
    assert eq("ДокументРеализации", Cast(KEY, "Document_X")).text == (
        f"ДокументРеализации eq cast(guid'{KEY}','Document_X')"
    )
    assert eq("Ref_Key", Guid(KEY)).text == f"Ref_Key eq guid'{KEY}'"


def test_filter_chains_parenthesise_nested_chains() -> None:
    a, b, c = eq("A", 1), eq("B", 2), ne("C", "x")
    assert and_(a, b).text == "A eq 1 and B eq 2"
    assert and_(or_(a, b), c).text == "(A eq 1 or B eq 2) and C ne 'x'"
    assert or_(and_(a, b), None, c).text == "(A eq 1 and B eq 2) or C ne 'x'"
    assert (a & b | c).text == "(A eq 1 and B eq 2) or C ne 'x'"
    assert not_(a).text == "not (A eq 1)"
    assert and_(a, None, "").text == "A eq 1"
    with pytest.raises(ValueError):
        or_()


def test_query_string_exact_bytes() -> None:
    start = datetime(2026, 3, 1, tzinfo=MSK)
    qs = query_string(
        select=["Ref_Key", "Статус"],
        filter=and_(ge("Date", start, MSK), lt("Date", start + timedelta(days=1), MSK)),
        orderby=["Date", "Ref_Key"],
        top=500,
        skip=1000,
    )
    assert qs == (
        "$format=json&$select=Ref_Key,%D0%A1%D1%82%D0%B0%D1%82%D1%83%D1%81"
        "&$filter=Date%20ge%20datetime'2026-03-01T00:00:00'%20and%20Date%20lt%20datetime'2026-03-02T00:00:00'"
        "&$orderby=Date,Ref_Key&$top=500&$skip=1000"
    )


def test_query_string_encodes_dangerous_characters_in_values() -> None:
    qs = query_string(filter=eq("Description", "A&B #1 + 50% / O'Neil"))
    assert qs == "$format=json&$filter=Description%20eq%20'A%26B%20%231%20%2B%2050%25%20%2F%20O''Neil'"


def test_query_string_never_combines_inlinecount_with_paging() -> None:
    assert query_string(inlinecount=True, format=None) == "$inlinecount=allpages"
    with pytest.raises(ValueError):
        query_string(top=10, inlinecount=True)
    with pytest.raises(ValueError):
        query_string(skip=10, inlinecount=True)
    with pytest.raises(ValueError):
        query_string(top=-1)
    assert query_string(format=None) == ""


def test_key_chunks_respects_budget_and_splits() -> None:
    keys = [str(uuid.UUID(int=i)) for i in range(100)]
    chunks = list(key_chunks(keys, "Ref_Key", url_budget=2000, base_len=40))
    assert [k for c in chunks for k in c.keys] == keys
    for chunk in chunks:
        assert 40 + len(encode(chunk.filter.text)) <= 2000
    # a term is 57 encoded bytes, " or " is 8: (1960 + 8) // 65 = 30 keys per chunk
    assert [len(c.keys) for c in chunks] == [30, 30, 30, 10]
    assert chunks[0].filter.text.startswith(f"Ref_Key eq guid'{keys[0]}' or Ref_Key eq guid'{keys[1]}'")


def test_key_chunks_cast_and_too_small_budget() -> None:
    (chunk,) = key_chunks([KEY], "ЗаказКлиента", entity_set="Document_ЗаказКлиента")
    assert chunk.filter.text == f"ЗаказКлиента eq cast(guid'{KEY}','Document_ЗаказКлиента')"
    with pytest.raises(ValueError):
        list(key_chunks([KEY], "Ref_Key", url_budget=50))
    assert list(key_chunks([], "Ref_Key")) == []


guids = st.uuids().map(str)


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(guids, max_size=300).flatmap(
        lambda ks: st.lists(st.sampled_from(ks), max_size=50).map(lambda dup: ks + dup) if ks else st.just(ks)
    ),
    field=st.sampled_from(["Ref_Key", "Партнер_Key", "КартаЛояльности_Key"]),
    budget=st.integers(400, 4000),
    base_len=st.integers(0, 200),
)
def test_key_chunks_property(keys: list[str], field: str, budget: int, base_len: int) -> None:
    chunks = list(key_chunks(keys, field, url_budget=budget, base_len=base_len))
    flat = [k for c in chunks for k in c.keys]
    assert sorted(flat) == sorted(set(keys))  # every key exactly once
    for chunk in chunks:
        encoded = encode(chunk.filter.text)
        assert base_len + len(encoded) <= budget
        assert unquote(encoded) == chunk.filter.text
        assert chunk.filter.text.count(" or ") == len(chunk.keys) - 1
    # greedy: no two neighbouring chunks could have been merged
    for left, right in itertools.pairwise(chunks):
        merged = encode(or_(left.filter, right.filter.text.split(" or ")[0]).text)
        assert base_len + len(merged) > budget
