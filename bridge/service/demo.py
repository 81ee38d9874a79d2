"""``loyalty-bridge demo``: the rules engine and ledger on built-in sample data, across simulated days.

Runs with no config and no 1C: a temporary SQLite state database, the programs of SPEC.md's worked
examples, and a scripted month of a bike-and-pet shop's orders. Prints each customer's state
before and after and every event the site and the customer would hear about.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from bridge.domain.book import Rules
from bridge.domain.model import (
    BonusRules,
    DiscountRules,
    Level,
    Order,
    OrderLine,
    OrderStatus,
    Tier,
)
from bridge.domain.money import points_str, ru_number
from bridge.domain.present import customer_view, order_view
from bridge.service.engine import Engine
from bridge.service.snapshot import percent_str
from bridge.store.db import make_engine, upgrade
from bridge.store.ledger import LedgerStore

TZ = ZoneInfo("Europe/Moscow")
D = Decimal
RULES = Rules(
    bonus=BonusRules(
        tiers=(
            Tier("silver", "Серебряный", D(0), D("0.02")),
            Tier("gold", "Золотой", D(30000), D("0.03")),
            Tier("platinum", "Платиновый", D(100000), D("0.05")),
            Tier("vip", "VIP", D(300000), D("0.07")),
        ),
        groups={"Велосипеды": D("1.0"), "Одежда": D("1.5"), "Распродажа": D(0)},
    ),
    discount=DiscountRules(
        levels=(
            Level("base", "Новичок", D(0), D(0), None),
            Level("fan", "Фанат животных", D(10000), D(5), 180),
            Level("king", "Царь зверей", D(50000), D(10), 180),
        ),
        period_days=365,
    ),
)
NAMES = {"dmitry": "Дмитрий", "anna": "Анна", "olga": "Ольга"}


def _t(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=TZ)


def _order(
    oid: str, who: str, items: list[tuple[str, int]], day: datetime, *, redeem: int = 0, status: OrderStatus
) -> Order:
    lines = tuple(
        OrderLine(i, f"{group}-{i}", D(1), D(amount), D(amount), group=group, delivery=group == "Доставка")
        for i, (group, amount) in enumerate(items, start=1)
    )
    return Order(oid, "1", oid, day, who, status, True, False, lines, D(redeem))


def _state(engine: Engine, who: str, now: datetime) -> str:
    v = customer_view(engine.book(who), engine.rules, now, TZ)
    assert v.tier is not None and v.level is not None
    return (
        f"{v.tier.name:<10} объём {ru_number(v.volume, 0):>7}  бонусы: всего {points_str(v.total):>4}, "
        f"доступно {points_str(v.available):>4}  |  уровень {v.level.name} ({percent_str(v.level.percent)} %)"
        + (f" до {v.valid_until.astimezone(TZ):%d.%m.%Y}" if v.valid_until else "")
    )


def run_demo(keep: Path | None = None) -> None:
    folder = keep or Path(tempfile.mkdtemp(prefix="loyalty-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = make_engine(f"sqlite:///{folder / 'state.db'}")
    upgrade(db)
    engine = Engine(LedgerStore(db), RULES, TZ, card_prefix="2990")
    say = click.echo

    # History the customers bring (as `backfill` would import it).
    engine.apply_order(
        _order("H-1", "dmitry", [("Велосипеды", 25000)], _t(1, 5), status=OrderStatus.CLOSED), _t(1, 5)
    )
    engine.apply_order(
        _order("H-2", "dmitry", [("Распродажа", 5000)], _t(1, 6), status=OrderStatus.CLOSED), _t(1, 6)
    )
    engine.apply_order(
        _order("H-3", "anna", [("Распродажа", 20000)], _t(1, 10), status=OrderStatus.CLOSED), _t(1, 10)
    )
    engine.apply_order(
        _order("H-4", "olga", [("Корм", 8000)], _t(1, 20), status=OrderStatus.CLOSED), _t(1, 20)
    )
    engine.tick(_t(3, 1, 9))

    start = _t(3, 1, 9)
    say(f"State database: {folder / 'state.db'}\n")
    say("BEFORE (1 March 2026)")
    for who, name in NAMES.items():
        say(f"  {name:<8} {_state(engine, who, start)}")

    timeline: list[tuple[datetime, str, Order]] = []
    jacket = _order(
        "ЗК-101", "dmitry", [("Одежда", 14200)], _t(3, 1, 10), redeem=500, status=OrderStatus.OPEN
    )
    timeline.append((_t(3, 1, 10), "Дмитрий заказывает куртку за 14 700 и списывает 500 бонусов", jacket))
    timeline.append(
        (_t(3, 2, 15), "Заказ Дмитрия закрыт", replace(jacket, status=OrderStatus.CLOSED, version="2"))
    )
    second = _order("ЗК-102", "dmitry", [("Велосипеды", 3000)], _t(3, 3), redeem=100, status=OrderStatus.OPEN)
    timeline.append((_t(3, 3, 11), "Дмитрий пробует списать ещё 100 бонусов", second))
    bike = _order(
        "ЗК-103", "anna", [("Велосипеды", 20000), ("Доставка", 500)], _t(3, 1), status=OrderStatus.CLOSED
    )
    timeline.append((_t(3, 1, 16), "Анна покупает велосипед за 20 000 (+ доставка 500)", bike))
    food = _order("ЗК-104", "olga", [("Корм", 3000)], _t(3, 4), status=OrderStatus.CLOSED)
    timeline.append((_t(3, 4, 12), "Ольга покупает корм на 3 000", food))

    say("\nWHAT HAPPENED")
    for when, text, order in sorted(timeline, key=lambda item: item[0]):
        result = engine.apply_order(order, when)
        say(f"  {when:%d.%m %H:%M}  {text}")
        ov = order_view(engine.book(order.customer_id or "", (order.id,)), order.id)
        if ov.points_spent:
            say(f"                списано {points_str(ov.points_spent)} бонусов")
        if ov.points_earned:
            say(
                f"                начислено {points_str(ov.points_earned)} бонусов, доступны с "
                f"{ov.available_from.astimezone(TZ):%d.%m.%Y}"
                if ov.available_from
                else ""
            )
        if ov.message:
            say(f"                отказ: «{ov.message}»")
        for ev in result.events:
            say(f"                → сайт/уведомление: {ev.reason.value}")
    for day in (_t(3, 16, 16), _t(3, 17, 16)):
        for applied in engine.tick(day):
            for ev in applied.events:
                name = NAMES.get(applied.customer_id or "", applied.customer_id)
                points = points_str(ev.points or D(0))
                say(f"  {day:%d.%m %H:%M}  {name}: {ev.reason.value} ({points} бонусов)")

    end = _t(3, 17, 16) + timedelta(minutes=1)
    say("\nAFTER (17 March 2026)")
    for who, name in NAMES.items():
        say(f"  {name:<8} {_state(engine, who, end)}")
    say(
        "\nThis demo runs the rules engine and ledger alone on built-in data; reading and writing a real"
        "\n1C base goes through `loyalty-bridge check` / `once` / `run` with your config."
    )
    db.dispose()
