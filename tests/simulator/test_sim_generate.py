"""Sample data and the deterministic generator (10 000 orders served page by page)."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

import requests

from bridge.simulator import SimStore, Simulator, build_schema, generate, load_sample
from bridge.simulator.generate import sample_prices

ORDERS = "Document_ЗаказКлиента"
ATTRIBUTES = (
    "Бонусы к списанию",
    "Бонусы списано",
    "Бонусы начислено",
    "Бонусы доступны с",
    "Выдать дисконтную карту",
    "Лояльность: сообщение",
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
    "Карта выдана",
)


def test_sample_contents(store: SimStore) -> None:
    for description in ATTRIBUTES:
        assert store.property_key(description), description
    products = store.rows("Catalog_Номенклатура")
    folders = {p["Description"] for p in products if p["IsFolder"]}
    assert {"Велосипеды", "Одежда", "Распродажа", "Услуги"} <= folders
    delivery = next(p for p in products if p["Description"] == "Доставка")
    assert delivery["ТипНоменклатуры"] == "Услуга"
    customers = [p for p in store.rows("Catalog_Партнеры") if p["Клиент"]]
    assert len(customers) == 8
    assert all(p["КонтактнаяИнформация"] for p in customers)
    assert [c["Description"] for c in store.rows("Catalog_ВидыКартЛояльности")] == ["Дисконтная карта"]
    statuses = {o["Статус"] for o in store.rows(ORDERS)}
    assert statuses == {"НеСогласован", "КОбеспечению", "КОтгрузке", "Закрыт"}
    line = store.rows(ORDERS)[0]["Товары"][0]
    assert isinstance(line["Сумма"], Decimal) and isinstance(line["СуммаНДС"], Decimal)
    assert all(isinstance(v, Decimal) for v in sample_prices().values())


def test_sample_on_11_4_uses_the_vat_enum() -> None:
    store = SimStore(build_schema("11.4"))
    load_sample(store)
    lines = [line for o in store.rows(ORDERS) for line in o["Товары"]]
    assert {line["СтавкаНДС"] for line in lines} == {"НДС20"}
    assert "Catalog_СтавкиНДС" not in store.schema


def test_generator_is_deterministic() -> None:
    first, second = SimStore(), SimStore()
    a = generate(first, customers=20, orders=200, seed=7, start=datetime(2025, 6, 1))
    b = generate(second, customers=20, orders=200, seed=7, start=datetime(2025, 6, 1))
    assert a.orders == b.orders and a.customers == b.customers
    assert first.rows(ORDERS) == second.rows(ORDERS)
    other = generate(SimStore(), customers=20, orders=200, seed=8, start=datetime(2025, 6, 1))
    assert other.orders != a.orders
    dates = [first.get(ORDERS, k)["Date"] for k in a.orders]
    assert dates == sorted(dates) and dates[0] >= datetime(2025, 6, 1)


def test_ten_thousand_orders_in_pages() -> None:
    store = SimStore()
    started = time.monotonic()
    made = generate(store, customers=500, orders=10_000, seed=3, start=datetime(2025, 1, 1))
    assert time.monotonic() - started < 30
    assert store.count(ORDERS) == 10_000
    with Simulator(store) as sim:
        session = requests.Session()
        session.auth = sim.auth
        url = f"{sim.odata_url}/{ORDERS}"
        seen: list[str] = []
        for skip in range(0, 10_000, 2_000):
            params = {"$format": "json", "$top": 2000, "$skip": skip, "$select": "Ref_Key,DataVersion"}
            page = session.get(url, params=params, timeout=30).json()["value"]
            assert len(page) == 2000
            seen += [r["Ref_Key"] for r in page]
        assert sorted(seen) == sorted(made.orders)
        window = {
            "$format": "json",
            "$top": 5000,
            "$filter": "Date ge datetime'2025-03-01T00:00:00' and Date lt datetime'2025-04-01T00:00:00'",
        }
        march = session.get(url, params=window, timeout=30).json()["value"]
        expected = [
            k
            for k in made.orders
            if datetime(2025, 3, 1) <= store.get(ORDERS, k)["Date"] < datetime(2025, 4, 1)
        ]
        assert len(march) == len(expected) > 500
    assert store.requests[("GET", "collection")] == 6
