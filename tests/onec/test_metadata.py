"""``parse_metadata`` over the simulator's EDMX (shaped like 1C's) and its ``missing`` answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import FatalHTTPError
from bridge.onec.mapping import load_mapping
from bridge.onec.metadata import parse_metadata
from bridge.simulator import build_schema
from bridge.simulator.metadata import build_metadata

MAPPING = load_mapping(Path(__file__).parents[2] / "mappings" / "ut11.yaml")
ORDERS = "Document_ЗаказКлиента"


def test_entity_sets_fields_sections_and_functions() -> None:
    md = parse_metadata(build_metadata(build_schema()))
    orders = md.get(ORDERS)
    assert orders is not None
    assert orders.fields["Ref_Key"] == "Edm.Guid" and orders.fields["Date"] == "Edm.DateTime"
    assert "Статус" in orders.fields and "Товары" not in orders.fields
    assert orders.sections["Товары"]["СуммаНДС"] == "Edm.Double"
    assert set(orders.sections["ДополнительныеРеквизиты"]) >= {"Свойство_Key", "Значение", "Значение_Type"}
    returns = md.get("Document_ВозвратТоваровОтКлиента")
    assert returns is not None and returns.has("ДокументРеализации_Type")
    assert orders.has("Товары") and orders.has("Товары.Количество") and not orders.has("Товары.Нет")
    assert {"SelectChanges", "NotifyChangesReceived"} <= md.functions
    assert "ExchangePlan_ОбменСайтом" in md


def test_the_default_mapping_matches_the_full_schema_of_both_releases() -> None:
    assert parse_metadata(build_metadata(build_schema())).missing(MAPPING.required_metadata()) == []
    ut114 = load_mapping(Path(__file__).parents[2] / "mappings" / "ut114.yaml")
    md114 = parse_metadata(build_metadata(build_schema("11.4")))
    assert md114.missing(ut114.required_metadata()) == []


def test_missing_lists_a_set_once_and_each_field() -> None:
    schema = build_schema().without(
        f"{ORDERS}.Статус", f"{ORDERS}.Товары.СуммаНДС", "Catalog_ВидыКартЛояльности"
    )
    missing = parse_metadata(build_metadata(schema)).missing(MAPPING.required_metadata())
    assert missing == [
        (ORDERS, "Статус"),
        (ORDERS, "Товары.СуммаНДС"),
        ("Catalog_ВидыКартЛояльности", None),
    ]


def test_a_whole_section_missing_lists_its_fields() -> None:
    schema = build_schema().without(f"{ORDERS}.Товары")
    missing = parse_metadata(build_metadata(schema)).missing(MAPPING.required_metadata())
    assert missing and all(s == ORDERS and n and n.startswith("Товары.") for s, n in missing)


def test_older_csdl_namespace_is_read_alike() -> None:
    body = build_metadata(build_schema()).replace(
        b"http://schemas.microsoft.com/ado/2009/11/edm", b"http://schemas.microsoft.com/ado/2008/09/edm"
    )
    assert parse_metadata(body).missing(MAPPING.required_metadata()) == []


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body><h1>404 - Not Found</h1></body></html>",
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"/>',
        b"\x00garbage",
    ],
)
def test_not_an_edmx_document(body: bytes) -> None:
    with pytest.raises(FatalHTTPError):
        parse_metadata(body)


def test_entities_are_never_resolved() -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<edmx:Edmx xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx"><edmx:DataServices>'
        b'<Schema xmlns="http://schemas.microsoft.com/ado/2009/11/edm" Namespace="S">'
        b'<EntityType Name="Catalog_X"><Property Name="Description" Type="Edm.String"/></EntityType>'
        b'<EntityContainer Name="C"><EntitySet Name="Catalog_X" EntityType="S.Catalog_X"/></EntityContainer>'
        b"</Schema></edmx:DataServices></edmx:Edmx>"
    )
    md = parse_metadata(body)
    assert md.get("Catalog_X") is not None and md.missing([("Catalog_X", "Description")]) == []
