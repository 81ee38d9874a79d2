"""SPEC's worked examples driven through 1C documents over real HTTP: the values written into 1C and
the webhook bodies the site receives."""

from __future__ import annotations

import re
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


def test_webhook_times_are_whole_seconds_on_the_real_clock(tmp_path: Path) -> None:
    """Without ``--now`` the cycle's clock has microseconds: ``timestamp``, ``next_available_at``
    and ``valid_until`` still go out as ``2026-03-01T12:00:00+03:00``."""
    whole = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+03:00$")
    at = t(3, 1).replace(microsecond=608648)
    with world(tmp_path, start=at) as w:
        anna = w.op.partner("Петрова Анна Сергеевна", phone="+79031234567")
        w.op.order(anna, [(BIKE, 1, 20000)], date=t(3, 1, 10), status="Закрыт")
        w.once(at)
        assert w.site is not None
        [body] = [d.json for d in w.site.effective]
        bonus, discount = body["data"]["bonus"], body["data"]["discount"]
        assert body["timestamp"] == "2026-03-01T12:00:00+03:00"
        assert bonus["next_available_at"] == "2026-03-15T12:00:00+03:00"
        assert whole.match(discount["valid_until"]), discount["valid_until"]


def test_card_to_issue_until_1c_marks_it_issued(tmp_path: Path) -> None:
    with world(tmp_path, start=t(3, 1), bonus=None) as w:
        vera = w.op.partner("Орлова Вера Павловна", phone="+79031112233")
        first = w.op.order(vera, [(BIKE, 1, 3000)], date=t(3, 1, 10))
        w.once(t(3, 1, 11))
        assert w.order_attr(first, "Выдать дисконтную карту") is True
        cards = w.op.cards_of(vera)
        assert len(cards) == 1 and cards[0]["Штрихкод"].startswith("2990") and len(cards[0]["Штрихкод"]) == 13
        w.op.hand_out_card(cards[0]["Ref_Key"])
        second = w.op.order(vera, [(BIKE, 1, 2000)], date=t(3, 2, 10))
        w.once(t(3, 2, 11))
        assert w.order_attr(first, "Выдать дисконтную карту") in (None, False)
        assert w.order_attr(second, "Выдать дисконтную карту") in (None, False)
        assert w.site is not None
        latest = w.site.latest(vera)
        assert latest is not None and latest["customer"]["card_status"] == "issued"


def test_example_6_level_discount_on_an_open_order(tmp_path: Path) -> None:
    with world(tmp_path, start=t(3, 1), bonus=None) as w:
        anna = w.op.partner("Петрова Анна Сергеевна", email="anna@example.ru")
        w.op.order(anna, [(BIKE, 1, 12000)], date=t(3, 1, 10), status="Закрыт")
        w.once(t(3, 1, 11))  # 12 000 in the period: «Фанат животных», 5 %
        assert w.partner_attr(anna, "Уровень клиента") == "Фанат животных"
        order = w.op.order(anna, [(JACKET, 1, 14700), (BIKE, 1, 1000)], date=t(3, 2, 10))
        row = w.store.get("Document_ЗаказКлиента", order)
        assert row is not None
        promo = dict(
            row["Товары"][0], ПроцентРучнойСкидки=D(7), СуммаРучнойСкидки=D("1029.00"), Сумма=D("13671.00")
        )
        w.store.patch("Document_ЗаказКлиента", order, {"Товары": [promo, row["Товары"][1]]}, count=False)
        w.once(t(3, 2, 11))
        lines = w.store.get("Document_ЗаказКлиента", order)["Товары"]  # type: ignore[index]
        assert (lines[0]["ПроцентАвтоматическойСкидки"], lines[0]["Сумма"]) == (
            D(0),
            D("13671.00"),
        )  # 7 % stays
        assert (lines[1]["ПроцентАвтоматическойСкидки"], lines[1]["Сумма"]) == (D(5), D("950.00"))
        assert w.store.get("Document_ЗаказКлиента", order)["СуммаДокумента"] == D("14621.00")  # type: ignore[index]
        w.op.close(order)
        w.once(t(3, 3, 11))
        assert w.store.get("Document_ЗаказКлиента", order)["Товары"][1]["Сумма"] == D("950.00")  # type: ignore[index]


