"""Translating realistic UT 11 rows (Cyrillic names) into domain objects through the mapping."""

from __future__ import annotations

import copy
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from bridge.domain.model import CardStatus, OrderStatus
from bridge.errors import DocumentError
from bridge.onec.mapping import load_mapping, resolve_attributes
from bridge.onec.translate import (
    ProductIndex,
    card_from_row,
    customer_from_row,
    local_time,
    normalize_phone,
    order_from_row,
    return_from_row,
    return_sale_key,
    sale_link,
)

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
M11 = load_mapping(MAPPINGS / "ut11.yaml")
M114 = load_mapping(MAPPINGS / "ut114.yaml")
MSK = ZoneInfo("Europe/Moscow")
EMPTY = "00000000-0000-0000-0000-000000000000"


def guid(n: int, prefix: str = "0000") -> str:
    return f"{prefix}aaaa-1111-2222-3333-{n:012d}"


ORDER, PARTNER, CARD, SALE = guid(1, "0rd0"), guid(2, "0ba2"), guid(3, "ca2d"), guid(4, "5a1e")
F_BIKES, F_APPAREL, F_JACKETS, F_SALE, F_LOOP1, F_LOOP2 = (guid(i, "f01d") for i in range(1, 7))
BIKE, JACKET, SALE_TEE, DELIVERY, COURIER, PICKUP, LOOPY = (guid(i, "9e0d") for i in range(1, 8))
VAT20, VAT10 = guid(20, "0a70"), guid(10, "0a70")
GROUPS = {"Велосипеды": Decimal(1), "Одежда": Decimal("1.5"), "Распродажа": Decimal(0)}


def product(key: str, name: str, parent: str = EMPTY, *, folder: bool = False, kind: str = "Товар") -> dict:
    return {
        "Ref_Key": key,
        "Description": name,
        "Parent_Key": parent,
        "IsFolder": folder,
        "ТипНоменклатуры": "" if folder else kind,
        "ТоварнаяКатегория_Key": EMPTY,
    }


CATALOG = [
    product(F_BIKES, "Велосипеды", folder=True),
    product(F_APPAREL, "Одежда", folder=True),
    product(F_JACKETS, "Куртки", F_APPAREL, folder=True),
    product(F_SALE, "Распродажа", F_JACKETS, folder=True),
    product(F_LOOP1, "Петля 1", F_LOOP2, folder=True),
    product(F_LOOP2, "Петля 2", F_LOOP1, folder=True),
    product(BIKE, "Велосипед горный", F_BIKES),
    product(JACKET, "Куртка зимняя", F_JACKETS),
    product(SALE_TEE, "Футболка (уценка)", F_SALE),
    product(DELIVERY, "Доставка по городу", kind="Услуга"),
    product(COURIER, "Доставка курьером"),
    product(PICKUP, "Самовывоз"),
    product(LOOPY, "Товар в кольце", F_LOOP1),
]


def index(mapping: Any = M11, **kwargs: Any) -> ProductIndex:
    kwargs.setdefault("delivery_products", ["Доставка курьером", PICKUP])
    return ProductIndex.from_rows(CATALOG, mapping, GROUPS, **kwargs)


def chart(mapping: Any) -> list[dict]:
    names = sorted({d for ds in mapping.attribute_descriptions().values() for d in ds})
    return [{"Ref_Key": guid(i, "a77r"), "Description": d} for i, d in enumerate(names, 1)]


KEYS = resolve_attributes(M11, chart(M11))
KEY = {d: KEYS.key(obj, d) for (obj, d) in KEYS.keys}


