"""Config sections of the outbound channels: ``site`` (the webhook) and ``notify`` (SMS, e-mail).

Owns their models and the secrets they need, resolved from the environment into private attributes
(never in ``repr``, ``str`` or ``model_dump``) and required only while the channel is on; and the
message templates (``notify.templates``): the Russian defaults, the placeholders each event reason
may use (``template_fields``), and their validation at load time, so a typo in a placeholder is a
config error at start-up, not a failed message at 3 a.m.
Must not import anything of the bridge but its sibling ``config_rules``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.runtime import config_rules as rules
from bridge.runtime.config_rules import EnvName, HttpUrl, Seconds, Section, Text


class SiteConfig(Section):
    webhook_url: HttpUrl
    secret_env: EnvName = "SITE_WEBHOOK_SECRET"
    previous_secret_env: EnvName | None = None
    max_retry_hours: Seconds = 72
    timeout_s: Seconds = 10
    webhook_workers: Annotated[int, Field(ge=1, le=16)] = 1

    _secret: SecretStr = PrivateAttr(default=SecretStr(""))
    _previous_secret: SecretStr | None = PrivateAttr(default=None)

    @field_validator("secret_env", "previous_secret_env")
    @classmethod
    def _secret_set(cls, value: str | None, info: ValidationInfo) -> str | None:
        path = f"site.{info.field_name}"
        rules.check_secret(info, path, value, "signing the webhook")
        needed = value is not None and rules.secrets_required(info)
        problem = rules.webhook_secret(rules.environ_of(info), value) if value and needed else None
        if problem:
            rules.report(info, path, problem)
        return value

    @model_validator(mode="after")
    def _resolve_secrets(self, info: ValidationInfo) -> SiteConfig:
        environ = rules.environ_of(info)
        self._secret = SecretStr(rules.secret_value(environ, self.secret_env) or "")
        previous = rules.secret_value(environ, self.previous_secret_env)
        self._previous_secret = SecretStr(previous) if previous else None
        return self

    @property
    def secret(self) -> SecretStr:
        """The signing secret (``whsec_`` + base64) from ``secret_env``."""
        return self._secret

    @property
    def previous_secret(self) -> SecretStr | None:
        """The secret being rotated out (also signed with), from ``previous_secret_env``."""
        return self._previous_secret


class SmsConfig(Section):
    url: HttpUrl | None = None
    token_env: EnvName = "SMS_TOKEN"
    sender: Annotated[str, Field(min_length=1, max_length=11)] = "SHOP"
    timeout_s: Seconds = 10

    _token: SecretStr | None = PrivateAttr(default=None)

    @field_validator("token_env")
    @classmethod
    def _token_set(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("url"):
            rules.check_secret(info, "notify.sms.token_env", value, "the SMS channel (notify.sms.url is set)")
        return value

    @model_validator(mode="after")
    def _resolve_token(self, info: ValidationInfo) -> SmsConfig:
        if self.url:
            token = rules.secret_value(rules.environ_of(info), self.token_env)
            self._token = SecretStr(token) if token else None
        return self

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @property
    def token(self) -> SecretStr | None:
        """The gateway's bearer token (None while the channel is off)."""
        return self._token


