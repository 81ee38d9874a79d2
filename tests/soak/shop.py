"""A bicycle shop's 1C at work, shift by shift, for the soak test (``test_year``).

Owns ``Shop``: the changes 1C's users and the site make to the simulator between two cycles —
orders opened and closed a few days later, some cancelled or marked for deletion, closed ones
reopened and closed again, corrected (a price changed after closing), partly returned (a sale and a
customer return referencing it; now and then the return is marked for deletion), points asked for
on new orders out of what the site last showed the customer, loyalty cards handed out. Every
choice comes from one seeded ``random.Random``: a run is reproducible from its seed.

Two rules keep the oracle (``tests/soak/oracle.py``) free of the bridge's reading order:
* a customer changes at most one document per shift, so no two documents the bridge reads in one
  cycle belong to one customer;
* closed orders change only within ``RECENT_DAYS`` of their last close, inside ``poll.track_days``,
  so the bridge sees every change at the very next cycle.

Must not import anything of the bridge but the simulator (it plays 1C's users, not the bridge).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bridge.simulator.operator import ORDERS, Operator, local
from bridge.simulator.site import SiteReceiver

SALES = "Document_РеализацияТоваровУслуг"
RETURNS = "Document_ВозвратТоваровОтКлиента"
CARD_ISSUED = "Карта выдана"

#: (product, price, weight in a basket): bikes are rare, accessories and sale items common.
GOODS: tuple[tuple[str, int, int], ...] = (
    ("Велосипед горный Stels Navigator 700 MD 27.5", 32000, 1),
    ("Велосипед городской Forward Dortmund 28 2.0", 20000, 2),
    ("Велосипед детский Novatrack Astra 16", 8900, 2),
    ("Куртка велосипедная Gore Wear C5 Gore-Tex", 14700, 3),
    ("Велоперчатки Author Comfort", 1500, 6),
    ("Джерси Castelli Competizione", 5200, 5),
    ("Шлем Cigna WT-015 (уценка)", 1800, 4),
    ("Фляга Zefal 750 мл (уценка)", 350, 6),
)
SERVICES: tuple[tuple[str, int], ...] = (("Доставка", 500), ("Сборка велосипеда", 1500))
RECENT_DAYS = 20  # closed orders change only this long after their last close (< poll.track_days)
CENT = Decimal("0.01")

# Chances per shift (a second, shorter shift the same day scales them by its share).
NEW_ORDER = 0.06  # per customer, times the customer's appetite
CANCEL_OPEN = 0.1  # of new orders: cancelled (a third of them marked for deletion) instead of closed
REOPEN, EDIT, CANCEL_CLOSED, RETURN = 0.004, 0.006, 0.005, 0.01  # per recently closed order
UNDO_RETURN = 0.04  # per return younger than a week: marked for deletion
HAND_OUT = 0.12  # per card not handed out yet
ASK_POINTS, ASK_TOO_MANY = 0.5, 0.2  # of new orders by a customer the site shows points to


@dataclass
class Purchase:
    """An order as the shop knows it (1C holds the truth; this is what the shop plans with)."""

    key: str
    customer: str
    close_on: int  # the day it is to close (or be cancelled, ``fate``)
    points: Decimal  # taken off the first row by the site (``lines_net_of_points``)
    fate: str = "close"  # close | cancel | delete
    state: str = "open"  # open | closed | gone (cancelled or deleted)
    closed_on: int | None = None  # the day of its latest close
    returns: list[tuple[str, int]] = field(default_factory=list)  # (return key, day)


class Shop:
    """One store's customers and their orders in the simulator ``op`` works on."""

    def __init__(self, op: Operator, site: SiteReceiver, rng: random.Random, customers: int) -> None:
        self.op, self.site, self.rng = op, site, rng
        self.customers = [
            op.partner(f"Покупатель {n + 1:03d}", phone=f"+7916{n:07d}", email=f"buyer{n + 1}@example.ru")
            for n in range(customers)
        ]
        # Some customers buy every other week, some twice a year: tiers and levels of every kind.
        self.appetite = {c: rng.choice((0.3, 0.6, 1.0, 1.0, 2.0, 4.0)) for c in self.customers}
        self.purchases: dict[str, Purchase] = {}
        self.active: list[Purchase] = []  # open, or closed within RECENT_DAYS
        self.done: Counter[str] = Counter()  # what the shop did over the run (the report)
        self._handed: set[str] = set()

    def shift(self, day: int, at: datetime, share: float = 1.0) -> None:
        """The changes made before the cycle at ``at`` (documents dated 20 minutes before it)."""
        stamp = at - timedelta(minutes=20)
        busy: set[str] = set()
        for p in list(self.active):
            if p.customer not in busy and self._step(p, day, stamp, share):
                busy.add(p.customer)
        self.active = [
            p
            for p in self.active
            if p.state == "open" or (p.state == "closed" and day - (p.closed_on or day) <= RECENT_DAYS)
        ]
        for c in self.customers:
            if c in busy or self.rng.random() >= NEW_ORDER * self.appetite[c] * share:
                continue
            self._new_order(c, day, stamp)
            busy.add(c)
        self._hand_out_cards(busy, share)

    def points_on(self, order: str) -> Decimal:
        """The points the site took off the order's first row (0 for an order not the shop's)."""
        purchase = self.purchases.get(order)
        return purchase.points if purchase is not None else Decimal(0)

    # --- one order -------------------------------------------------------------------------------

    def _step(self, p: Purchase, day: int, stamp: datetime, share: float) -> bool:
        rng = self.rng
        if p.state == "open":
            if day < p.close_on:
                return False
            if p.fate == "close":
                self.op.close(p.key)
                p.state, p.closed_on = "closed", day
            else:
                (self.op.mark_deleted if p.fate == "delete" else self.op.cancel)(p.key)
                p.state = "gone"
            self.done[p.fate] += 1
            return True
        if p.state != "closed":
            return False
        fresh = [(key, when) for key, when in p.returns if day - when <= 7]
        if fresh and rng.random() < UNDO_RETURN * share:
            key, _ = rng.choice(fresh)
            self.op.store.patch(RETURNS, key, {"DeletionMark": True}, count=False)
            p.returns = [r for r in p.returns if r[0] != key]
            self.done["return deleted"] += 1
            return True
        roll = rng.random() / share
        if roll < REOPEN:
            self.op.reopen(p.key)
            p.state, p.close_on = "open", day + rng.randint(1, 3)
            p.fate = "cancel" if rng.random() < 0.2 else "close"
            self.done["reopen"] += 1
            return True
        roll -= REOPEN
        if roll < EDIT:
            return self._edit(p)
        roll -= EDIT
        if roll < CANCEL_CLOSED:
            self.op.cancel(p.key)
            p.state = "gone"
            self.done["cancel closed"] += 1
            return True
        roll -= CANCEL_CLOSED
        if roll < RETURN and len(p.returns) < 2:
            return self._return(p, day, stamp)
        return False

    def _new_order(self, customer: str, day: int, stamp: datetime) -> None:
        rng = self.rng
        names = [g[0] for g in GOODS]
        picked = rng.sample(names, k=rng.choice((1, 1, 1, 2, 2, 3)))
        prices = {g[0]: g[1] for g in GOODS}
        weights = {g[0]: g[2] for g in GOODS}
        picked.sort(key=lambda name: -weights[name])  # deterministic row order for the draw
        items: list[tuple[str, Any, Any]] = [
            (name, rng.choice((1, 1, 1, 2)), prices[name]) for name in picked
        ]
        if rng.random() < 0.25:
            items.append(_service(rng))
        first = Decimal(items[0][1]) * Decimal(items[0][2])
        points = self._points_to_ask(customer, first)
        key = self.op.order(customer, items, date=stamp, redeem=points)
        if rng.random() < 0.15:  # a promotion on one row: the larger of it and the level wins
            self._manual_discount(key, rng.choice((5, 7, 10)))
        roll = rng.random()
        fate = "close" if roll >= CANCEL_OPEN else ("delete" if roll < CANCEL_OPEN / 3 else "cancel")
        purchase = Purchase(key, customer, day + rng.randint(1, 4), points, fate)
        self.purchases[key] = purchase
        self.active.append(purchase)
        self.done["order"] += 1
        self.done["order asking points"] += bool(points)

    def _points_to_ask(self, customer: str, first_row: Decimal) -> Decimal:
        """Points the site asks to spend: out of what it last showed the customer as available,
        at most the first row less a ruble (the site takes them off that row); now and then more
        than available (1C then shows the refusal)."""
        latest = self.site.latest(customer)
        shown = Decimal(latest["bonus"]["available"]) if latest and latest.get("bonus") else Decimal(0)
        if shown <= 0 or self.rng.random() >= ASK_POINTS:
            return Decimal(0)
        if self.rng.random() < ASK_TOO_MANY:
            wanted = shown + 100
        else:
            wanted = Decimal(self.rng.randint(1, int(shown)))
        return min(wanted, first_row - 1).to_integral_value()

    def _manual_discount(self, key: str, percent: int) -> None:
        """A promotion on the last goods row (not the one the points were taken off)."""
        row = self.op.store.get(ORDERS, key)
        assert row is not None
        lines = row["Товары"]
        goods = [i for i, line in enumerate(lines) if i > 0 and not _is_service(self.op, line)]
        if not goods:
            return
        i = goods[-1]
        lines[i] = _repriced(lines[i], lines[i]["Цена"], Decimal(percent), Decimal(0))
        self.op.store.patch(ORDERS, key, {"Товары": lines, "СуммаДокумента": _total(lines)}, count=False)

    def _edit(self, p: Purchase) -> bool:
        """A price corrected after closing, on a goods row the points were not taken off."""
        row = self.op.store.get(ORDERS, p.key)
        assert row is not None
        lines = row["Товары"]
        rows = [
            i
            for i, line in enumerate(lines)
            if not line["Отменено"] and not _is_service(self.op, line) and (i > 0 or not p.points)
        ]
        if not rows:
            return False
        i = self.rng.choice(rows)
        line = lines[i]
        price = (line["Цена"] * Decimal(self.rng.choice(("0.9", "0.95", "1.05", "1.1")))).quantize(Decimal(1))
        lines[i] = _repriced(line, price, line["ПроцентРучнойСкидки"], line["ПроцентАвтоматическойСкидки"])
        self.op.store.patch(ORDERS, p.key, {"Товары": lines, "СуммаДокумента": _total(lines)}, count=False)
        self.done["edit closed"] += 1
        return True

    def _return(self, p: Purchase, day: int, stamp: datetime) -> bool:
        """One unit of a goods row comes back: a sale for the order (once) and a return against it."""
        row = self.op.store.get(ORDERS, p.key)
        assert row is not None
        goods = [
            line
            for line in row["Товары"]
            if not line["Отменено"] and not _is_service(self.op, line) and line["Сумма"] > 0
        ]
        if not goods:
            return False
        line = self.rng.choice(goods)
        amount = (line["Сумма"] / line["Количество"]).quantize(CENT)
        sale = self.op.store.insert(
            SALES,
            {
                "Date": local(stamp),
                "Posted": True,
                "DeletionMark": False,
                "ЗаказКлиента": p.key,
                "ЗаказКлиента_Type": f"StandardODATA.{ORDERS}",
                "Партнер_Key": p.customer,
                "СуммаДокумента": row["СуммаДокумента"],
            },
        )
        key = self.op.store.insert(
            RETURNS,
            {
                "Date": local(stamp),
                "Posted": True,
                "DeletionMark": False,
                "Партнер_Key": p.customer,
                "ДокументРеализации": sale,
                "ДокументРеализации_Type": f"StandardODATA.{SALES}",
                "Товары": [
                    {
                        "LineNumber": "1",
                        "Номенклатура_Key": line["Номенклатура_Key"],
                        "Количество": Decimal(1),
                        "Сумма": amount,
                    }
                ],
            },
        )
        p.returns.append((key, day))
        self.done["return"] += 1
        return True

    # --- cards -----------------------------------------------------------------------------------

    def _hand_out_cards(self, busy: set[str], share: float) -> None:
        """The warehouse hands out some of the cards the bridge created in 1C."""
        rank = {c: i for i, c in enumerate(self.customers)}
        cards = sorted(  # by owner: the order the bridge created them in depends on 1C's random keys
            self.op.store.snapshot("Catalog_КартыЛояльности"),
            key=lambda r: rank.get(str(r.get("Партнер_Key")), -1),
        )
        for card in cards:
            key, owner = str(card["Ref_Key"]), str(card.get("Партнер_Key"))
            if key in self._handed or owner in busy or self.rng.random() >= HAND_OUT * share:
                continue
            self.op.hand_out_card(key)
            self._handed.add(key)
            busy.add(owner)
            self.done["card handed out"] += 1


