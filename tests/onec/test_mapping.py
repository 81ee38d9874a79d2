"""The mapping loader: both shipped mappings, extends, every error at once, attribute resolution."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from bridge.errors import ConfigError, ContractError
from bridge.onec.mapping import AttributeKeys, Mapping, load_mapping, resolve_attributes

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
UT11 = MAPPINGS / "ut11.yaml"
UT114 = MAPPINGS / "ut114.yaml"


def ut11_data() -> dict:
    return yaml.safe_load(UT11.read_text(encoding="utf-8"))


def write(tmp_path: Path, data: dict, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    return caught.value.problems


def chart_rows(mapping: Mapping, skip: tuple[str, ...] = ()) -> list[dict]:
    names = {d for descs in mapping.attribute_descriptions().values() for d in descs}
    return [
        {"Ref_Key": f"00000000-0000-0000-0000-{i:012d}", "Description": d, "DeletionMark": False}
        for i, d in enumerate(sorted(names), start=1)
        if d not in skip
    ]


# --- the shipped mappings --------------------------------------------------------------------------


def test_ut11_loads_with_onec_md_names() -> None:
    m = load_mapping(UT11)
    assert m.version == 1
    assert m.orders.entity_set == "Document_ЗаказКлиента"
    assert m.orders.status.closed == ("Закрыт",)
    assert m.orders.status.open == ("НеСогласован", "КОбеспечению", "КОтгрузке")
    assert m.orders.status.cancelled == ()
    assert m.orders.status.all_lines_cancelled is True
    assert m.orders.lines_net_of_points is True
    assert m.orders.lines.fields.cancelled == "Отменено"
    assert m.orders.lines.vat_rate.field == "СтавкаНДС_Key"
    assert m.orders.lines.vat_rate.catalog == "Catalog_СтавкиНДС"
    assert m.orders.lines.vat_rate.rate_field == "Ставка"
    assert m.products.margin_group.source == "folder"
    assert m.products.delivery_types == ("Услуга",)
    assert m.cards.fields.number == "Штрихкод"
    assert m.cards.status_values.active == "Действует"
    assert m.cards.read.issued.attribute == "Карта выдана"
    assert m.partners.contacts.phone_type == "Телефон"
    assert m.partners.contacts.email_type == "АдресЭлектроннойПочты"


def test_ut11_attribute_descriptions_match_onec_md_table() -> None:
    descs = load_mapping(UT11).attribute_descriptions()
    assert descs["orders"] == (
        "Бонусы к списанию",
        "Бонусы списано",
        "Бонусы начислено",
        "Бонусы доступны с",
        "Выдать дисконтную карту",
        "Лояльность: сообщение",
    )
    assert set(descs["partners"]) == {
        "Статус бонусной карты",
        "Бонусы всего",
        "Бонусы доступно",
        "Объем покупок",
        "Уровень клиента",
        "Скидка уровня, %",
        "Уровень действует до",
        "Сумма покупок за период",
        "До следующего уровня",
        "История уровней",
    }
    assert descs["cards"] == ("Карта выдана",)
    assert "products" not in descs  # folder margin groups need no attribute


def test_target_types() -> None:
    m = load_mapping(UT11)
    assert m.orders.read.redeem_requested.type == "number"
    assert m.orders.write.available_from.type == "date"
    assert m.orders.write.issue_card.type == "boolean"
    assert m.orders.write.message.type == "string"
    assert m.partners.write.level_valid_until.type == "date"
    assert m.partners.write.level_history.type == "string"


def test_ut114_extends_ut11_and_overrides_only_the_vat_rate() -> None:
    base, m = load_mapping(UT11), load_mapping(UT114)
    vat = m.orders.lines.vat_rate
    assert vat.field == "СтавкаНДС" and vat.catalog is None
    assert vat.values["НДС20"] == Decimal(20)
    assert vat.values["НДС10"] == Decimal(10)
    assert vat.values["БезНДС"] == Decimal(0)
    assert vat.values["НДС0"] == Decimal(0)
    assert m.extends == "ut11.yaml"
    assert m.orders.write == base.orders.write
    assert m.partners == base.partners
    assert "vat_rates" in base.entity_sets() and "vat_rates" not in m.entity_sets()


def test_entity_sets() -> None:
    sets = load_mapping(UT11).entity_sets()
    assert sets["orders"] == "Document_ЗаказКлиента"
    assert sets["returns"] == "Document_ВозвратТоваровОтКлиента"
    assert sets["sales"] == "Document_РеализацияТоваровУслуг"
    assert sets["partners"] == "Catalog_Партнеры"
    assert sets["products"] == "Catalog_Номенклатура"
    assert sets["cards"] == "Catalog_КартыЛояльности"
    assert sets["card_kinds"] == "Catalog_ВидыКартЛояльности"
    assert sets["attributes"] == "ChartOfCharacteristicTypes_ДополнительныеРеквизитыИСведения"
    assert sets["vat_rates"] == "Catalog_СтавкиНДС"


def test_required_metadata_lists_fields_and_section_fields() -> None:
    m = load_mapping(UT11)
    needed = m.required_metadata()
    assert len(needed) == len(set(needed))
    for pair in [
        ("Document_ЗаказКлиента", "Статус"),
        ("Document_ЗаказКлиента", "Товары.Отменено"),
        ("Document_ЗаказКлиента", "Товары.СтавкаНДС_Key"),
        ("Document_ЗаказКлиента", "ДополнительныеРеквизиты.Свойство_Key"),
        ("Document_ВозвратТоваровОтКлиента", "ДокументРеализации_Type"),
        ("Document_РеализацияТоваровУслуг", "ЗаказКлиента_Type"),
        ("Catalog_Партнеры", "КонтактнаяИнформация.НомерТелефона"),
        ("Catalog_Номенклатура", "Parent_Key"),
        ("Catalog_КартыЛояльности", "Штрихкод"),
        ("Catalog_КартыЛояльности", "ДополнительныеРеквизиты.Значение"),
        ("Catalog_СтавкиНДС", "Ставка"),
        ("ChartOfCharacteristicTypes_ДополнительныеРеквизитыИСведения", "Description"),
    ]:
        assert pair in needed
    # products need no attribute section with folder groups; 11.4 needs the enum, not the catalog
    assert ("Catalog_Номенклатура", "ДополнительныеРеквизиты.Свойство_Key") not in needed
    needed114 = load_mapping(UT114).required_metadata()
    assert ("Document_ЗаказКлиента", "Товары.СтавкаНДС") in needed114
    assert not any(s == "Catalog_СтавкиНДС" for s, _ in needed114)


def test_select_fields_takes_sections_whole() -> None:
    m = load_mapping(UT11)
    select = m.select_fields("orders")
    assert select[0] == "Ref_Key"
    assert {"DataVersion", "Статус", "Партнер_Key", "Товары", "ДополнительныеРеквизиты"} <= set(select)
    assert not any("." in name for name in select)
    assert "КонтактнаяИнформация" in m.select_fields("partners")
    assert "ДополнительныеРеквизиты" not in m.select_fields("products")
    assert m.select_fields("card_kinds") == ("Ref_Key", "Description")
    with pytest.raises(KeyError):
        m.select_fields("nothing")


def test_mapping_is_frozen() -> None:
    m = load_mapping(UT11)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error
        m.orders.entity_set = "Document_X"  # type: ignore[misc]


# --- errors, all at once -----------------------------------------------------------------------


def test_every_problem_reported_at_once_with_file_and_key_path(tmp_path: Path) -> None:
    data = ut11_data()
    data["orders"]["entity_sett"] = "typo"  # unknown key
    del data["orders"]["fields"]["customer"]  # missing required key
    data["orders"]["write"]["points_spent"] = {"type": "number"}  # neither field nor attribute
    data["partners"]["write"]["volume"] = {"field": "Объем", "attribute": "Объем", "type": "number"}
    data["orders"]["write"]["message"] = {"attribute": "Сообщение", "type": "text"}  # bad type
    data["orders"]["lines_net_of_points"] = "maybe"  # bad value
    data["cards"]["read"]["issued"] = {"attribute": "Карта выдана", "type": "string"}  # wrong type
    del data["partners"]["write"]["level_history"]  # a target missing entirely
    path = write(tmp_path, data)
    found = problems(path)
    text = "\n".join(found)
    assert len(found) == 8, text
    assert all(line.startswith(f"{path}: ") for line in found)
    assert "orders.entity_sett: unknown key" in text and "expected one of: entity_set" in text
    assert "orders.fields.customer: required key is missing" in text
    assert "orders.write.points_spent: a target is {field: Name" in text
    assert "partners.write.volume: a target is" in text
    assert "orders.write.message.type: bad value 'text'" in text
    assert "orders.lines_net_of_points: bad value 'maybe'" in text
    assert "cards.read: issued holds a boolean: set its type to boolean" in text
    assert "partners.write.level_history: required key is missing" in text


def test_status_value_in_two_lists(tmp_path: Path) -> None:
    data = ut11_data()
    data["orders"]["status"]["open"].append("Закрыт")
    (line,) = problems(write(tmp_path, data))
    assert "orders.status: «Закрыт» is listed under both closed and open: keep one" in line


def test_bad_margin_group_and_vat_source(tmp_path: Path) -> None:
    data = ut11_data()
    data["products"]["margin_group"] = "brand"
    data["orders"]["lines"]["vat_rate"]["values"] = {"НДС20": 20}  # both catalog and values
    found = problems(write(tmp_path, data))
    text = "\n".join(found)
    assert len(found) == 2, text
    assert "products.margin_group: write folder, category or {attribute:" in text
    assert "orders.lines.vat_rate: give either catalog + rate_field" in text


def test_unsupported_version_and_empty_names(tmp_path: Path) -> None:
    data = ut11_data()
    data["version"] = 2
    data["orders"]["entity_set"] = "  "
    text = "\n".join(problems(write(tmp_path, data)))
    assert "version: version 2 is not supported" in text
    assert "orders.entity_set: bad value" in text


def test_margin_group_attribute_and_category_forms(tmp_path: Path) -> None:
    data = ut11_data()
    data["products"]["margin_group"] = {"attribute": "Маржинальная группа"}
    m = load_mapping(write(tmp_path, data))
    assert m.products.margin_group.source == "attribute"
    assert m.attribute_descriptions()["products"] == ("Маржинальная группа",)
    assert "ДополнительныеРеквизиты" in m.select_fields("products")
    data["products"]["margin_group"] = "category"
    m = load_mapping(write(tmp_path, data))
    assert m.entity_sets()["categories"] == "Catalog_ТоварныеКатегории"
    del data["products"]["categories"]
    assert "margin_group: category needs" in problems(write(tmp_path, data))[0]


def test_null_target_switches_it_off(tmp_path: Path) -> None:
    data = ut11_data()
    data["partners"]["write"]["level_history"] = None
    m = load_mapping(write(tmp_path, data))
    assert "История уровней" not in m.attribute_descriptions()["partners"]


def test_field_target_is_a_required_field(tmp_path: Path) -> None:
    data = ut11_data()
    data["orders"]["write"]["points_earned"] = {"field": "БонусыНачислено", "type": "number"}
    m = load_mapping(write(tmp_path, data))
    assert ("Document_ЗаказКлиента", "БонусыНачислено") in m.required_metadata()
    assert "Бонусы начислено" not in m.attribute_descriptions()["orders"]


def test_extends_errors_name_the_file_that_holds_the_key(tmp_path: Path) -> None:
    write(tmp_path, ut11_data(), "base.yaml")
    child = write(tmp_path, {"version": 1, "extends": "base.yaml", "orders": {"statuss": {}}}, "child.yaml")
    (line,) = problems(child)
    assert line.startswith(f"{child}: orders.statuss: unknown key")
    data = ut11_data()
    data["cards"]["title"] = ""
    write(tmp_path, data, "base.yaml")
    child = write(tmp_path, {"version": 1, "extends": "base.yaml"}, "child.yaml")
    (line,) = problems(child)
    assert line.startswith(f"{tmp_path / 'base.yaml'}: cards.title")


def test_extends_merges_nested_keys_and_replaces_lists(tmp_path: Path) -> None:
    write(tmp_path, ut11_data(), "base.yaml")
    child = {"version": 1, "extends": "base.yaml", "orders": {"status": {"closed": ["Выполнен"]}}}
    m = load_mapping(write(tmp_path, child, "child.yaml"))
    assert m.orders.status.closed == ("Выполнен",)
    assert m.orders.status.open == ("НеСогласован", "КОбеспечению", "КОтгрузке")
    assert m.orders.status.field == "Статус"


def test_extends_cycle_and_missing_base(tmp_path: Path) -> None:
    write(tmp_path, {"version": 1, "extends": "b.yaml"}, "a.yaml")
    write(tmp_path, {"version": 1, "extends": "a.yaml"}, "b.yaml")
    assert "extend each other in a circle" in problems(tmp_path / "a.yaml")[0]
    write(tmp_path, {"version": 1, "extends": "nowhere.yaml"}, "c.yaml")
    assert "cannot read the mapping file" in problems(tmp_path / "c.yaml")[0]


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("orders: [unclosed\n", encoding="utf-8")
    assert "not valid YAML" in problems(bad)[0]
    bad.write_text("- a list\n", encoding="utf-8")
    assert "must be a YAML mapping" in problems(bad)[0]
    assert "cannot read" in problems(tmp_path / "absent.yaml")[0]


# --- attribute resolution ----------------------------------------------------------------------------


def test_resolve_attributes_finds_every_key() -> None:
    m = load_mapping(UT11)
    rows = chart_rows(m)
    keys = resolve_attributes(m, rows)
    by_desc = {r["Description"]: r["Ref_Key"] for r in rows}
    assert keys.key("orders", "Бонусы начислено") == by_desc["Бонусы начислено"]
    assert keys.key("cards", "Карта выдана") == by_desc["Карта выдана"]
    with pytest.raises(ContractError):
        AttributeKeys().key("orders", "Бонусы начислено")


def test_resolve_attributes_lists_each_missing_one_with_the_fix() -> None:
    m = load_mapping(UT11)
    rows = chart_rows(m, skip=("Бонусы начислено", "Карта выдана"))
    with pytest.raises(ContractError) as caught:
        resolve_attributes(m, rows)
    assert caught.value.missing == [
        "create the additional attribute «Бонусы начислено» (number) for Заказ клиента in 1C: "
        "НСИ и администрирование → Дополнительные реквизиты",
        "create the additional attribute «Карта выдана» (boolean) for Карта лояльности in 1C: "
        "НСИ и администрирование → Дополнительные реквизиты",
    ]


def test_resolve_attributes_title_match_deletion_mark_and_ambiguity() -> None:
    m = load_mapping(UT11)
    rows = chart_rows(m, skip=("Бонусы списано", "Объем покупок", "Бонусы всего"))
    rows += [
        # BSP names a set's attribute "Title (set)": the title still matches
        {"Ref_Key": "aaaaaaaa-0000-0000-0000-000000000001", "Description": "Бонусы списано (Заказы)"},
        {"Ref_Key": "aaaaaaaa-0000-0000-0000-000000000002", "Description": "x", "Заголовок": "Объем покупок"},
        # marked for deletion: never matches
        {
            "Ref_Key": "aaaaaaaa-0000-0000-0000-000000000003",
            "Description": "Бонусы всего",
            "DeletionMark": True,
        },
    ]
    with pytest.raises(ContractError) as caught:
        resolve_attributes(m, rows)
    assert len(caught.value.missing) == 1 and "«Бонусы всего» (number) for Партнер" in caught.value.missing[0]
    rows.append({"Ref_Key": "aaaaaaaa-0000-0000-0000-000000000004", "Description": "Бонусы всего"})
    keys = resolve_attributes(m, rows)
    assert keys.key("orders", "Бонусы списано") == "aaaaaaaa-0000-0000-0000-000000000001"
    assert keys.key("partners", "Объем покупок") == "aaaaaaaa-0000-0000-0000-000000000002"
    rows.append({"Ref_Key": "aaaaaaaa-0000-0000-0000-000000000005", "Description": "Бонусы всего"})
    with pytest.raises(ContractError) as caught:
        resolve_attributes(m, rows)
    assert "2 additional attributes are named «Бонусы всего»" in caught.value.missing[0]
