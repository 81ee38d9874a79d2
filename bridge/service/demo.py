"""``loyalty-bridge demo``: the whole pipeline on a fresh machine, with no config and no 1C.

Starts the built-in 1C simulator (reference catalogs, the loyalty additional attributes) and a
local site receiver on loopback, keeps SQLite state in a temporary folder, and plays a month of a
shop's life across simulated days — a tier rising, a redemption accepted and one refused, a hold
ending, a level promotion with the discount written into an open order — running real cycles over
HTTP. Prints what landed in 1C and what the site received, before and after.

``demo --config PATH`` plays the same story with the loyalty programs of that config file (its
``bonus``, ``discount``, ``cards`` prefix and ``delivery_products``) in place of the built-in
example's; everything else stays the demo's own: the simulator is its 1C, its state is a temporary
SQLite, its site the local receiver, nothing is notified, and no secret of the file is needed.
"""

from __future__ import annotations

import base64
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from bridge.runtime.config import Config, config_from_data, read_document
from bridge.runtime.signals import StopToken
from bridge.service.cycle import CycleResult
from bridge.service.wiring import build_cycle
from bridge.simulator import SimStore, Simulator, load_reference
from bridge.simulator.operator import Operator
from bridge.simulator.site import SiteReceiver
from bridge.store.db import make_engine, upgrade

TZ = ZoneInfo("Europe/Moscow")
BIKE = "Велосипед городской Forward Dortmund 28 2.0"
MTB = "Велосипед горный Stels Navigator 700 MD 27.5"
JACKET = "Куртка велосипедная Gore Wear C5 Gore-Tex"
GLOVES = "Велоперчатки Author Comfort"
SALE = "Шлем Cigna WT-015 (уценка)"
DELIVERY = "Доставка"
PARTNER_FIELDS = (
    ("Статус бонусной карты", "tier"),
    ("Бонусы всего", "total"),
    ("Бонусы доступно", "available"),
    ("Уровень клиента", "level"),
    ("Скидка уровня, %", "discount %"),
    ("Уровень действует до", "valid until"),
)
ORDER_FIELDS = (
    ("Бонусы списано", "spent"),
    ("Бонусы начислено", "earned"),
    ("Бонусы доступны с", "available from"),
    ("Выдать дисконтную карту", "card to issue"),
    ("Лояльность: сообщение", "message"),
)


def _t(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=TZ)


def demo_config(sim: Simulator, site: SiteReceiver, state: Path) -> dict[str, Any]:
    mapping = Path(__file__).resolve().parents[2] / "mappings" / "ut11.yaml"
    return {
        "timezone": "Europe/Moscow",
        "delivery_products": [DELIVERY],
        "state": {"url": f"sqlite:///{state}"},
        "onec": {
            "odata_url": sim.odata_url,
            "username": sim.username,
            "password_env": "DEMO_ONEC_PASSWORD",
            "mapping": str(mapping),
            "timeout_s": 10,
        },
        "poll": {"start": "2026-01-01T00:00:00"},
        "bonus": {
            "groups": {"Одежда": Decimal("1.5"), "Распродажа": 0},
            "tiers": [
                {"code": "silver", "name": "Серебряный", "threshold": 0, "rate": Decimal("0.02")},
                {"code": "gold", "name": "Золотой", "threshold": 30000, "rate": Decimal("0.03")},
                {"code": "platinum", "name": "Платиновый", "threshold": 100000, "rate": Decimal("0.05")},
                {"code": "vip", "name": "VIP", "threshold": 300000, "rate": Decimal("0.07")},
            ],
        },
        "discount": {
            "levels": [
                {"code": "base", "name": "Новичок", "threshold": 0, "percent": 0, "term_days": None},
                {"code": "fan", "name": "Фанат", "threshold": 50000, "percent": 5, "term_days": 180},
                {
                    "code": "king",
                    "name": "Король дорог",
                    "threshold": 150000,
                    "percent": 10,
                    "term_days": 180,
                },
            ]
        },
        "cards": {"prefix": "2990", "kind": "Дисконтная карта"},
        "site": {"webhook_url": site.url, "secret_env": "DEMO_SITE_SECRET"},
        "log": {"level": "warning", "format": "console"},
    }


#: What ``demo --config`` takes from the given file: its loyalty programs.
PROGRAMS = ("delivery_products", "bonus", "discount", "cards")