class EmailConfig(Section):
    smtp_host: Annotated[str, AfterValidator(rules.hostname)] | None = None
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    username: Text | None = None
    password_env: EnvName = "SMTP_PASSWORD"
    from_: str | None = Field(default=None, alias="from")
    starttls: bool = True
    timeout_s: Seconds = 30

    _password: SecretStr | None = PrivateAttr(default=None)

    @field_validator("password_env")
    @classmethod
    def _password_set(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("smtp_host") and info.data.get("username"):
            rules.check_secret(
                info, "notify.email.password_env", value, "SMTP login (notify.email.username is set)"
            )
        return value

    @field_validator("from_", mode="after")
    @classmethod
    def _sender(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and "@" not in value.strip("@"):
            rules.fail(f"{value!r} is not an e-mail address; write e.g. shop@your-store.ru")
        if value is None and info.data.get("smtp_host"):
            rules.report(
                info,
                "notify.email.from",
                "is required when smtp_host is set; give the sender address, e.g. shop@your-store.ru",
            )
        return value

    @model_validator(mode="after")
    def _resolve_password(self, info: ValidationInfo) -> EmailConfig:
        if self.smtp_host and self.username:
            password = rules.secret_value(rules.environ_of(info), self.password_env)
            self._password = SecretStr(password) if password else None
        return self

    @property
    def enabled(self) -> bool:
        return self.smtp_host is not None

    @property
    def password(self) -> SecretStr | None:
        """The SMTP password (None while e-mail is off or needs no login)."""
        return self._password


# --- message templates ------------------------------------------------------------------------------

#: Placeholders every template may use (the customer's state after the event).
COMMON_FIELDS = (
    "name",
    "shop",
    "card",
    "date",
    "total",
    "total_word",
    "available",
    "available_word",
    "tier",
    "level",
    "percent",
    "valid_until",
    "term",
)
_POINTS = ("points", "points_word")
_EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "points_accrued": _POINTS,
    "points_available": _POINTS,
    "points_redeemed": _POINTS,
    "points_released": _POINTS,
    "points_reversed": _POINTS,
    "points_expiring": _POINTS,
    "points_expired": _POINTS,
    "tier_changed": ("old_tier",),
    "level_changed": ("old_level",),
    "level_recomputed": ("old_level",),
    "card_created": (),
}
_SIGN = "\n\n{shop}"
_HELLO = "Здравствуйте, {name}!\n\n"

#: The built-in texts (Russian). Reasons not listed here (``card_issued``) are never notified.
DEFAULT_TEMPLATES: dict[str, dict[str, Any]] = {
    "points_accrued": {
        "sms": "{shop}: начислено {points} {points_word}, доступны с {date}. "
        "Всего на счёте {total} {total_word}.",
        "email": {
            "subject": "Начислено {points} {points_word}",
            "body": _HELLO + "За покупку вам начислено {points} {points_word}. Ими можно будет оплатить "
            "покупки с {date}.\nВсего на счёте: {total} {total_word}, доступно сейчас: {available} "
            "{available_word}." + _SIGN,
        },
    },
    "points_available": {
        "sms": "{shop}: бонусы за покупку доступны для оплаты: {points} {points_word}. "
        "Всего доступно {available} {available_word}.",
        "email": {
            "subject": "Бонусы доступны для оплаты: {points} {points_word}",
            "body": _HELLO + "С {date} бонусы за покупку доступны для оплаты: {points} {points_word}.\n"
            "Всего доступно: {available} {available_word}, всего на счёте: {total} {total_word}." + _SIGN,
        },
    },
    "points_redeemed": {
        "sms": "{shop}: в оплату заказа списано {points} {points_word}. На счёте {total} {total_word}.",
        "email": {
            "subject": "Оплата бонусами: {points} {points_word}",
            "body": _HELLO + "В оплату заказа списано: {points} {points_word}.\nОстаток на счёте: "
            "{total} {total_word}, доступно: {available} {available_word}." + _SIGN,
        },
    },
    "points_released": {
        "sms": "{shop}: бонусы, отложенные на заказ, вернулись на счёт: {points} {points_word}. "
        "Доступно {available} {available_word}.",
        "email": {
            "subject": "Бонусы вернулись на счёт: {points} {points_word}",
            "body": _HELLO + "Бонусы, отложенные на оплату заказа, вернулись на ваш счёт: {points} "
            "{points_word}.\nДоступно: {available} {available_word}, всего на счёте: {total} "
            "{total_word}." + _SIGN,
        },
    },
    "points_reversed": {
        "sms": "{shop}: начисление за заказ отменено (возврат или отмена): {points} {points_word}. "
        "На счёте {total} {total_word}.",
        "email": {
            "subject": "Отмена начисления: {points} {points_word}",
            "body": _HELLO + "Из-за возврата или отмены заказа начисленные за него бонусы отменены: "
            "{points} {points_word}.\nНа счёте: {total} {total_word}, доступно: {available} "
            "{available_word}." + _SIGN,
        },
    },
    "points_expiring": {
        "sms": "{shop}: {date} сгорают бонусы: {points} {points_word}. Успейте потратить!",
        "email": {
            "subject": "{date} сгорают бонусы: {points} {points_word}",
            "body": _HELLO + "{date} истекает срок действия бонусов: {points} {points_word}. Успейте "
            "оплатить ими покупку.\nДоступно сейчас: {available} {available_word}." + _SIGN,
        },
    },
    "points_expired": {
        "sms": "{shop}: {date} сгорели неиспользованные бонусы: {points} {points_word}. "
        "На счёте {total} {total_word}.",
        "email": {
            "subject": "Бонусы сгорели: {points} {points_word}",
            "body": _HELLO + "{date} истёк срок действия бонусов: {points} {points_word}.\n"
            "На счёте: {total} {total_word}, доступно: {available} {available_word}." + _SIGN,
        },
    },
    "tier_changed": {
        "sms": "{shop}: ваш статус в бонусной программе теперь «{tier}» (был «{old_tier}»).",
        "email": {
            "subject": "Ваш статус: «{tier}»",
            "body": _HELLO + "Ваш статус в бонусной программе изменён: «{old_tier}» → «{tier}»." + _SIGN,
        },
    },
    "level_changed": {
        "sms": "{shop}: ваш уровень теперь «{level}», скидка {percent} % {term}.",
        "email": {
            "subject": "Ваш уровень: «{level}», скидка {percent} %",
            "body": _HELLO + "Ваш уровень в программе скидок изменён: «{old_level}» → «{level}».\n"
            "Скидка {percent} % на весь ассортимент действует {term}." + _SIGN,
        },
    },
    "level_recomputed": {
        "sms": "{shop}: ваш уровень «{level}» сохранён, скидка {percent} % {term}.",
        "email": {
            "subject": "Ваш уровень «{level}» сохранён",
            "body": _HELLO + "По итогам покупок за период ваш уровень «{level}» сохранён.\n"
            "Скидка {percent} % на весь ассортимент действует {term}." + _SIGN,
        },
    },
    "card_created": {
        "sms": "{shop}: для вас оформлена карта лояльности № {card}. Получите её вместе с заказом.",
        "email": {
            "subject": "Ваша карта лояльности № {card}",
            "body": _HELLO + "Для вас оформлена карта лояльности № {card}. Пластиковую карту выдадим "
            "вместе с заказом, а до тех пор достаточно назвать её номер." + _SIGN,
        },
    },
}


def template_fields(reason: str) -> tuple[str, ...]:
    """The placeholders a template of ``reason`` may use (empty for a reason never notified)."""
    extra = _EXTRA_FIELDS.get(reason)
    return () if extra is None else (*extra, *COMMON_FIELDS)


def template_problem(text: str, reason: str) -> str | None:
    """Why ``text`` is not a valid template for ``reason`` (``what; what to do``), or None."""
    allowed = template_fields(reason)
    names = ", ".join("{" + name + "}" for name in sorted(allowed))
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        return (
            f"is not a valid template ({exc}); write placeholders as {{name}} and a literal brace "
            "as {{ or }}"
        )
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in allowed:
            shown = "{" + field + "}" if field else "{}"
            return f"unknown placeholder {shown}; use only {names}"
        if spec or conversion:
            return f"placeholder {{{field}}} takes no format or conversion; write just {{{field}}}"
    return None


class EmailTemplate(Section):
    subject: Text
    body: Text

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value or "\r" in value:
            rules.fail("must be one line; move the rest into body")
        return value


class ReasonTemplates(Section):
    """The texts of one event reason; a null channel sends nothing on it."""

    sms: Text | None = None
    email: EmailTemplate | None = None


def _defaults(reason: str) -> ReasonTemplates:
    item = DEFAULT_TEMPLATES[reason]
    return ReasonTemplates(sms=item["sms"], email=EmailTemplate(**item["email"]))


class TemplatesConfig(Section):
    """Texts per event reason. Omitted keys keep the built-in default; null turns it off."""

    points_accrued: ReasonTemplates | None = _defaults("points_accrued")
    points_available: ReasonTemplates | None = _defaults("points_available")
    points_redeemed: ReasonTemplates | None = _defaults("points_redeemed")
    points_released: ReasonTemplates | None = _defaults("points_released")
    points_reversed: ReasonTemplates | None = _defaults("points_reversed")
    points_expiring: ReasonTemplates | None = _defaults("points_expiring")
    points_expired: ReasonTemplates | None = _defaults("points_expired")
    tier_changed: ReasonTemplates | None = _defaults("tier_changed")
    level_changed: ReasonTemplates | None = _defaults("level_changed")
    level_recomputed: ReasonTemplates | None = _defaults("level_recomputed")
    card_created: ReasonTemplates | None = _defaults("card_created")

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        # A reason given in part keeps the defaults of the keys left out (sms, email, subject, body).
        if not isinstance(data, Mapping):
            return data
        merged = dict(data)
        for reason, value in data.items():
            default = DEFAULT_TEMPLATES.get(str(reason))
            if default is None or not isinstance(value, Mapping):
                continue
            item = {"sms": default["sms"], "email": default["email"], **value}
            if isinstance(value.get("email"), Mapping):
                item["email"] = {**default["email"], **value["email"]}
            merged[reason] = item
        return merged

    @model_validator(mode="after")
    def _placeholders(self, info: ValidationInfo) -> TemplatesConfig:
        for reason in DEFAULT_TEMPLATES:
            item = self.for_reason(reason)
            if item is None:
                continue
            texts = {"sms": item.sms}
            if item.email is not None:
                texts |= {"email.subject": item.email.subject, "email.body": item.email.body}
            for channel, text in texts.items():
                problem = template_problem(text, reason) if text is not None else None
                if problem:
                    rules.report(info, f"notify.templates.{reason}.{channel}", problem)
        return self

    def for_reason(self, reason: str) -> ReasonTemplates | None:
        """The texts for an event reason, or None when it sends nothing."""
        if reason not in DEFAULT_TEMPLATES:
            return None
        value: ReasonTemplates | None = getattr(self, reason)
        return value


class NotifyConfig(Section):
    shop_name: Text = "Магазин"
    sms: Annotated[SmsConfig, BeforeValidator(rules.null_as_empty)] = SmsConfig()
    email: Annotated[EmailConfig, BeforeValidator(rules.null_as_empty)] = EmailConfig()
    templates: Annotated[TemplatesConfig, BeforeValidator(rules.null_as_empty)] = TemplatesConfig()