def line(
    no: int, product_key: str, amount: str, *, price: str | None = None, vat: Any = VAT20, **extra: Any
) -> dict:
    row = {
        "LineNumber": str(no),
        "Номенклатура_Key": product_key,
        "Количество": Decimal(1),
        "Цена": Decimal(price or amount),
        "Сумма": Decimal(amount),
        "ПроцентРучнойСкидки": Decimal(0),
        "СуммаРучнойСкидки": Decimal(0),
        "ПроцентАвтоматическойСкидки": Decimal(0),
        "СуммаАвтоматическойСкидки": Decimal(0),
        "СтавкаНДС_Key": vat,
        "СуммаНДС": (Decimal(amount) * 20 / 120).quantize(Decimal("0.01")),
        "СуммаСНДС": Decimal(amount),
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
        "Статус": "Закрыт",
        "Партнер_Key": PARTNER,
        "КартаЛояльности_Key": EMPTY,
        "СуммаДокумента": Decimal("14700.00"),
        "ЦенаВключаетНДС": True,
        "Товары": [line(1, JACKET, "14200", price="14700"), line(2, DELIVERY, "500")],
        "ДополнительныеРеквизиты": [
            {
                "LineNumber": "1",
                "Свойство_Key": guid(99, "07e2"),
                "Значение": "Курьер",
                "Значение_Type": "Edm.String",
                "ТекстоваяСтрока": "",
            },
            {
                "LineNumber": "2",
                "Свойство_Key": KEY["Бонусы к списанию"],
                "Значение": Decimal(500),
                "Значение_Type": "Edm.Double",
                "ТекстоваяСтрока": "",
            },
        ],
    }
    row.update(fields)
    return row


def to_ut114(row: dict) -> dict:
    """The same order as a UT 11.4 base answers it: the VAT rate as an enum value."""
    row = copy.deepcopy(row)
    names = {VAT20: "НДС20", VAT10: "НДС10", EMPTY: ""}
    for r in row["Товары"]:
        r["СтавкаНДС"] = names[r.pop("СтавкаНДС_Key")]
    return row


def translate(row: dict, mapping: Any = M11, **kwargs: Any):
    return order_from_row(row, mapping, KEYS, index(mapping), MSK, **kwargs)


# --- orders ----------------------------------------------------------------------------------------


def test_closed_order_with_redeemed_points_and_delivery() -> None:
    order = translate(order_row())
    assert order.id == ORDER and order.number == "УТ-000123" and order.version == "AAAAAgAAAAA="
    assert order.date == datetime(2026, 3, 1, 12, 30, tzinfo=MSK)
    assert order.date.utcoffset().total_seconds() == 3 * 3600
    assert order.customer_id == PARTNER
    assert order.status is OrderStatus.CLOSED and order.posted and not order.deleted and order.counts
    assert order.redeem_requested == Decimal(500)
    assert order.document_total == Decimal("14700.00")
    assert order.card_number is None
    jacket, delivery = order.lines
    assert (jacket.line_no, jacket.product_id, jacket.group, jacket.delivery) == (1, JACKET, "Одежда", False)
    assert jacket.amount == Decimal(14200) and jacket.price == Decimal(14700) and jacket.quantity == 1
    assert (delivery.line_no, delivery.delivery, delivery.group) == (2, True, None)
    assert all(isinstance(v, Decimal) for v in (jacket.amount, jacket.price, jacket.quantity))


def test_same_order_from_ut11_and_ut114_shapes_is_equal() -> None:
    row = order_row()
    row["Товары"].append(line(3, BIKE, "20000", vat=VAT10))
    assert "СтавкаНДС_Key" not in to_ut114(row)["Товары"][0]
    assert translate(row, M11) == translate(to_ut114(row), M114)


@pytest.mark.parametrize("status", ["НеСогласован", "КОбеспечению", "КОтгрузке"])
def test_open_statuses(status: str) -> None:
    order = translate(order_row(Статус=status))
    assert order.status is OrderStatus.OPEN and not order.counts


def test_every_goods_row_cancelled_means_cancelled() -> None:
    row = order_row(Статус="КОтгрузке")
    row["Товары"][0]["Отменено"] = True  # the jacket; delivery rows do not count as goods
    order = translate(row)
    assert order.status is OrderStatus.CANCELLED and order.voided
    assert order.lines[0].cancelled and not order.lines[1].cancelled
    row["Товары"].append(line(3, BIKE, "20000"))
    assert translate(row).status is OrderStatus.OPEN