def with_programs(data: dict[str, Any], given: Any) -> dict[str, Any]:
    """The demo's config ``data`` with the programs of ``given`` (a config file's data) in place of
    the built-in example's. A program the file leaves out is left out here too (off, or its
    defaults), as in the bridge that file configures. The cards keep the demo's card kind: the
    simulator's 1C has that one only."""
    out = {key: value for key, value in data.items() if key not in PROGRAMS}
    out.update({key: given[key] for key in PROGRAMS if key in given})
    cards = given.get("cards", {})
    if isinstance(cards, Mapping):  # anything else is left for the validation to name
        out["cards"] = {**cards, "kind": data["cards"]["kind"]}
    return out


def demo_settings(
    data: dict[str, Any], programs_from: Path | None, env: dict[str, str], folder: Path
) -> Config:
    """The demo's validated config: the built-in example, or with the programs of ``programs_from``.

    Raises:
        ConfigError: that file cannot be read, or its programs are invalid (each key path named).
    """
    if programs_from is None:
        return config_from_data(data, config_path=folder / "config.yaml", environ=env)
    given = read_document(programs_from).data
    if not isinstance(given, Mapping):
        # empty, or not a mapping of keys: said as ``load_config`` says it, naming the file
        return config_from_data(given, config_path=programs_from, environ=env)
    return config_from_data(with_programs(data, given), config_path=programs_from, environ=env)


