"""A 1C user at work in the simulator: create partners and orders, change statuses, ask to redeem
points, hand out cards — the way an operator (or the site's exchange) changes a real base.

Used by ``demo`` and by the end-to-end tests. Every change goes through ``SimStore`` like a user's
«Записать» does: a new ``DataVersion``, registration on the exchange plan. Must not import anything
of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from bridge.simulator.generate import attribute_row, make_line
from bridge.simulator.schema import EMPTY_GUID
from bridge.simulator.store import SimStore

ORDERS = "Document_ЗаказКлиента"
PARTNERS = "Catalog_Партнеры"
PRODUCTS = "Catalog_Номенклатура"
CARDS = "Catalog_КартыЛояльности"
VAT_RATES = "Catalog_СтавкиНДС"
REDEEM = "Бонусы к списанию"
CARD_ISSUED = "Карта выдана"


def local(moment: datetime) -> str:
    """1C's naive wall-clock form of an aware time (the store's zone is the caller's business)."""
    return moment.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S")


class Operator:
    """Scripted 1C user actions over one ``SimStore``."""

    def __init__(self, store: SimStore) -> None:
        self.store = store

    # --- catalogs ------------------------------------------------------------------------------

    def product(self, description: str) -> str:
        for row in self.store.rows(PRODUCTS):
            if row.get("Description") == description and not row.get("IsFolder"):
                return str(row["Ref_Key"])
        raise KeyError(f"no product «{description}» in the simulator")

    def folder(self, description: str) -> str:
        for row in self.store.rows(PRODUCTS):
            if row.get("Description") == description and row.get("IsFolder"):
                return str(row["Ref_Key"])
        raise KeyError(f"no folder «{description}» in the simulator")

    def add_product(self, description: str, folder: str, *, service: bool = False) -> str:
        return self.store.insert(
            PRODUCTS,
            {
                "Description": description,
                "IsFolder": False,
                "Parent_Key": self.folder(folder),
                "ТипНоменклатуры": "Услуга" if service else "Товар",
            },
        )

    def vat_key(self, description: str = "20%") -> str:
        for row in self.store.rows(VAT_RATES):
            if row.get("Description") == description:
                return str(row["Ref_Key"])
        return EMPTY_GUID

    def partner(self, name: str, *, phone: str | None = None, email: str | None = None) -> str:
        contacts = []
        if phone:
            contacts.append({"Тип": "Телефон", "Представление": phone, "НомерТелефона": phone, "АдресЭП": ""})
        if email:
            contacts.append(
                {
                    "Тип": "АдресЭлектроннойПочты",
                    "Представление": email,
                    "НомерТелефона": "",
                    "АдресЭП": email,
                }
            )
        for i, row in enumerate(contacts, start=1):
            row["LineNumber"] = str(i)
        return self.store.insert(
            PARTNERS, {"Description": name, "Клиент": True, "КонтактнаяИнформация": contacts}
        )

    # --- orders --------------------------------------------------------------------------------

    def order(
        self,
        partner: str | None,
        items: list[tuple[str, Any, Any]],
        *,
        date: datetime,
        status: str = "КОбеспечению",
        redeem: Any = 0,
        posted: bool = True,
        card: str | None = None,
        net_of_points: bool = True,
    ) -> str:
        """A customer order: ``items`` are (product description, quantity, price).

        With ``redeem`` points and ``net_of_points``, the first row's amount is lowered by them, as
        the site does in the case study (1C shows 14 200 for a 14 700 jacket after 500 points).
        """
        vat = self.vat_key()
        lines = [make_line(self.product(name), qty, price, vat_key=vat) for name, qty, price in items]
        points = Decimal(str(redeem))
        if points and net_of_points:
            first = lines[0]
            first["Сумма"] = first["Сумма"] - points
            first["СуммаСНДС"] = first["Сумма"]
            first["СуммаНДС"] = (first["Сумма"] * 20 / 120).quantize(Decimal("0.01"))
        for i, line in enumerate(lines, start=1):
            line["LineNumber"] = str(i)
        attributes = []
        prop = self.store.property_key(REDEEM)
        if points and prop is not None:
            attributes.append(attribute_row(prop, points, "Edm.Double"))
        return self.store.insert(
            ORDERS,
            {
                "Date": local(date),
                "Posted": posted,
                "DeletionMark": False,
                "Статус": status,
                "Партнер_Key": partner or EMPTY_GUID,
                "КартаЛояльности_Key": card or EMPTY_GUID,
                "СуммаДокумента": sum((line["Сумма"] for line in lines), Decimal(0)),
                "ЦенаВключаетНДС": True,
                "Товары": lines,
                "ДополнительныеРеквизиты": attributes,
            },
        )

    def set_status(self, order: str, status: str) -> None:
        self.store.patch(ORDERS, order, {"Статус": status}, count=False)

    def close(self, order: str) -> None:
        self.set_status(order, "Закрыт")

    def reopen(self, order: str) -> None:
        self.set_status(order, "КОтгрузке")

    def cancel(self, order: str) -> None:
        """UT 11 cancels an order by cancelling every goods row."""
        row = self.store.get(ORDERS, order)
        assert row is not None
        lines = [{**line, "Отменено": True} for line in row["Товары"]]
        self.store.patch(ORDERS, order, {"Товары": lines}, count=False)

    def mark_deleted(self, order: str) -> None:
        self.store.patch(ORDERS, order, {"DeletionMark": True}, count=False)

    def set_redeem(self, order: str, points: Any) -> None:
        self.store.set_attribute(ORDERS, order, REDEEM, Decimal(str(points)))

    def edit(self, order: str) -> None:
        """A user opens the order and saves it unchanged: only the DataVersion moves."""
        self.store.touch(ORDERS, order)

    # --- cards and attributes --------------------------------------------------------------------

    def cards_of(self, partner: str) -> list[dict[str, Any]]:
        return [r for r in self.store.rows(CARDS) if r.get("Партнер_Key") == partner]

    def hand_out_card(self, card: str) -> None:
        self.store.set_attribute(CARDS, card, CARD_ISSUED, True)

    def order_attribute(self, order: str, description: str) -> Any:
        return self.store.attribute(ORDERS, order, description)

    def partner_attribute(self, partner: str, description: str) -> Any:
        return self.store.attribute(PARTNERS, partner, description)