def test_deletion_mark_is_separate_from_status() -> None:
    order = translate(order_row(DeletionMark=True))
    assert order.status is OrderStatus.CLOSED and order.deleted and order.voided and not order.counts


def test_unknown_status_names_the_field() -> None:
    with pytest.raises(DocumentError) as caught:
        translate(order_row(Статус="Выполнен"))
    assert caught.value.field == "Статус"
    assert "«Выполнен» is not in the mapping's orders.status lists" in caught.value.reason


def bad(path: tuple, value: Any) -> dict:
    row = order_row()
    target = row
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return row


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        (bad(("Товары", 0, "Сумма"), Decimal("-5")), "Товары[1].Сумма", "negative"),
        (bad(("Товары", 0, "Сумма"), "много"), "Товары[1].Сумма", "not a number"),
        (bad(("Товары", 0, "Сумма"), Decimal("14200.005")), "Товары[1].Сумма", "more than 2 decimal"),
        (bad(("Товары", 1, "Количество"), Decimal("1.0005")), "Товары[2].Количество", "more than 3 decimal"),
        (bad(("Товары", 0, "Цена"), True), "Товары[1].Цена", "not a number"),
        (bad(("СуммаДокумента",), "NaN"), "СуммаДокумента", "not a number"),
        (bad(("Date",), "0001-01-01T00:00:00"), "Date", "is empty (0001-01-01)"),
        (bad(("Date",), "вчера"), "Date", "not a date"),
        (bad(("Партнер_Key",), EMPTY), "Партнер_Key", "neither a partner nor a card"),
        (
            bad(("Товары", 0, "Номенклатура_Key"), guid(77)),
            "Товары[1].Номенклатура_Key",
            "not in the catalog",
        ),
        (bad(("Товары", 0, "Номенклатура_Key"), EMPTY), "Товары[1].Номенклатура_Key", "names no product"),
        (bad(("ДополнительныеРеквизиты", 1, "Значение"), "пятьсот"), "«Бонусы к списанию»", "not a number"),
        (bad(("ДополнительныеРеквизиты", 1, "Значение"), Decimal(-1)), "«Бонусы к списанию»", "negative"),
    ],
)
def test_bad_data_names_document_and_field(row: dict, field: str, problem: str) -> None:
    with pytest.raises(DocumentError) as caught:
        translate(row)
    err = caught.value
    assert err.field == field
    assert problem in err.reason
    assert "УТ-000123" in err.document and ORDER in err.document
    assert err.reason.startswith(f"Заказ клиента № УТ-000123 ({ORDER}): {field}: ")


def test_normalised_row_shapes_are_accepted() -> None:
    """Rows as bridge.onec.normalize leaves them: None refs, aware times, int row numbers."""
    row = order_row(Date=datetime(2026, 3, 1, 12, 30, tzinfo=MSK), КартаЛояльности_Key=None)
    for r in row["Товары"]:
        r["LineNumber"] = int(r["LineNumber"])
    assert translate(row) == translate(order_row())


def test_absent_redeem_attribute_is_zero() -> None:
    row = order_row()
    row["ДополнительныеРеквизиты"] = row["ДополнительныеРеквизиты"][:1]
    assert translate(row).redeem_requested == 0


def test_card_named_instead_of_partner() -> None:
    row = order_row(Партнер_Key=EMPTY, КартаЛояльности_Key=CARD)
    order = translate(row, cards={CARD: "2990000000019"})
    assert order.customer_id is None and order.card_number == "2990000000019"
    with pytest.raises(DocumentError) as caught:
        translate(row, cards={})
    assert caught.value.field == "КартаЛояльности_Key"