def _service(rng: random.Random) -> tuple[str, Any, Any]:
    name, price = rng.choice(SERVICES)
    return name, 1, price


def _is_service(op: Operator, line: dict[str, Any]) -> bool:
    product = op.store.row("Catalog_Номенклатура", str(line["Номенклатура_Key"]))
    return bool(product and product.get("ТипНоменклатуры") == "Услуга")


def _money(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def _repriced(line: dict[str, Any], price: Decimal, manual: Decimal, auto: Decimal) -> dict[str, Any]:
    """A row at ``price`` with its manual and automatic percents, as 1C recomputes it (the whole
    discount is the larger percent of the gross, rounded once; points taken off the row stay off)."""
    gross = _money(line["Количество"] * line["Цена"])
    points = gross - line["СуммаРучнойСкидки"] - line["СуммаАвтоматическойСкидки"] - line["Сумма"]
    new_gross = _money(line["Количество"] * price)
    manual_amount = _money(new_gross * manual / 100)
    auto_amount = _money(new_gross * (manual + auto) / 100) - manual_amount if auto > 0 else Decimal(0)
    amount = new_gross - manual_amount - auto_amount - max(points, Decimal(0))
    return {
        **line,
        "Цена": price,
        "ПроцентРучнойСкидки": manual,
        "СуммаРучнойСкидки": manual_amount,
        "СуммаАвтоматическойСкидки": auto_amount,
        "Сумма": amount,
        "СуммаСНДС": amount,
        "СуммаНДС": _money(amount * 20 / 120),
    }


def _total(lines: list[dict[str, Any]]) -> Decimal:
    return sum((line["Сумма"] for line in lines if not line["Отменено"]), Decimal(0))
