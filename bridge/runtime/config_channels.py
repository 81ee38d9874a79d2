"""Config sections of the outbound channels: ``site`` (the webhook) and ``notify`` (SMS, e-mail).

Owns their models and the secrets they need, resolved from the environment into private attributes
(never in ``repr``, ``str`` or ``model_dump``) and required only while the channel is on.
Must not import anything of the bridge but its sibling ``config_rules``.
"""

from __future__ import annotations

from typing import Annotated

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

    _secret: SecretStr = PrivateAttr(default=SecretStr(""))
    _previous_secret: SecretStr | None = PrivateAttr(default=None)

    @field_validator("secret_env", "previous_secret_env")
    @classmethod
    def _secret_set(cls, value: str | None, info: ValidationInfo) -> str | None:
        path = f"site.{info.field_name}"
        rules.check_secret(info, path, value, "signing the webhook")
        problem = rules.webhook_secret(rules.environ_of(info), value) if value else None
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


class NotifyConfig(Section):
    sms: Annotated[SmsConfig, BeforeValidator(rules.null_as_empty)] = SmsConfig()
    email: Annotated[EmailConfig, BeforeValidator(rules.null_as_empty)] = EmailConfig()