def _show(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "да" if value else "нет"
    if isinstance(value, datetime):
        return value.strftime("%d.%m.%Y")
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


class Demo:
    def __init__(self, folder: Path, say: Callable[[str], None], programs_from: Path | None = None) -> None:
        self.folder = folder
        self.say = say
        self.programs_from = programs_from

    def run(self) -> None:
        store = SimStore()
        load_reference(store)
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        with Simulator(store) as sim, SiteReceiver(secret) as site:
            data = demo_config(sim, site, self.folder / "state.db")
            env = {"DEMO_ONEC_PASSWORD": sim.password, "DEMO_SITE_SECRET": secret}
            config = demo_settings(data, self.programs_from, env, self.folder)
            db = make_engine(config.state.url)
            upgrade(db)
            db.dispose()
            clock = [_t(1, 5)]
            cycle = build_cycle(config, clock=lambda: clock[0])
            self.op = Operator(store)
            self.sim, self.site = sim, site

            def once(at: datetime, what: str) -> CycleResult:
                clock[0] = at
                result = cycle.run(StopToken())
                self.say(
                    f"  {at:%d.%m %H:%M}  {what:<58} → {result.documents_processed} doc., "
                    f"{result.writes_to_1c} writes to 1C, "
                    f"{sum(d.sent for n, d in result.deliveries.items() if n == 'webhook')} webhooks"
                )
                return result

            self.script(once)

    def script(self, once: Callable[[datetime, str], CycleResult]) -> None:
        op, say = self.op, self.say
        dmitry = op.partner("Соколов Дмитрий Андреевич", phone="+79161234567", email="d.sokolov@mail.ru")
        anna = op.partner("Петрова Анна Сергеевна", phone="+79031234567")
        olga = op.partner("Морозова Ольга Игоревна", email="olga.morozova@yandex.ru")
        self.people = {"Дмитрий": dmitry, "Анна": anna, "Ольга": olga}
        say("\nHISTORY (January): what the customers bought before")
        op.order(dmitry, [(MTB, 1, 25000)], date=_t(1, 5, 10), status="Закрыт")
        op.order(dmitry, [(SALE, 1, 5000)], date=_t(1, 5, 11), status="Закрыт")
        op.order(anna, [(SALE, 10, 2000)], date=_t(1, 6, 10), status="Закрыт")
        op.order(
            olga, [(MTB, 1, 40000), (GLOVES, 4, 1500), (DELIVERY, 1, 500)], date=_t(1, 7, 10), status="Закрыт"
        )
        once(_t(1, 7, 12), "the bridge reads the January orders")
        once(_t(3, 1, 9), "1 March: holds are over")
        self.report("BEFORE (1 March 2026) — what 1C shows on the partner cards")

        say("\nWHAT HAPPENS (simulated days, one bridge cycle after each step)")
        jacket = op.order(dmitry, [(JACKET, 1, 14700)], date=_t(3, 1, 10), redeem=500)
        once(_t(3, 1, 10), "Дмитрий orders a 14 700 jacket, spends 500 points")
        bike = op.order(anna, [(BIKE, 1, 20000), (DELIVERY, 1, 500)], date=_t(3, 1, 11))
        op.close(bike)
        once(_t(3, 1, 16), "Анна buys a 20 000 bike (+500 delivery), order closed")
        op.close(jacket)
        once(_t(3, 2, 15), "Дмитрий's jacket order is closed")
        second = op.order(dmitry, [(GLOVES, 1, 1500)], date=_t(3, 3, 10), redeem=100)
        once(_t(3, 3, 11), "Дмитрий tries to spend 100 more points")
        helmet = op.order(olga, [(JACKET, 1, 4800)], date=_t(3, 4, 10))
        op.close(helmet)
        once(_t(3, 4, 12), "Ольга's 4 800 order closes: 50 800 in the period")
        open_order = op.order(olga, [(GLOVES, 2, 1500)], date=_t(3, 5, 10))
        once(_t(3, 5, 11), "Ольга places a new order (still open)")
        once(_t(3, 17, 16), "17 March: the March holds are over")
        self.orders = {
            "Дмитрий: jacket": jacket,
            "Дмитрий: 2nd order": second,
            "Анна: bike": bike,
            "Ольга: open order": open_order,
        }
        self.report("AFTER (17 March 2026) — what 1C shows on the partner cards")
        say("\nOrders in 1C (loyalty fields the bridge filled in)")
        for label, key in self.orders.items():
            values = ", ".join(
                f"{name} {_show(self.op.order_attribute(key, attr))}" for attr, name in ORDER_FIELDS
            )
            say(f"  {label:<20} {values}")
        row = self.sim.store.get("Document_ЗаказКлиента", open_order) or {}
        for line in row.get("Товары", []):
            price = f"price {_show(line['Цена'])} × {_show(line['Количество'])}"
            say(
                f"  {'':<20} row {line.get('LineNumber')}: {price}, "
                f"level discount {_show(line['ПроцентАвтоматическойСкидки'])} % → {_show(line['Сумма'])}"
            )
        self.site_report()

    def report(self, title: str) -> None:
        self.say(f"\n{title}")
        for name, key in self.people.items():
            values = ", ".join(
                f"{label} {_show(self.op.partner_attribute(key, attr))}" for attr, label in PARTNER_FIELDS
            )
            self.say(f"  {name:<8} {values}")

    def site_report(self) -> None:
        say = self.say
        say(
            f"\nWhat the site received: {len(self.site.effective)} signed webhooks (all verified: "
            f"{all(d.verified for d in self.site.effective)})"
        )
        for name, key in self.people.items():
            latest = self.site.latest(key)
            if latest is None:
                continue
            bonus, discount = latest.get("bonus") or {}, latest.get("discount") or {}
            level = discount.get("level") or {}
            reasons = sorted(
                {
                    r
                    for d in self.site.effective
                    if d.json["data"]["customer"]["id"] == key
                    for r in d.json["data"]["reasons"]
                }
            )
            say(
                f"  {name:<8} sequence {latest['sequence']}: tier {bonus.get('tier', {}).get('name')}, "
                f"total {bonus.get('total')}, available {bonus.get('available')}, "
                f"level {level.get('name')} ({level.get('percent')} %), "
                f"card {latest['customer']['card_number']} ({latest['customer']['card_status']})"
            )
            say(f"  {'':<8} reasons seen: {', '.join(reasons)}")
        total = sum(self.sim.store.requests.values())
        say(f"\n1C simulator served {total} HTTP requests; state database: {self.folder / 'state.db'}")


def run_demo(keep: Path | None = None, programs_from: Path | None = None) -> None:
    folder = keep or Path(tempfile.mkdtemp(prefix="loyalty-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    click.echo(
        "onec-loyalty-bridge demo: a built-in 1C:Trade Management simulator and a site receiver on\n"
        "127.0.0.1, SQLite state in a temporary folder, real cycles over HTTP across simulated days."
    )
    if programs_from is not None:
        click.echo(f"Loyalty programs (bonus, discount, cards, delivery products) from {programs_from}.")
    from bridge.runtime.logging import configure_logging

    configure_logging("warning", "console")
    try:
        Demo(folder, click.echo, programs_from).run()
    finally:
        if keep is None:  # a folder of our own in /tmp: nothing may be left behind
            shutil.rmtree(folder, ignore_errors=True)
            click.echo("(the temporary folder is removed; `demo --keep DIR` keeps the state database)")
