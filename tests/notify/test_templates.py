"""``render``: the exact Russian texts of the default templates, plural forms, dates in the store's
zone, who gets nothing (no contact, channel off, reason off) and the at-most-once dedup keys."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bridge.domain.ledger import Event, Reason
from bridge.domain.views import LevelView
from bridge.notify.templates import DEDUP_KEY_MAX, format_points, render, template_values
from bridge.runtime.config_channels import DEFAULT_TEMPLATES
from tests.notify.notify_kit import CLOSED, CUSTOMER, MSK, event, notify_config, view

NOTIFY = notify_config()
HOLD_END = CLOSED + timedelta(days=14)  # 16.03.2026
EXPIRES = CLOSED + timedelta(days=365)  # 02.03.2027
LEVEL_END = datetime(2026, 7, 31, tzinfo=MSK)

# One representative event per reason, and the exact SMS text and e-mail subject it produces.
CASES: list[tuple[Event, dict[str, object], str, str]] = [
    (
        event(Reason.POINTS_ACCRUED, points=Decimal(639), when=HOLD_END),
        {},
        "Магазин: начислено 639 бонусов, доступны с 16.03.2026. Всего на счёте 639 бонусов.",
        "Начислено 639 бонусов",
    ),
    (
        event(Reason.POINTS_AVAILABLE, points=Decimal(639), when=HOLD_END, at=HOLD_END),
        {"available": Decimal(639)},
        "Магазин: бонусы за покупку доступны для оплаты: 639 бонусов. Всего доступно 639 бонусов.",
        "Бонусы доступны для оплаты: 639 бонусов",
    ),
    (
        event(Reason.POINTS_REDEEMED, points=Decimal(500)),
        {"total": Decimal(139)},
        "Магазин: в оплату заказа списано 500 бонусов. На счёте 139 бонусов.",
        "Оплата бонусами: 500 бонусов",
    ),
    (
        event(Reason.POINTS_RELEASED, points=Decimal(22)),
        {"available": Decimal(522)},
        "Магазин: бонусы, отложенные на заказ, вернулись на счёт: 22 бонуса. Доступно 522 бонуса.",
        "Бонусы вернулись на счёт: 22 бонуса",
    ),
    (
        event(Reason.POINTS_REVERSED, points=Decimal(400)),
        {"total": Decimal(0)},
        "Магазин: начисление за заказ отменено (возврат или отмена): 400 бонусов. На счёте 0 бонусов.",
        "Отмена начисления: 400 бонусов",
    ),
    (
        event(Reason.POINTS_EXPIRING, points=Decimal(121), when=EXPIRES),
        {},
        "Магазин: 02.03.2027 сгорают бонусы: 121 бонус. Успейте потратить!",
        "02.03.2027 сгорают бонусы: 121 бонус",
    ),
    (
        event(Reason.POINTS_EXPIRED, points=Decimal(3), when=EXPIRES, at=EXPIRES),
        {"total": Decimal(1)},
        "Магазин: 02.03.2027 сгорели неиспользованные бонусы: 3 бонуса. На счёте 1 бонус.",
        "Бонусы сгорели: 3 бонуса",
    ),
    (
        event(Reason.TIER_CHANGED, detail={"old_tier": "Серебряный", "tier": "Золотой"}),
        {},
        "Магазин: ваш статус в бонусной программе теперь «Золотой» (был «Серебряный»).",
        "Ваш статус: «Золотой»",
    ),
    (
        event(
            Reason.LEVEL_CHANGED,
            when=LEVEL_END,
            detail={"old_level": "Новичок", "level": "Фанат животных", "percent": "5"},
        ),
        {},
        "Магазин: ваш уровень теперь «Фанат животных», скидка 5 % до 31.07.2026.",
        "Ваш уровень: «Фанат животных», скидка 5 %",
    ),
    (
        event(
            Reason.LEVEL_RECOMPUTED,
            when=datetime(2027, 1, 27, tzinfo=MSK),
            detail={"old_level": "Царь зверей", "level": "Царь зверей", "percent": "10.00"},
        ),
        {"level": LevelView("king", "Царь зверей", Decimal(10))},
        "Магазин: ваш уровень «Царь зверей» сохранён, скидка 10 % до 27.01.2027.",
        "Ваш уровень «Царь зверей» сохранён",
    ),
    (
        event(Reason.CARD_CREATED, detail={"card": "2990000000026"}),
        {"card_number": "2990000000026"},
        "Магазин: для вас оформлена карта лояльности № 2990000000026. Получите её вместе с заказом.",
        "Ваша карта лояльности № 2990000000026",
    ),
]


@pytest.mark.parametrize(("ev", "state", "sms", "subject"), CASES, ids=[c[0].reason.value for c in CASES])
def test_every_default_template_renders_exact_russian_text(
    ev: Event, state: dict[str, object], sms: str, subject: str
) -> None:
    messages = render(ev, view(**state), CUSTOMER, NOTIFY, MSK)
    assert [m.channel for m in messages] == ["sms", "email"]
    text, letter = messages[0].payload, messages[1].payload
    assert text == {"to": "+79161234567", "text": sms, "sender": "SHOP"}
    assert letter["to"] == "dmitry@example.ru" and letter["subject"] == subject
    assert letter["body"].startswith("Здравствуйте, Дмитрий!\n\n") and letter["body"].endswith("\n\nМагазин")
    assert "{" not in letter["body"] and "}" not in letter["body"]


def test_every_reason_with_a_default_is_covered_above() -> None:
    assert {c[0].reason.value for c in CASES} == set(DEFAULT_TEMPLATES)


def test_points_accrued_email_body_exactly() -> None:
    ev = event(Reason.POINTS_ACCRUED, points=Decimal(639), when=HOLD_END)
    _, letter = render(ev, view(), CUSTOMER, NOTIFY, MSK)
    assert letter.payload["body"] == (
        "Здравствуйте, Дмитрий!\n\n"
        "За покупку вам начислено 639 бонусов. Ими можно будет оплатить покупки с 16.03.2026.\n"
        "Всего на счёте: 639 бонусов, доступно сейчас: 0 бонусов.\n\n"
        "Магазин"
    )


def test_level_changed_email_names_old_and_new_level() -> None:
    detail = {"old_level": "Новичок", "level": "Фанат животных", "percent": "5"}
    ev = event(Reason.LEVEL_CHANGED, when=LEVEL_END, detail=detail)
    _, letter = render(ev, view(), CUSTOMER, NOTIFY, MSK)
    assert "«Новичок» → «Фанат животных»" in letter.payload["body"]
    assert "Скидка 5 % на весь ассортимент действует до 31.07.2026." in letter.payload["body"]


def test_a_level_without_an_end_date_is_unlimited() -> None:
    detail = {"old_level": "Фанат животных", "level": "Новичок", "percent": "0"}
    state = view(level=LevelView("base", "Новичок", Decimal(0)), valid_until=None)
    sms, _ = render(event(Reason.LEVEL_CHANGED, detail=detail), state, CUSTOMER, NOTIFY, MSK)
    assert sms.payload["text"] == "Магазин: ваш уровень теперь «Новичок», скидка 0 % бессрочно."


@pytest.mark.parametrize(
    ("points", "text"),
    [
        (1, "1 бонус"),
        (2, "2 бонуса"),
        (4, "4 бонуса"),
        (5, "5 бонусов"),
        (11, "11 бонусов"),
        (12, "12 бонусов"),
        (14, "14 бонусов"),
        (21, "21 бонус"),
        (22, "22 бонуса"),
        (101, "101 бонус"),
        (111, "111 бонусов"),
        (1500, "1 500 бонусов"),
        (Decimal("639.00"), "639 бонусов"),
        (Decimal("12.50"), "12,5 бонуса"),
        (0, "0 бонусов"),
    ],
)
def test_points_and_their_plural(points: int | Decimal, text: str) -> None:
    ev = event(Reason.POINTS_REDEEMED, points=Decimal(points))
    values = template_values(ev, view(), CUSTOMER, shop="Велосклад", tz=MSK)
    assert f"{values['points']} {values['points_word']}" == text


def test_format_points_drops_trailing_zeros_only() -> None:
    assert [format_points(Decimal(v)) for v in ("639", "639.00", "1E+3", "0.50", "14200")] == [
        "639",
        "639",
        "1 000",
        "0,5",
        "14 200",
    ]


def test_dates_are_the_stores_calendar_day() -> None:
    late_utc = datetime(2026, 3, 15, 22, 30, tzinfo=UTC)  # already 16 March in Moscow
    ev = event(Reason.POINTS_ACCRUED, points=Decimal(639), when=late_utc)
    assert template_values(ev, view(), CUSTOMER, shop="М", tz=MSK)["date"] == "16.03.2026"


def test_negative_totals_are_never_shown() -> None:
    ev = event(Reason.POINTS_REVERSED, points=Decimal(100))
    values = template_values(
        ev, view(total=Decimal(-300), available=Decimal(-300)), CUSTOMER, shop="М", tz=MSK
    )
    assert (values["total"], values["available"]) == ("0", "0")


def test_customer_without_a_name_is_greeted_politely() -> None:
    ev = event(Reason.POINTS_REDEEMED, points=Decimal(5))
    _, letter = render(ev, view(), replace(CUSTOMER, name="  "), NOTIFY, MSK)
    assert letter.payload["body"].startswith("Здравствуйте, уважаемый покупатель!")


def test_shop_name_and_custom_templates() -> None:
    config = notify_config(
        {
            "shop_name": "Велосклад",
            "sms": {"sender": "VELO"},
            "templates": {
                "points_accrued": {"sms": "{shop}: +{points} {points_word} ({tier}), карта {card}"}
            },
        }
    )
    ev = event(Reason.POINTS_ACCRUED, points=Decimal(400), when=HOLD_END)
    sms, letter = render(ev, view(), CUSTOMER, config, MSK)
    assert sms.payload == {
        "to": "+79161234567",
        "text": "Велосклад: +400 бонусов (Золотой), карта 2990000000019",
        "sender": "VELO",
    }
    assert letter.payload["body"].endswith("\n\nВелосклад")  # the default e-mail kept


# --- who gets nothing -----------------------------------------------------------------------------

ACCRUED = event(Reason.POINTS_ACCRUED, points=Decimal(639), when=HOLD_END)


def test_no_phone_no_sms_no_email_no_email() -> None:
    assert [m.channel for m in render(ACCRUED, view(), replace(CUSTOMER, phone=None), NOTIFY, MSK)] == [
        "email"
    ]
    assert [m.channel for m in render(ACCRUED, view(), replace(CUSTOMER, email=""), NOTIFY, MSK)] == ["sms"]
    nobody = replace(CUSTOMER, phone=None, email=None)
    assert render(ACCRUED, view(), nobody, NOTIFY, MSK) == []


def test_channels_that_are_off_send_nothing() -> None:
    sms_off = notify_config({"sms": {"url": None}})
    email_off = notify_config({"email": {"smtp_host": None}})
    both_off = notify_config({"sms": {"url": None}, "email": {"smtp_host": None}})
    assert [m.channel for m in render(ACCRUED, view(), CUSTOMER, sms_off, MSK)] == ["email"]
    assert [m.channel for m in render(ACCRUED, view(), CUSTOMER, email_off, MSK)] == ["sms"]
    assert render(ACCRUED, view(), CUSTOMER, both_off, MSK) == []


def test_a_reason_or_a_channel_set_to_null_sends_nothing() -> None:
    config = notify_config({"templates": {"points_accrued": None, "points_redeemed": {"email": None}}})
    assert render(ACCRUED, view(), CUSTOMER, config, MSK) == []
    redeemed = event(Reason.POINTS_REDEEMED, points=Decimal(500))
    assert [m.channel for m in render(redeemed, view(), CUSTOMER, config, MSK)] == ["sms"]


def test_card_issued_is_never_notified() -> None:
    assert render(event(Reason.CARD_ISSUED), view(), CUSTOMER, NOTIFY, MSK) == []


def test_figures_of_another_customer_are_refused() -> None:
    with pytest.raises(ValueError, match="refusing to render"):
        render(ACCRUED, view(customer_id="c-other"), CUSTOMER, NOTIFY, MSK)
    with pytest.raises(ValueError, match="refusing to render"):
        render(ACCRUED, view(), replace(CUSTOMER, id="c-other"), NOTIFY, MSK)


# --- at most once ---------------------------------------------------------------------------------


def test_dedup_keys_name_channel_customer_and_event() -> None:
    sms, letter = render(ACCRUED, view(), CUSTOMER, NOTIFY, MSK)
    assert sms.dedup_key == f"sms:c-dmitry:{ACCRUED.key}"
    assert letter.dedup_key == f"email:c-dmitry:{ACCRUED.key}"
    assert (sms.kind, letter.kind) == ("points_accrued", "points_accrued")
    assert (sms.to, letter.to) == ("+79161234567", "dmitry@example.ru")


def test_the_same_event_renders_the_same_keys_and_texts() -> None:
    assert render(ACCRUED, view(), CUSTOMER, NOTIFY, MSK) == render(ACCRUED, view(), CUSTOMER, NOTIFY, MSK)


def test_equal_event_keys_of_two_customers_do_not_collide() -> None:
    detail = {"old_level": "Новичок", "level": "Фанат животных", "percent": "5"}
    key = "level:promotion:2026-02-01T12:00:00+03:00:base>fan"  # the same for everyone promoted then
    first = render(event(Reason.LEVEL_CHANGED, key=key, detail=detail), view(), CUSTOMER, NOTIFY, MSK)
    other = replace(CUSTOMER, id="c-anna")
    ev = event(Reason.LEVEL_CHANGED, key=key, detail=detail, customer_id="c-anna")
    second = render(ev, view(customer_id="c-anna"), other, NOTIFY, MSK)
    assert {m.dedup_key for m in first}.isdisjoint(m.dedup_key for m in second)


def test_overlong_dedup_keys_are_hashed_to_fit_the_column() -> None:
    ev = replace(ACCRUED, key="accrued:" + "x" * 300)
    keys = [m.dedup_key for m in render(ev, view(), CUSTOMER, NOTIFY, MSK)]
    assert all(len(k) <= DEDUP_KEY_MAX for k in keys)
    assert keys[0].startswith("sms:sha256:") and keys[1].startswith("email:sha256:")
    assert keys == [m.dedup_key for m in render(ev, view(), CUSTOMER, NOTIFY, MSK)]