def test_card_number_and_holder_from_mapped_attributes(tmp_path: Path) -> None:
    data = yaml.safe_load((MAPPINGS / "ut11.yaml").read_text(encoding="utf-8"))
    data["orders"]["read"]["card_number"] = {"attribute": "Номер карты", "type": "string"}
    data["orders"]["read"]["card_holder_name"] = {"attribute": "Владелец карты", "type": "string"}
    path = tmp_path / "phone-orders.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    mapping = load_mapping(path)
    keys = resolve_attributes(mapping, chart(mapping))
    row = order_row(Партнер_Key=EMPTY)
    for n, (desc, value) in enumerate([("Номер карты", "2990000000019"), ("Владелец карты", " Дмитрий ")], 3):
        key = keys.key("orders", desc)
        row["ДополнительныеРеквизиты"].append(
            {"LineNumber": str(n), "Свойство_Key": key, "Значение": value, "Значение_Type": "Edm.String"}
        )
    order = order_from_row(row, mapping, keys, index(mapping), MSK)
    assert order.card_number == "2990000000019" and order.card_holder_name == "Дмитрий"


def test_local_time() -> None:
    assert local_time("0001-01-01T00:00:00", MSK) is None
    assert local_time(None, MSK) is None
    assert local_time("2026-07-31T00:00:00", MSK) == datetime(2026, 7, 31, tzinfo=MSK)
    berlin = ZoneInfo("Europe/Berlin")  # a spring-forward gap resolves deterministically
    assert local_time("2026-03-29T02:30:00", berlin).utcoffset().total_seconds() == 7200


# --- products ----------------------------------------------------------------------------------------


def test_margin_group_is_the_nearest_listed_folder() -> None:
    idx = index()
    assert idx.product(JACKET).group == "Одежда"  # Куртки (not listed) -> Одежда
    assert idx.product(SALE_TEE).group == "Распродажа"  # nearest listed wins over Одежда above
    assert idx.product(BIKE).group == "Велосипеды"
    assert idx.product(DELIVERY).group is None


def test_folder_cycle_ends_without_a_group() -> None:
    assert index().product(LOOPY).group is None


def test_delivery_by_type_and_by_config_name_or_key() -> None:
    idx = index()
    assert idx.product(DELIVERY).delivery  # ТипНоменклатуры Услуга
    assert idx.product(COURIER).delivery  # delivery_products by Description
    assert idx.product(PICKUP).delivery  # delivery_products by Ref_Key
    assert not idx.product(BIKE).delivery
    assert not index(delivery_products=[]).product(COURIER).delivery


def test_group_codes_translate_folder_names(tmp_path: Path) -> None:
    data = yaml.safe_load((MAPPINGS / "ut11.yaml").read_text(encoding="utf-8"))
    data["products"]["group_codes"] = {"Одежда": "apparel", "Велосипеды": "bikes"}
    path = tmp_path / "codes.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    idx = ProductIndex.from_rows(CATALOG, load_mapping(path), {"apparel", "bikes"})
    assert idx.product(JACKET).group == "apparel" and idx.product(BIKE).group == "bikes"


