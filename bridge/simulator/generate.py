"""Sample and generated data for the simulator.

Owns ``load_sample(store)`` (the hand-made Russian sample in ``data/sample.json``: customers,
product folders, the loyalty additional attributes, card kind, VAT rates, orders in every state),
``load_reference(store)`` (only its catalogs) and ``generate(store, customers=, orders=, seed=,
start=)``, a deterministic generator for big data sets (10 000+ orders) on top of the reference
catalogs. Amounts are ``Decimal`` throughout (``parse_float=Decimal``). Adapts to the store's
schema: ``variant="11.4"`` turns ``СтавкаНДС_Key`` into the ``СтавкаНДС`` enum, dropped fields and
attributes are left out. Must not import anything of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from typing import Any

from bridge.simulator.schema import EMPTY_GUID, PROPERTIES, UNDEFINED_TYPE
from bridge.simulator.store import ATTRIBUTES, SimStore

ORDERS = "Document_ЗаказКлиента"
PARTNERS = "Catalog_Партнеры"
PRODUCTS = "Catalog_Номенклатура"
VAT_RATES = "Catalog_СтавкиНДС"
CENT = Decimal("0.01")
REFERENCE_SETS = (
    "Catalog_ВидыКартЛояльности",
    VAT_RATES,
    "Catalog_ВидыНоменклатуры",
    "Catalog_ТоварныеКатегории",
    PRODUCTS,
    PROPERTIES,
    "ExchangePlan_ОбменСайтом",
)
VAT_ENUM_BY_DESCRIPTION = {"20%": "НДС20", "10%": "НДС10", "0%": "НДС0", "Без НДС": "БезНДС"}
FIRST_NAMES = ("Александр", "Дмитрий", "Максим", "Сергей", "Андрей", "Алексей", "Иван", "Михаил")
FIRST_NAMES_F = ("Анна", "Мария", "Елена", "Ольга", "Наталья", "Татьяна", "Ирина", "Екатерина")
LAST_NAMES = (
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
    "Алексеев",
    "Лебедев",
    "Семёнов",
    "Егоров",
)
OPEN_STATUSES = ("НеСогласован", "КОбеспечению", "КОтгрузке")


def _raw_sample() -> dict[str, Any]:
    text = resources.files("bridge.simulator").joinpath("data/sample.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text, parse_float=Decimal)
    return data


def read_sample() -> dict[str, list[dict[str, Any]]]:
    """The sample data set as stored (entity set → rows), numbers as ``Decimal``."""
    return {k: v for k, v in _raw_sample().items() if not k.startswith("_")}


def sample_prices() -> dict[str, Decimal]:
    """Retail prices (VAT included) of the sample's products, by product ``Ref_Key``."""
    return {k: Decimal(v) for k, v in _raw_sample().get("_prices", {}).items()}


def load_sample(store: SimStore) -> dict[str, list[str]]:
    """Load the whole sample into ``store`` (no exchange-plan registration); keys by entity set."""
    return _load(store, read_sample(), None)


def load_reference(store: SimStore) -> dict[str, list[str]]:
    """Load only the sample's catalogs (products, VAT, card kind, attributes, exchange node)."""
    return _load(store, read_sample(), REFERENCE_SETS)


def _load(
    store: SimStore, data: Mapping[str, list[dict[str, Any]]], only: Iterable[str] | None
) -> dict[str, list[str]]:
    schema = store.schema
    wanted = set(only) if only is not None else None
    dropped_props = {
        row["Ref_Key"] for row in data.get(PROPERTIES, []) if row["Description"] in schema.dropped_attributes
    }
    vat = _vat_enum(data)
    loaded: dict[str, list[str]] = {}
    for entity_set, rows in data.items():
        if entity_set not in schema or (wanted is not None and entity_set not in wanted):
            continue
        for row in rows:
            if entity_set == PROPERTIES and row["Ref_Key"] in dropped_props:
                continue
            adapted = adapt_row(store, entity_set, row, vat, dropped_props)
            loaded.setdefault(entity_set, []).append(store.insert(entity_set, adapted, track=False))
    return loaded


def _vat_enum(data: Mapping[str, list[dict[str, Any]]]) -> dict[str, str]:
    return {r["Ref_Key"]: VAT_ENUM_BY_DESCRIPTION.get(r["Description"], "") for r in data.get(VAT_RATES, [])}


