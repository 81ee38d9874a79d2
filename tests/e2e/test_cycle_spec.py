"""SPEC's worked examples driven through 1C documents over real HTTP: the values written into 1C and
the webhook bodies the site receives."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal as D
from pathlib import Path

from tests.e2e.cycle_kit import MSK, world

JACKET = "Куртка велосипедная Gore Wear C5 Gore-Tex"
BIKE = "Велосипед городской Forward Dortmund 28 2.0"
SALE = "Шлем Cigna WT-015 (уценка)"


def t(m: int, d: int, h: int = 12) -> datetime:
    return datetime(2026, m, d, h, tzinfo=MSK)


def test_example_1_and_2_through_1c(tmp_path: Path) -> None:
    with world(tmp_path, start=t(1, 5), discount=None) as w:
        dmitry = w.op.partner("Соколов Дмитрий Андреевич", phone="+79161234567", email="d.sokolov@mail.ru")
        # History that makes Dmitry Gold with 500 points: 25 000 of bikes (500 points) + 5 000 of sale items.
        h1 = w.op.order(dmitry, [(BIKE, 1, 25000)], date=t(1, 5, 10), status="Закрыт")
        h2 = w.op.order(dmitry, [(SALE, 1, 5000)], date=t(1, 5, 11), status="Закрыт")
        w.once(t(1, 5, 12))
        assert w.order_attr(h1, "Бонусы начислено") == D(500)
        assert w.order_attr(h2, "Бонусы начислено") in (None, D(0))
        w.once(t(3, 1, 9))  # the hold is over
        assert w.partner_attr(dmitry, "Статус бонусной карты") == "Золотой"
        assert w.partner_attr(dmitry, "Бонусы доступно") == D(500)

        jacket = w.op.order(dmitry, [(JACKET, 1, 14700)], date=t(3, 1, 10), redeem=500)
        w.once(t(3, 1, 10))
        assert w.order_attr(jacket, "Бонусы списано") == D(500)
        assert w.partner_attr(dmitry, "Бонусы доступно") in (None, D(0))

        w.op.close(jacket)
        w.once(t(3, 2, 15))
        assert w.order_attr(jacket, "Бонусы начислено") == D(639)
        assert w.order_attr(jacket, "Бонусы доступны с") == datetime(2026, 3, 16, 15, 0)
        assert w.partner_attr(dmitry, "Бонусы всего") == D(639)

        second = w.op.order(dmitry, [(BIKE, 1, 3000)], date=t(3, 3, 10), redeem=100)
        w.once(t(3, 3, 11))
        assert w.order_attr(second, "Бонусы списано") in (None, D(0))
        message = w.order_attr(second, "Лояльность: сообщение")
        assert message.startswith("Доступно 0 бонусов, запрошено 100")

        assert w.site is not None
        latest = w.site.latest(dmitry)
        assert latest is not None
        bonus = latest["bonus"]
        assert (bonus["total"], bonus["available"], bonus["pending"]) == ("639", "0", "639")
        assert bonus["tier"] == {"code": "gold", "name": "Золотой"}
        sequences = [
            d.json["data"]["sequence"] for d in w.site.effective if d.json["data"]["customer"]["id"] == dmitry
        ]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
