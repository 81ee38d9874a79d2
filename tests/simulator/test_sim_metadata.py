"""``$metadata``: generated from the schema, shaped like 1C's (StandardODATA, RowTypes, navigation)."""

from __future__ import annotations

import requests
from lxml import etree

from bridge.simulator import SimStore, Simulator, build_schema, load_sample
from bridge.simulator.metadata import EDM, build_metadata

NS = {"edm": EDM, "edmx": "http://schemas.microsoft.com/ado/2007/06/edmx"}


def _parse(body: bytes) -> etree._Element:
    return etree.fromstring(body)


def test_metadata_over_http_lists_entity_sets(odata) -> None:
    response = odata.http.get(odata.url("$metadata"), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/xml")
    root = _parse(response.content)
    schema = root.find(".//edm:Schema", NS)
    assert schema.get("Namespace") == "StandardODATA"
    sets = {
        e.get("Name"): e.get("EntityType") for e in root.iterfind(".//edm:EntityContainer/edm:EntitySet", NS)
    }
    for name in (
        "Document_ЗаказКлиента",
        "Document_ВозвратТоваровОтКлиента",
        "Document_РеализацияТоваровУслуг",
        "Catalog_Партнеры",
        "Catalog_Номенклатура",
        "Catalog_КартыЛояльности",
        "Catalog_ВидыКартЛояльности",
        "Catalog_СтавкиНДС",
        "ChartOfCharacteristicTypes_ДополнительныеРеквизитыИСведения",
        "ExchangePlan_ОбменСайтом",
    ):
        assert sets[name] == f"StandardODATA.{name}"


def test_entity_type_rows_composites_and_navigation() -> None:
    root = _parse(build_metadata(build_schema()))
    order = root.find(".//edm:EntityType[@Name='Document_ЗаказКлиента']", NS)
    props = {p.get("Name"): p.get("Type") for p in order.iterfind("edm:Property", NS)}
    assert order.find("edm:Key/edm:PropertyRef", NS).get("Name") == "Ref_Key"
    assert props["Ref_Key"] == "Edm.Guid"
    assert props["Date"] == "Edm.DateTime"
    assert props["Статус"] == "Edm.String"
    assert props["СуммаДокумента"] == "Edm.Double"
    assert props["Товары"] == "Collection(StandardODATA.Document_ЗаказКлиента_Товары_RowType)"
    navs = {n.get("Name") for n in order.iterfind("edm:NavigationProperty", NS)}
    assert {"Партнер", "КартаЛояльности"} <= navs
    rows = root.find(".//edm:ComplexType[@Name='Document_ЗаказКлиента_Товары_RowType']", NS)
    row_props = {p.get("Name"): p.get("Type") for p in rows.iterfind("edm:Property", NS)}
    assert row_props["LineNumber"] == "Edm.Int64"
    assert row_props["СтавкаНДС_Key"] == "Edm.Guid"
    assert "ПроцентАвтоматическойСкидки" in row_props
    ret = root.find(".//edm:EntityType[@Name='Document_ВозвратТоваровОтКлиента']", NS)
    ret_props = {p.get("Name"): p.get("Type") for p in ret.iterfind("edm:Property", NS)}
    assert ret_props["ДокументРеализации"] == ret_props["ДокументРеализации_Type"] == "Edm.String"
    assoc = root.find(".//edm:Association[@Name='Document_ЗаказКлиента_Партнер']", NS)
    assert assoc is not None
    extra = root.find(".//edm:ComplexType[@Name='Catalog_Партнеры_ДополнительныеРеквизиты_RowType']", NS)
    assert {p.get("Name") for p in extra} >= {"Свойство_Key", "Значение", "Значение_Type", "ТекстоваяСтрока"}


def test_variant_11_4_has_vat_enum_on_order_rows() -> None:
    root = _parse(build_metadata(build_schema("11.4")))
    rows = root.find(".//edm:ComplexType[@Name='Document_ЗаказКлиента_Товары_RowType']", NS)
    names = {p.get("Name") for p in rows}
    assert "СтавкаНДС" in names and "СтавкаНДС_Key" not in names
    assert root.find(".//edm:EntityType[@Name='Catalog_СтавкиНДС']", NS) is None


def test_dropped_field_and_attribute_disappear() -> None:
    schema = build_schema().without(
        "Document_ЗаказКлиента.КартаЛояльности_Key",
        "Document_ЗаказКлиента.Товары.СуммаНДС",
        attributes=["Бонусы начислено"],
    )
    store = SimStore(schema)
    load_sample(store)
    with Simulator(store) as sim:
        root = _parse(requests.get(sim.odata_url + "/$metadata", auth=sim.auth, timeout=10).content)
    order = root.find(".//edm:EntityType[@Name='Document_ЗаказКлиента']", NS)
    assert "КартаЛояльности_Key" not in {p.get("Name") for p in order}
    rows = root.find(".//edm:ComplexType[@Name='Document_ЗаказКлиента_Товары_RowType']", NS)
    assert "СуммаНДС" not in {p.get("Name") for p in rows}
    assert store.property_key("Бонусы начислено") is None
    assert store.property_key("Бонусы списано") is not None
    assert all("СуммаНДС" not in line for o in store.rows("Document_ЗаказКлиента") for line in o["Товары"])