def test_group_from_category_and_from_attribute(tmp_path: Path) -> None:
    data = yaml.safe_load((MAPPINGS / "ut11.yaml").read_text(encoding="utf-8"))
    data["products"]["margin_group"] = "category"
    path = tmp_path / "cat.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    rows = copy.deepcopy(CATALOG)
    cat = guid(1, "ca70")
    next(r for r in rows if r["Ref_Key"] == BIKE)["ТоварнаяКатегория_Key"] = cat
    idx = ProductIndex.from_rows(
        rows, load_mapping(path), GROUPS, categories=[{"Ref_Key": cat, "Description": "Байки"}]
    )
    assert idx.product(BIKE).group == "Байки" and idx.product(JACKET).group is None

    data["products"]["margin_group"] = {"attribute": "Маржинальная группа"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    mapping = load_mapping(path)
    keys = resolve_attributes(mapping, chart(mapping))
    prop = keys.key("products", "Маржинальная группа")
    next(r for r in rows if r["Ref_Key"] == JACKET)["ДополнительныеРеквизиты"] = [
        {"LineNumber": "1", "Свойство_Key": prop, "Значение": "Одежда", "Значение_Type": "Edm.String"}
    ]
    idx = ProductIndex.from_rows(rows, mapping, GROUPS, keys=keys)
    assert idx.product(JACKET).group == "Одежда" and idx.product(BIKE).group is None


def test_missing_lists_unknown_products_and_parent_folders() -> None:
    idx = ProductIndex.from_rows([r for r in CATALOG if r["Ref_Key"] != F_APPAREL], M11, GROUPS)
    assert idx.missing([JACKET, guid(77)]) == {guid(77), F_APPAREL}
    idx.add([r for r in CATALOG if r["Ref_Key"] == F_APPAREL])
    assert idx.missing([JACKET]) == set()
    assert idx.product(JACKET).group == "Одежда"


# --- customers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("8 (916) 123-45-67", "+79161234567"),
        ("+7 916 123 45 67", "+79161234567"),
        ("89161234567", "+79161234567"),
        ("9161234567", "+79161234567"),
        ("+7 (916) 123-45-67 доб. 12", "+79161234567"),
        ("8-495-123-45-67", "+74951234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("123", None),
        ("нет телефона", None),
        ("", None),
        (None, None),
    ],
)
def test_phone_normalisation(text: str | None, e164: str | None) -> None:
    assert normalize_phone(text) == e164


def partner_row(contacts: list[dict]) -> dict:
    return {
        "Ref_Key": PARTNER,
        "DataVersion": "AAAAAQAAAAA=",
        "Description": "Дмитрий Петров",
        "DeletionMark": False,
        "КонтактнаяИнформация": contacts,
    }


def contact(kind: str, text: str, **extra: Any) -> dict:
    return {"Тип": kind, "Представление": text, "НомерТелефона": "", "АдресЭП": "", **extra}


def test_customer_with_phone_and_email() -> None:
    row = partner_row(
        [
            contact("Адрес", "Москва, ул. Ленина, 1"),
            contact("Телефон", "8 (495) 123-45-67"),
            contact("Телефон", "+7 916 123-45-67", НомерТелефона="+7 916 123-45-67"),
            contact("АдресЭлектроннойПочты", "dmitry@example.ru", АдресЭП="dmitry@example.ru"),
        ]
    )
    customer = customer_from_row(row, M11)
    assert customer.id == PARTNER and customer.name == "Дмитрий Петров"
    assert customer.phone == "+79161234567"  # the mobile number wins for SMS
    assert customer.email == "dmitry@example.ru"
    assert customer.version == "AAAAAQAAAAA="


def test_customer_without_valid_contacts() -> None:
    row = partner_row([contact("Телефон", "уточнить"), contact("АдресЭлектроннойПочты", "нет почты")])
    customer = customer_from_row(row, M11)
    assert customer.phone is None and customer.email is None
    assert customer_from_row(partner_row([]), M11).phone is None
    landline = customer_from_row(partner_row([contact("Телефон", "8 (495) 123-45-67")]), M11)
    assert landline.phone == "+74951234567"


# --- returns and sales -------------------------------------------------------------------------------


def return_row(**fields: Any) -> dict:
    row = {
        "Ref_Key": guid(9, "2e70"),
        "DataVersion": "AAAAAwAAAAA=",
        "Number": "УТ-000045",
        "Date": "2026-03-12T10:00:00",
        "Posted": True,
        "DeletionMark": False,
        "Партнер_Key": PARTNER,
        "ДокументРеализации": SALE,
        "ДокументРеализации_Type": "StandardODATA.Document_РеализацияТоваровУслуг",
        "Товары": [
            {"LineNumber": "1", "Номенклатура_Key": JACKET, "Количество": Decimal(1), "Сумма": Decimal(14200)}
        ],
    }
    row.update(fields)
    return row