def test_examples_3_and_4_cancel_within_the_hold_and_after_spending(tmp_path: Path) -> None:
    with world(tmp_path, start=t(1, 10), discount=None) as w:
        ivan = w.op.partner("Иванов Сергей Петрович", phone="+79167654321")
        w.op.order(ivan, [(SALE, 10, 2000)], date=t(1, 10, 10), status="Закрыт")  # volume 20 000, no points
        w.once(t(1, 10, 12))
        bike = w.op.order(ivan, [(BIKE, 1, 20000)], date=t(3, 1, 10))
        w.op.close(bike)
        w.once(t(3, 1, 12))
        assert w.order_attr(bike, "Бонусы начислено") == D(400)  # example 3: at Silver
        assert w.partner_attr(ivan, "Статус бонусной карты") == "Золотой"
        assert w.partner_attr(ivan, "Объем покупок") == D(40000)
        w.once(t(3, 16, 12))  # the 400 are available
        spend = w.op.order(ivan, [(JACKET, 1, 14700)], date=t(3, 16, 13), redeem=300)
        w.once(t(3, 16, 14))
        assert w.order_attr(spend, "Бонусы списано") == D(300)
        w.op.cancel(bike)  # example 4, second case: 20 March, after 300 were spent
        w.once(t(3, 20, 12))
        assert w.order_attr(bike, "Бонусы начислено") in (None, D(0))
        assert w.partner_attr(ivan, "Статус бонусной карты") == "Серебряный"
        assert w.partner_attr(ivan, "Объем покупок") == D(20000)
        assert w.partner_attr(ivan, "Бонусы всего") in (None, D(0))
        assert w.site is not None
        latest = w.site.latest(ivan)
        assert latest is not None and latest["bonus"]["debt"] == "300"
        assert latest["bonus"]["tier"]["code"] == "silver"


def test_example_4_cancel_within_the_hold(tmp_path: Path) -> None:
    with world(tmp_path, start=t(1, 10), discount=None) as w:
        ivan = w.op.partner("Иванов Сергей Петрович")
        w.op.order(ivan, [(SALE, 10, 2000)], date=t(1, 10, 10), status="Закрыт")
        bike = w.op.order(ivan, [(BIKE, 1, 20000)], date=t(3, 1, 10), status="Закрыт")
        w.once(t(3, 1, 12))
        assert w.partner_attr(ivan, "Бонусы всего") == D(400)
        w.op.cancel(bike)
        w.once(t(3, 10, 12))
        assert w.partner_attr(ivan, "Бонусы всего") in (None, D(0))
        assert w.partner_attr(ivan, "Объем покупок") == D(20000)
        assert w.partner_attr(ivan, "Статус бонусной карты") == "Серебряный"


def test_example_5_levels_with_the_term_end(tmp_path: Path) -> None:
    def d(y: int, m: int, day: int, h: int = 12) -> datetime:
        return datetime(y, m, day, h, tzinfo=MSK)

    with world(tmp_path, start=d(2025, 3, 15), bonus=None, **{"poll.start": "2025-01-01T00:00:00"}) as w:
        olga = w.op.partner("Морозова Ольга Игоревна")
        w.op.order(olga, [(BIKE, 1, 7000)], date=d(2025, 3, 15, 10), status="Закрыт")
        w.once(d(2025, 3, 15, 12))
        w.op.order(olga, [(BIKE, 1, 1000)], date=d(2025, 10, 10, 10), status="Закрыт")
        w.once(d(2025, 10, 10, 12))
        third = w.op.order(olga, [(BIKE, 1, 3000)], date=d(2026, 1, 31, 23), status="Закрыт")
        w.once(d(2026, 2, 1, 0))
        assert w.partner_attr(olga, "Уровень клиента") == "Фанат животных"
        assert w.partner_attr(olga, "Скидка уровня, %") == D(5)
        assert w.partner_attr(olga, "Уровень действует до") == datetime(2026, 7, 31, 0, 0)
        assert w.partner_attr(olga, "Сумма покупок за период") == D(11000)
        w.once(d(2026, 7, 31, 0))
        assert w.partner_attr(olga, "Уровень клиента") == "Новичок"
        assert w.partner_attr(olga, "Сумма покупок за период") == D(4000)
        history = w.partner_attr(olga, "История уровней").splitlines()
        assert (
            len(history) == 2 and history[0].startswith("31.07.2026") and history[1].startswith("01.02.2026")
        )
        assert third


def test_logs_carry_cycle_document_and_customer_context(tmp_path: Path) -> None:
    from structlog.contextvars import merge_contextvars
    from structlog.testing import capture_logs

    with world(tmp_path, start=t(3, 1), discount=None) as w:
        vera = w.op.partner("Орлова Вера Павловна")
        bad = w.op.order(vera, [(BIKE, 1, 3000)], date=t(3, 1, 10))
        row = w.store.get("Document_ЗаказКлиента", bad)
        assert row is not None
        negative = [dict(row["Товары"][0], Сумма=D(-5))]
        w.store.patch("Document_ЗаказКлиента", bad, {"Товары": negative}, count=False)
        with capture_logs(processors=[merge_contextvars]) as logs:
            result = w.once(t(3, 1, 11))
        assert result.documents_failed == 1
        quarantined = [e for e in logs if e["event"] == "cycle.quarantined"]
        assert quarantined and quarantined[0]["doc"] == bad and quarantined[0]["customer"] == vera
        assert quarantined[0]["cycle"].startswith("2026-03-01T11:00")
        assert "-5" in quarantined[0]["reason"] and quarantined[0]["field"].endswith("Сумма")


