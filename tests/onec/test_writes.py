"""Write bodies for 1C: skipped when unchanged, whole sections with other rows kept, exact types."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from bridge.domain.discounts import plan_order_discount
from bridge.domain.views import CustomerView, LevelView, OrderView, TierView
from bridge.errors import ConfigError, DocumentError
from bridge.onec.mapping import load_mapping, resolve_attributes
from bridge.onec.translate import ProductIndex, order_from_row
from bridge.onec.writes import (
    card_create_body,
    card_kind_key,
    order_attribute_patch,
    order_lines_discount_patch,
    order_vat,
    partner_attribute_patch,
    vat_rates_from_rows,
)

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
M11 = load_mapping(MAPPINGS / "ut11.yaml")
M114 = load_mapping(MAPPINGS / "ut114.yaml")
MSK = ZoneInfo("Europe/Moscow")
EMPTY = "00000000-0000-0000-0000-000000000000"
ORDER, PARTNER, JACKET, DELIVERY = (
    f"{p}aaaa-1111-2222-3333-000000000001" for p in ("0rd0", "0ba2", "9e0d", "de11")
)
OTHER_PROP = "07e2aaaa-1111-2222-3333-000000000099"
VAT20, VAT10, NO_VAT = (f"0a70aaaa-1111-2222-3333-0000000000{n}" for n in ("20", "10", "00"))


def chart(mapping: Any) -> list[dict]:
    names = sorted({d for ds in mapping.attribute_descriptions().values() for d in ds})
    return [
        {"Ref_Key": f"a77raaaa-1111-2222-3333-{i:012d}", "Description": d} for i, d in enumerate(names, 1)
    ]


KEYS = resolve_attributes(M11, chart(M11))


def key(obj: str, desc: str) -> str:
    return KEYS.key(obj, desc)


OTHER_ROW = {
    "LineNumber": "1",
    "Свойство_Key": OTHER_PROP,
    "Значение": "Курьер",
    "Значение_Type": "Edm.String",
    "ТекстоваяСтрока": "",
}


def redeem_row() -> dict:
    return {
        "LineNumber": "2",
        "Свойство_Key": key("orders", "Бонусы к списанию"),
        "Значение": Decimal(500),
        "Значение_Type": "Edm.Double",
        "ТекстоваяСтрока": "",
    }


def goods(no: int, product: str, price: str, vat: str = VAT20, **extra: Any) -> dict:
    row = {
        "LineNumber": str(no),
        "Номенклатура_Key": product,
        "Количество": Decimal(1),
        "Цена": Decimal(price),
        "Сумма": Decimal(price),
        "ПроцентРучнойСкидки": Decimal(0),
        "СуммаРучнойСкидки": Decimal(0),
        "ПроцентАвтоматическойСкидки": Decimal(0),
        "СуммаАвтоматическойСкидки": Decimal(0),
        "СтавкаНДС_Key": vat,
        "СуммаНДС": (Decimal(price) * 20 / 120).quantize(Decimal("0.01")),
        "СуммаСНДС": Decimal(price),
        "Отменено": False,
    }
    row.update(extra)
    return row


def order_row(**fields: Any) -> dict:
    row = {
        "Ref_Key": ORDER,
        "DataVersion": "AAAAAgAAAAA=",
        "Number": "УТ-000123",
        "Date": "2026-03-01T12:30:00",
        "Posted": True,
        "DeletionMark": False,
        "Статус": "КОтгрузке",
        "Партнер_Key": PARTNER,
        "КартаЛояльности_Key": EMPTY,
        "СуммаДокумента": Decimal("15200.00"),
        "ЦенаВключаетНДС": True,
        "Товары": [goods(1, JACKET, "14700"), goods(2, DELIVERY, "500")],
        "ДополнительныеРеквизиты": [dict(OTHER_ROW), redeem_row()],
    }
    row.update(fields)
    return row


def order_view(**fields: Any) -> OrderView:
    values = dict(
        order_id=ORDER,
        points_spent=Decimal(0),
        points_earned=Decimal(0),
        available_from=None,
        message="",
        issue_card=False,
    )
    values.update(fields)
    return OrderView(**values)


def applied(row: dict, patch: dict | None) -> dict:
    """1C after the PATCH: fields replaced, sections replaced whole."""
    return {**row, **(patch or {})}


def attr(patch: dict, obj: str, desc: str) -> dict | None:
    prop = key(obj, desc)
    return next((r for r in patch["ДополнительныеРеквизиты"] if r["Свойство_Key"] == prop), None)


# --- order attributes ------------------------------------------------------------------------------


def test_nothing_to_say_is_never_written() -> None:
    assert order_attribute_patch(order_row(), order_view(), M11, KEYS, MSK) is None


def test_changed_order_sends_whole_section_with_exact_types() -> None:
    row = order_row()
    view = order_view(
        points_spent=Decimal(500),
        points_earned=Decimal(639),
        available_from=datetime(2026, 3, 15, 9, 30, tzinfo=UTC),  # 12:30 in Moscow
        issue_card=True,
    )
    patch = order_attribute_patch(row, view, M11, KEYS, MSK)
    assert set(patch) == {"ДополнительныеРеквизиты"}
    rows = patch["ДополнительныеРеквизиты"]
    assert rows[0] == OTHER_ROW and rows[1] == redeem_row()  # others untouched, in place
    spent = attr(patch, "orders", "Бонусы списано")
    assert spent["Значение"] == Decimal(500) and isinstance(spent["Значение"], Decimal)
    assert spent["Значение_Type"] == "Edm.Double"
    assert attr(patch, "orders", "Бонусы начислено")["Значение"] == Decimal(639)
    available = attr(patch, "orders", "Бонусы доступны с")
    assert (available["Значение"], available["Значение_Type"]) == ("2026-03-15T12:30:00", "Edm.DateTime")
    issue = attr(patch, "orders", "Выдать дисконтную карту")
    assert issue["Значение"] is True and issue["Значение_Type"] == "Edm.Boolean"
    assert attr(patch, "orders", "Лояльность: сообщение") is None  # empty: no row
    assert [int(r["LineNumber"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    # idempotent: once 1C holds it, nothing more is sent
    assert order_attribute_patch(applied(row, patch), view, M11, KEYS, MSK) is None


def test_message_is_a_string_row_with_its_text() -> None:
    view = order_view(message="Доступно 300 бонусов, запрошено 500")
    patch = order_attribute_patch(order_row(), view, M11, KEYS, MSK)
    message = attr(patch, "orders", "Лояльность: сообщение")
    assert message["Значение"] == "Доступно 300 бонусов, запрошено 500"
    assert message["Значение_Type"] == "Edm.String"
    assert message["ТекстоваяСтрока"] == "Доступно 300 бонусов, запрошено 500"


def test_reopened_order_clears_earned_points_keeping_other_rows() -> None:
    earned = {
        "LineNumber": "3",
        "Свойство_Key": key("orders", "Бонусы начислено"),
        "Значение": Decimal(639),
        "Значение_Type": "Edm.Double",
        "ТекстоваяСтрока": "",
    }
    row = order_row()
    row["ДополнительныеРеквизиты"].append(earned)
    patch = order_attribute_patch(row, order_view(), M11, KEYS, MSK)
    assert patch["ДополнительныеРеквизиты"] == [OTHER_ROW, redeem_row()]


def test_equal_values_in_other_shapes_are_unchanged() -> None:
    row = order_row()
    row["ДополнительныеРеквизиты"] += [
        {"LineNumber": 3, "Свойство_Key": key("orders", "Бонусы начислено"), "Значение": Decimal("639.00")},
        {"LineNumber": 4, "Свойство_Key": key("orders", "Бонусы списано"), "Значение": "500"},
        # as bridge.onec.normalize leaves a date: aware
        {
            "LineNumber": 5,
            "Свойство_Key": key("orders", "Бонусы доступны с"),
            "Значение": datetime(2026, 3, 15, 12, 30, tzinfo=MSK),
        },
        {"LineNumber": 6, "Свойство_Key": key("orders", "Выдать дисконтную карту"), "Значение": "true"},
    ]
    view = order_view(
        points_spent=Decimal(500),
        points_earned=Decimal(639),
        available_from=datetime(2026, 3, 15, 12, 30, tzinfo=MSK),
        issue_card=True,
    )
    assert order_attribute_patch(row, view, M11, KEYS, MSK) is None
    patch = order_attribute_patch(row, replace(view, points_earned=Decimal(640)), M11, KEYS, MSK)
    assert attr(patch, "orders", "Бонусы начислено")["Значение"] == Decimal(640)
    assert attr(patch, "orders", "Бонусы начислено")["LineNumber"] == 3  # updated in place


def test_field_targets_are_patched_as_fields(tmp_path: Path) -> None:
    data = yaml.safe_load((MAPPINGS / "ut11.yaml").read_text(encoding="utf-8"))
    data["orders"]["write"]["points_earned"] = {"field": "БонусыНачислено", "type": "number"}
    data["orders"]["write"]["available_from"] = {"field": "БонусыДоступныС", "type": "date"}
    path = tmp_path / "fields.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    mapping = load_mapping(path)
    keys = resolve_attributes(mapping, chart(mapping))
    row = order_row(БонусыНачислено=Decimal(0), БонусыДоступныС="0001-01-01T00:00:00")
    row["ДополнительныеРеквизиты"] = [dict(OTHER_ROW)]  # keys differ under this mapping's chart
    view = order_view(points_earned=Decimal(639), available_from=datetime(2026, 3, 15, tzinfo=MSK))
    patch = order_attribute_patch(row, view, mapping, keys, MSK)
    assert patch == {"БонусыНачислено": Decimal(639), "БонусыДоступныС": "2026-03-15T00:00:00"}
    assert order_attribute_patch(applied(row, patch), view, mapping, keys, MSK) is None
    cleared = order_attribute_patch(applied(row, patch), order_view(), mapping, keys, MSK)
    assert cleared == {"БонусыНачислено": Decimal(0), "БонусыДоступныС": "0001-01-01T00:00:00"}


# --- partner attributes ----------------------------------------------------------------------------


def customer_view(**fields: Any) -> CustomerView:
    values = dict(
        customer_id=PARTNER,
        at=datetime(2026, 3, 1, 12, tzinfo=MSK),
        card_number="2990000000019",
        card_status="virtual",
        tier=TierView("gold", "Золотой"),
        volume=Decimal("40000.00"),
        total=Decimal(639),
        available=Decimal(0),
        pending=Decimal(639),
        debt=Decimal(0),
        next_available_at=None,
        next_tier=TierView("platinum", "Платиновый"),
        next_tier_missing=Decimal("60000.00"),
        level=LevelView("fan", "Фанат животных", Decimal(5)),
        valid_until=datetime(2026, 7, 31, tzinfo=MSK),
        period_sum=Decimal("11000.00"),
        next_level=LevelView("king", "Царь зверей", Decimal(10)),
        next_level_missing=Decimal("39000.00"),
        level_history_text="01.02.2026 Новичок → Фанат животных (11 000,00)\n15.03.2025 — → Новичок",
    )
    values.update(fields)
    return CustomerView(**values)


def partner_row(attrs: list[dict] | None = None) -> dict:
    return {"Ref_Key": PARTNER, "Description": "Дмитрий Петров", "ДополнительныеРеквизиты": attrs or []}


def test_partner_state_written_with_types() -> None:
    patch = partner_attribute_patch(partner_row([dict(OTHER_ROW)]), customer_view(), M11, KEYS, MSK)
    rows = patch["ДополнительныеРеквизиты"]
    assert rows[0] == OTHER_ROW
    expected = {
        "Статус бонусной карты": ("Золотой", "Edm.String"),
        "Бонусы всего": (Decimal(639), "Edm.Double"),
        "Объем покупок": (Decimal("40000.00"), "Edm.Double"),
        "Уровень клиента": ("Фанат животных", "Edm.String"),
        "Скидка уровня, %": (Decimal(5), "Edm.Double"),
        "Уровень действует до": ("2026-07-31T00:00:00", "Edm.DateTime"),
        "Сумма покупок за период": (Decimal("11000.00"), "Edm.Double"),
        "До следующего уровня": (Decimal("39000.00"), "Edm.Double"),
    }
    for desc, (value, kind) in expected.items():
        row = attr(patch, "partners", desc)
        assert (row["Значение"], row["Значение_Type"]) == (value, kind), desc
    assert attr(patch, "partners", "Бонусы доступно") is None  # 0: empty
    history = attr(patch, "partners", "История уровней")
    assert history["ТекстоваяСтрока"] == customer_view().level_history_text
    assert partner_attribute_patch(applied(partner_row(), patch), customer_view(), M11, KEYS, MSK) is None


def test_partner_without_programs_and_negative_available() -> None:
    view = customer_view(
        tier=None, level=None, valid_until=None, available=Decimal(-300), next_level_missing=None
    )
    patch = partner_attribute_patch(partner_row(), view, M11, KEYS, MSK)
    for desc in ("Статус бонусной карты", "Уровень клиента", "Скидка уровня, %", "Бонусы доступно"):
        assert attr(patch, "partners", desc) is None, desc


# --- VAT and the discount rows ---------------------------------------------------------------------


VAT_CATALOG = [
    {"Ref_Key": VAT20, "Description": "20%", "Ставка": Decimal(20)},
    {"Ref_Key": VAT10, "Description": "10%", "Ставка": Decimal(10)},
    {"Ref_Key": NO_VAT, "Description": "Без НДС", "Ставка": Decimal(0)},
]
ENUM = {VAT20: "НДС20", VAT10: "НДС10", NO_VAT: "БезНДС", EMPTY: ""}


def as_ut114(row: dict) -> dict:
    row = copy.deepcopy(row)
    for r in row["Товары"]:
        r["СтавкаНДС"] = ENUM[r.pop("СтавкаНДС_Key")]
    return row


def test_vat_rates_from_catalog_and_from_enum_agree() -> None:
    row = order_row()
    row["Товары"] += [
        goods(3, JACKET, "100", vat=VAT10),
        goods(4, JACKET, "50", vat=NO_VAT),
        goods(5, JACKET, "1", vat=EMPTY),
    ]
    rates = vat_rates_from_rows(VAT_CATALOG, M11)
    assert rates == {VAT20: 20, VAT10: 10, NO_VAT: 0}
    from_catalog = order_vat(row, M11, rates)
    from_enum = order_vat(as_ut114(row), M114)
    assert from_catalog == from_enum
    assert from_catalog.rates == {1: 20, 2: 20, 3: 10, 4: 0}  # row 5 has no rate
    assert from_catalog.price_includes_vat is True


def test_unknown_vat_rates_name_the_row() -> None:
    row = order_row()
    with pytest.raises(DocumentError) as caught:
        order_vat(row, M11, {})
    assert caught.value.field == "Товары[1].СтавкаНДС_Key"
    enum_row = as_ut114(row)
    enum_row["Товары"][1]["СтавкаНДС"] = "НДС7"
    with pytest.raises(DocumentError) as caught:
        order_vat(enum_row, M114)
    assert caught.value.field == "Товары[2].СтавкаНДС" and "«НДС7»" in caught.value.reason


def products(mapping: Any) -> ProductIndex:
    rows = [
        {
            "Ref_Key": JACKET,
            "Description": "Куртка",
            "Parent_Key": EMPTY,
            "IsFolder": False,
            "ТипНоменклатуры": "Товар",
        },
        {
            "Ref_Key": DELIVERY,
            "Description": "Доставка",
            "Parent_Key": EMPTY,
            "IsFolder": False,
            "ТипНоменклатуры": "Услуга",
        },
    ]
    return ProductIndex.from_rows(rows, mapping, {})


def test_discount_plan_written_to_goods_rows_and_total() -> None:
    row = order_row()
    order = order_from_row(row, M11, KEYS, products(M11), MSK)
    vat = order_vat(row, M11, vat_rates_from_rows(VAT_CATALOG, M11))
    plan = plan_order_discount(
        order, Decimal(5), vat_rates=vat.rates, price_includes_vat=vat.price_includes_vat
    )
    patch = order_lines_discount_patch(row, plan, M11)
    assert set(patch) == {"Товары", "СуммаДокумента"}
    jacket, delivery = patch["Товары"]
    assert jacket["ПроцентАвтоматическойСкидки"] == Decimal(5)
    assert jacket["СуммаАвтоматическойСкидки"] == Decimal("735.00")
    assert jacket["Сумма"] == jacket["СуммаСНДС"] == Decimal("13965.00")
    assert jacket["СуммаНДС"] == Decimal("2327.50")
    assert jacket["Номенклатура_Key"] == JACKET and jacket["Цена"] == Decimal(14700)  # the rest kept
    assert delivery == row["Товары"][1]  # delivery rows are not discounted
    assert patch["СуммаДокумента"] == Decimal("14465.00")
    assert all(isinstance(v, Decimal) for v in jacket.values() if not isinstance(v, str | bool))
    # once 1C holds it, nothing to write
    after = applied(row, patch)
    order = order_from_row(after, M11, KEYS, products(M11), MSK)
    plan = plan_order_discount(order, Decimal(5), vat_rates=vat.rates, price_includes_vat=True)
    assert order_lines_discount_patch(after, plan, M11) is None


@dataclass(frozen=True)
class Line:
    line_no: int
    auto_percent: Decimal
    auto_amount: Decimal
    amount: Decimal
    vat_amount: Decimal | None
    amount_with_vat: Decimal


@dataclass(frozen=True)
class Plan:
    lines: tuple[Line, ...]
    document_total: Decimal


def test_any_plan_shaped_object_works_and_stale_plans_fail() -> None:
    row = order_row()
    same = Plan((Line(1, Decimal(0), Decimal(0), Decimal(14700), None, Decimal(14700)),), Decimal("15200.00"))
    assert order_lines_discount_patch(row, same, M11) is None  # vat None: VAT sums left alone
    total_only = Plan(same.lines, Decimal("15199.99"))
    assert order_lines_discount_patch(row, total_only, M11)["СуммаДокумента"] == Decimal("15199.99")
    stale = Plan((Line(7, Decimal(5), Decimal(1), Decimal(1), None, Decimal(1)),), Decimal(1))
    with pytest.raises(DocumentError) as caught:
        order_lines_discount_patch(row, stale, M11)
    assert caught.value.field == "Товары[7]" and "УТ-000123" in caught.value.document


def test_discount_needs_the_automatic_fields(tmp_path: Path) -> None:
    data = yaml.safe_load((MAPPINGS / "ut11.yaml").read_text(encoding="utf-8"))
    data["orders"]["lines"]["fields"]["auto_percent"] = None
    path = tmp_path / "noauto.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    plan = Plan((), Decimal(0))
    with pytest.raises(ConfigError) as caught:
        order_lines_discount_patch(order_row(), plan, load_mapping(path))
    assert "auto_percent" in caught.value.problems[0]


# --- cards -----------------------------------------------------------------------------------------


def test_card_create_body() -> None:
    kind = "c1d0aaaa-1111-2222-3333-000000000001"
    assert card_create_body("2990000000019", PARTNER, kind, M11, KEYS) == {
        "Owner_Key": kind,
        "Штрихкод": "2990000000019",
        "Партнер_Key": PARTNER,
        "Статус": "Действует",
        "Description": "2990000000019",
    }


def test_card_kind_key() -> None:
    kinds = [
        {"Ref_Key": "c1d0aaaa-1111-2222-3333-000000000001", "Description": "Дисконтная карта"},
        {"Ref_Key": "c1d0aaaa-1111-2222-3333-000000000002", "Description": "Подарочный сертификат"},
    ]
    assert card_kind_key(kinds, M11, "Дисконтная карта") == "c1d0aaaa-1111-2222-3333-000000000001"
    assert card_kind_key(kinds[1:], M11, None) == "c1d0aaaa-1111-2222-3333-000000000002"
    with pytest.raises(ConfigError) as caught:
        card_kind_key(kinds, M11, None)
    assert "cards.kind: Catalog_ВидыКартЛояльности has 2 kinds" in caught.value.problems[0]
    with pytest.raises(ConfigError) as caught:
        card_kind_key(kinds, M11, "Бонусная карта")
    assert "«Бонусная карта»" in caught.value.problems[0] and "«Дисконтная карта»" in caught.value.problems[0]