def adapt_row(
    store: SimStore,
    entity_set: str,
    row: Mapping[str, Any],
    vat_enum: Mapping[str, str],
    dropped_props: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A sample row fitted to the store's schema (variant, dropped fields and attributes)."""
    es = store.schema[entity_set]
    out = {k: v for k, v in row.items() if es.field(k.removesuffix("_Type")) or es.table(k)}
    for table in es.tables:
        if table.name not in out:
            continue
        rows = []
        for r in out[table.name]:
            if table.name == ATTRIBUTES and r.get("Свойство_Key") in dropped_props:
                continue
            r = dict(r)
            if table.field("СтавкаНДС") and "СтавкаНДС_Key" in r:
                r["СтавкаНДС"] = vat_enum.get(r.pop("СтавкаНДС_Key"), "")
            rows.append({k: v for k, v in r.items() if table.field(k.removesuffix("_Type"))})
        out[table.name] = rows
    return out


def make_line(
    product: str,
    quantity: Any,
    price: Any,
    *,
    vat_key: str = EMPTY_GUID,
    vat_rate: Any = 20,
    manual_percent: Any = 0,
    cancelled: bool = False,
) -> dict[str, Any]:
    """An order row with prices including VAT: amounts after the manual discount, VAT extracted."""
    qty, price_d, pct = Decimal(str(quantity)), Decimal(str(price)), Decimal(str(manual_percent))
    gross = (qty * price_d).quantize(CENT)
    manual = (gross * pct / 100).quantize(CENT, ROUND_HALF_UP)
    amount = gross - manual
    rate = Decimal(str(vat_rate))
    vat = (amount * rate / (100 + rate)).quantize(CENT, ROUND_HALF_UP)
    return {
        "Номенклатура_Key": product,
        "Количество": qty,
        "Цена": price_d,
        "Сумма": amount,
        "ПроцентРучнойСкидки": pct,
        "СуммаРучнойСкидки": manual,
        "ПроцентАвтоматическойСкидки": Decimal(0),
        "СуммаАвтоматическойСкидки": Decimal(0),
        "СтавкаНДС_Key": vat_key,
        "СуммаНДС": vat,
        "СуммаСНДС": amount,
        "Отменено": cancelled,
    }


def attribute_row(prop: str, value: Any, type_name: str) -> dict[str, Any]:
    return {
        "Свойство_Key": prop,
        "Значение": value,
        "Значение_Type": type_name or UNDEFINED_TYPE,
        "ТекстоваяСтрока": "",
    }


@dataclass(slots=True)
class Generated:
    """What ``generate`` created: keys of customers and orders, oldest order first."""

    customers: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate(
    store: SimStore,
    customers: int = 100,
    orders: int = 1000,
    seed: int = 1,
    start: datetime = datetime(2025, 1, 1),
    days: int = 365,
    redeem_share: float = 0.05,
) -> Generated:
    """Deterministic bulk data: ``customers`` partners with phones and e-mails, ``orders`` orders
    spread over ``days`` from ``start`` (older ones mostly closed, the last week mostly open).

    Reference catalogs are loaded from the sample first when the store has no products.
    """
    rng = random.Random(seed)
    if store.count(PRODUCTS) == 0:
        load_reference(store)
    data = read_sample()
    vat_enum = _vat_enum(data)
    vat20 = next((r["Ref_Key"] for r in data[VAT_RATES] if r["Description"] == "20%"), EMPTY_GUID)
    products = [r for r in store.snapshot(PRODUCTS) if not r["IsFolder"]]
    prices = sample_prices()
    goods = [p for p in products if p["ТипНоменклатуры"] != "Услуга"]
    delivery = next((p for p in products if p["Description"] == "Доставка"), None)
    redeem = store.property_key("Бонусы к списанию")
    out = Generated()
    for n in range(customers):
        female = rng.random() < 0.5
        first = rng.choice(FIRST_NAMES_F if female else FIRST_NAMES)
        last = rng.choice(LAST_NAMES) + ("а" if female else "")
        phone = f"79{rng.randrange(10**9):09d}"
        row = {
            "Ref_Key": _guid(rng),
            "Code": f"ГК-{n + 1:06d}",
            "Description": f"{last} {first}",
            "Клиент": True,
            "КонтактнаяИнформация": [
                {
                    "Тип": "Телефон",
                    "Представление": f"+7 {phone[1:4]} {phone[4:7]}-{phone[7:9]}-{phone[9:]}",
                    "НомерТелефона": "+" + phone,
                    "АдресЭП": "",
                },
                {
                    "Тип": "АдресЭлектроннойПочты",
                    "Представление": f"client{n + 1}@example.ru",
                    "НомерТелефона": "",
                    "АдресЭП": f"client{n + 1}@example.ru",
                },
            ],
        }
        out.customers.append(store.insert(PARTNERS, adapt_row(store, PARTNERS, row, vat_enum), track=False))
    span = days * 86400
    stamps = sorted(rng.randrange(span) for _ in range(orders))
    recent = start + timedelta(days=days - 7)
    for n, offset in enumerate(stamps):
        date = start + timedelta(seconds=offset)
        lines = []
        for product in rng.sample(goods, k=min(len(goods), rng.randint(1, 3))):
            price = prices.get(product["Ref_Key"], Decimal(1000))
            manual = rng.choice((0, 0, 0, 5, 7, 10))
            lines.append(
                make_line(product["Ref_Key"], rng.randint(1, 2), price, vat_key=vat20, manual_percent=manual)
            )
        if delivery is not None and rng.random() < 0.3:
            lines.append(
                make_line(delivery["Ref_Key"], 1, prices.get(delivery["Ref_Key"], 500), vat_key=vat20)
            )
        if date >= recent:
            status = rng.choice((*OPEN_STATUSES, "Закрыт"))
        else:
            status = "Закрыт" if rng.random() < 0.95 else rng.choice(OPEN_STATUSES)
        extra = []
        if redeem and rng.random() < redeem_share:
            extra.append(attribute_row(redeem, Decimal(rng.choice((100, 200, 300, 500))), "Edm.Double"))
        row = {
            "Ref_Key": _guid(rng),
            "Number": f"УТ-{n + 1:08d}",
            "Date": date,
            "Posted": status != "НеСогласован",
            "DeletionMark": rng.random() < 0.005,
            "Статус": status,
            "Партнер_Key": rng.choice(out.customers) if out.customers else EMPTY_GUID,
            "СуммаДокумента": sum((ln["Сумма"] for ln in lines), Decimal(0)),
            "ЦенаВключаетНДС": True,
            "Товары": lines,
            ATTRIBUTES: extra,
        }
        out.orders.append(store.insert(ORDERS, adapt_row(store, ORDERS, row, vat_enum), track=False))
    return out