def test_a_promotion_discounts_every_open_order_of_the_customer(tmp_path: Path) -> None:
    with world(tmp_path, start=t(3, 1), bonus=None) as w:
        anna = w.op.partner("Петрова Анна Сергеевна")
        waiting = w.op.order(anna, [(JACKET, 1, 5000)], date=t(3, 1, 9))
        w.once(t(3, 1, 10))  # base level: full price
        assert w.store.get("Document_ЗаказКлиента", waiting)["Товары"][0]["Сумма"] == D(5000)  # type: ignore[index]
        w.op.order(anna, [(BIKE, 1, 12000)], date=t(3, 2, 10), status="Закрыт")
        w.once(t(3, 2, 11))  # 12 000: «Фанат животных», 5 % — the order waiting since yesterday too
        assert w.partner_attr(anna, "Уровень клиента") == "Фанат животных"
        line = w.store.get("Document_ЗаказКлиента", waiting)["Товары"][0]  # type: ignore[index]
        assert (line["ПроцентАвтоматическойСкидки"], line["Сумма"]) == (D(5), D("4750.00"))


def test_the_period_sum_in_1c_falls_when_an_order_leaves_the_period(tmp_path: Path) -> None:
    """SPEC §3 "what the customer sees … S for the period": S(t) falls by time alone; the partner's
    figures in 1C follow on the cycle after an order leaves the period, with no new document."""

    def d(y: int, m: int, day: int, h: int = 12) -> datetime:
        return datetime(y, m, day, h, tzinfo=MSK)

    with world(tmp_path, start=d(2025, 3, 15), bonus=None, **{"poll.start": "2025-01-01T00:00:00"}) as w:
        olga = w.op.partner("Морозова Ольга Игоревна")
        w.op.order(olga, [(BIKE, 1, 3000)], date=d(2025, 3, 15, 10), status="Закрыт")
        w.once(d(2025, 3, 15, 12))
        w.op.order(olga, [(BIKE, 1, 2000)], date=d(2025, 6, 1, 10), status="Закрыт")
        w.once(d(2025, 6, 1, 12))
        assert w.partner_attr(olga, "Сумма покупок за период") == D(5000)
        w.once(d(2026, 3, 15, 11))  # the first order is still in the window
        assert w.partner_attr(olga, "Сумма покупок за период") == D(5000)
        w.once(d(2026, 3, 15, 13))
        assert w.partner_attr(olga, "Сумма покупок за период") == D(2000)
        assert w.partner_attr(olga, "До следующего уровня") == D(8000)


def test_a_tier_the_rolling_window_lowers_reaches_1c_and_the_site(tmp_path: Path) -> None:
    """SPEC §2: with ``bonus.volume_window_days`` the tier moves down as orders leave the window;
    the partner's tier and volume in 1C and a ``tier_changed`` snapshot follow, once."""

    def d(y: int, m: int, day: int, h: int = 12) -> datetime:
        return datetime(y, m, day, h, tzinfo=MSK)

    overrides = {"discount": None, "bonus.volume_window_days": 365, "poll.start": "2025-01-01T00:00:00"}
    with world(tmp_path, start=d(2025, 3, 15), **overrides) as w:
        ivan = w.op.partner("Иванов Сергей Петрович")
        w.op.order(ivan, [(SALE, 20, 2000)], date=d(2025, 3, 15, 10), status="Закрыт")
        w.once(d(2025, 3, 15, 12))
        assert w.partner_attr(ivan, "Статус бонусной карты") == "Золотой"
        assert w.site is not None
        before = len(w.site.effective)
        w.once(d(2026, 3, 15, 13))
        w.once(d(2026, 3, 15, 14))
        assert w.partner_attr(ivan, "Статус бонусной карты") == "Серебряный"
        assert w.partner_attr(ivan, "Объем покупок") in (None, D(0))
        sent = [x.json["data"] for x in w.site.effective[before:]]
        assert [s["reasons"] for s in sent] == [["tier_changed"]]
        assert sent[0]["bonus"]["tier"]["code"] == "silver" and sent[0]["bonus"]["volume"] == "0.00"