def test_sale_link() -> None:
    sale = {
        "Ref_Key": SALE,
        "ЗаказКлиента": ORDER,
        "ЗаказКлиента_Type": "StandardODATA.Document_ЗаказКлиента",
    }
    assert sale_link(sale, M11) == (SALE, ORDER)
    other = dict(sale, ЗаказКлиента_Type="StandardODATA.Catalog_СоглашенияСКлиентами")
    assert sale_link(other, M11) == (SALE, None)
    assert sale_link(dict(sale, ЗаказКлиента=EMPTY), M11) == (SALE, None)


def test_return_resolves_its_order_through_the_sale() -> None:
    row = return_row()
    assert return_sale_key(row, M11) == SALE
    ret = return_from_row(row, M11, {SALE: ORDER}, MSK)
    assert ret.order_id == ORDER and ret.customer_id == PARTNER and ret.effective
    assert ret.date == datetime(2026, 3, 12, 10, tzinfo=MSK)
    assert [(line.product_id, line.quantity, line.amount) for line in ret.lines] == [
        (JACKET, 1, Decimal(14200))
    ]
    assert return_from_row(row, M11, {SALE: None}, MSK).order_id is None


def test_return_referencing_the_order_directly_or_nothing() -> None:
    direct = return_row(
        ДокументРеализации=ORDER, ДокументРеализации_Type="StandardODATA.Document_ЗаказКлиента"
    )
    assert return_sale_key(direct, M11) is None
    assert return_from_row(direct, M11, {}, MSK).order_id == ORDER
    nothing = return_row(ДокументРеализации=EMPTY, ДокументРеализации_Type="")
    assert return_from_row(nothing, M11, {}, MSK).order_id is None


def test_return_errors() -> None:
    with pytest.raises(DocumentError) as caught:
        return_from_row(return_row(), M11, {}, MSK)
    assert caught.value.field == "ДокументРеализации" and "УТ-000045" in caught.value.document
    row = return_row()
    row["Товары"][0]["Сумма"] = Decimal("-1")
    with pytest.raises(DocumentError) as caught:
        return_from_row(row, M11, {SALE: ORDER}, MSK)
    assert caught.value.field == "Товары[1].Сумма"


# --- cards -----------------------------------------------------------------------------------------


def card_row(**fields: Any) -> dict:
    row = {
        "Ref_Key": CARD,
        "Owner_Key": guid(1, "c1d0"),
        "Description": "2990000000019",
        "Штрихкод": "2990000000019",
        "МагнитныйКод": "",
        "Статус": "Действует",
        "Партнер_Key": PARTNER,
        "DeletionMark": False,
        "ДополнительныеРеквизиты": [],
    }
    row.update(fields)
    return row


def test_card_virtual_until_issued() -> None:
    card = card_from_row(card_row(), M11, KEYS)
    assert (card.number, card.customer_id, card.status, card.onec_id) == (
        "2990000000019",
        PARTNER,
        CardStatus.VIRTUAL,
        CARD,
    )
    issued = card_row(
        ДополнительныеРеквизиты=[
            {
                "LineNumber": "1",
                "Свойство_Key": KEY["Карта выдана"],
                "Значение": True,
                "Значение_Type": "Edm.Boolean",
            }
        ]
    )
    assert card_from_row(issued, M11, KEYS).status is CardStatus.ISSUED


def test_cards_that_cannot_serve() -> None:
    assert card_from_row(card_row(Статус="Аннулирована"), M11, KEYS) is None
    assert card_from_row(card_row(DeletionMark=True), M11, KEYS) is None
    assert card_from_row(card_row(Партнер_Key=EMPTY), M11, KEYS) is None
    assert card_from_row(card_row(Штрихкод=""), M11, KEYS) is None
    magnetic = card_from_row(card_row(Штрихкод="", МагнитныйКод="777123"), M11, KEYS)
    assert magnetic.number == "777123"
