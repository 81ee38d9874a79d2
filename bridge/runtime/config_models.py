"""The config file's shape: frozen pydantic models, one per section of CONTRACT.md's YAML.

Owns ``Config`` and the sections ``state``, ``onec``, ``poll``, ``http`` and ``log``; the programs'
sections live in ``config_programs``, the channels' in ``config_channels``, single-value rules and
the ``Section`` base in ``config_rules``. Every model is frozen and forbids unknown keys. Rules that
relate several keys are reported through ``config_rules.report`` under their full key path, so
validation never stops at the first problem. Secrets are resolved from the environment into private
attributes, which never appear in ``repr``, ``str`` or ``model_dump``.

Build a ``Config`` with ``bridge.runtime.config.load_config`` (or ``config_from_data``), not with
``Config.model_validate``: those supply the environment and the config file's directory.

Must not import anything of the bridge but ``bridge.domain.model``, ``bridge.errors`` and its
``config_*`` siblings.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL

from bridge.domain.model import BonusRules, DiscountRules, Level, Tier
from bridge.errors import ConfigError
from bridge.runtime import config_rules as rules
from bridge.runtime.config_channels import NotifyConfig, SiteConfig
from bridge.runtime.config_programs import BonusConfig, CardsConfig, DiscountConfig
from bridge.runtime.config_rules import Days, EnvName, HttpUrl, Seconds, Section, Text


class StateConfig(Section):
    url: Annotated[str, AfterValidator(rules.state_url)]
    # Delivered (and superseded) outbox messages are deleted this many days after; null keeps them.
    keep_sent_days: Days | None = 90

    @property
    def sqlalchemy_url(self) -> URL:
        """The URL to open (a bare ``postgresql://`` is opened with psycopg 3)."""
        return rules.sqlalchemy_url(self.url)


class SoapConfig(Section):
    wsdl: str | None = None
    address: HttpUrl | None = None  # overrides the WSDL's (often internal) service address

    @field_validator("wsdl")
    @classmethod
    def _wsdl(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            rules.http_url(value)
        elif value is not None:
            rules.non_blank(value)
        return value


class OnecConfig(Section):
    odata_url: HttpUrl
    username: Text
    password_env: EnvName = "ONEC_PASSWORD"
    mapping: Text = "mappings/ut11.yaml"
    timeout_s: Seconds = 30
    page_size: Annotated[int, Field(ge=1, le=5000)] = 500
    soap: Annotated[SoapConfig, BeforeValidator(rules.null_as_empty)] = SoapConfig()
    url_budget: Annotated[int, Field(ge=256)] = 2000
    verify_tls: bool = True
    write_workers: Annotated[int, Field(ge=1, le=16)] = 1

    _password: SecretStr = PrivateAttr(default=SecretStr(""))

    @field_validator("password_env")
    @classmethod
    def _password_set(cls, value: str, info: ValidationInfo) -> str:
        rules.check_secret(info, "onec.password_env", value, "the 1C connection")
        return value

    @field_validator("mapping")
    @classmethod
    def _mapping_exists(cls, value: str, info: ValidationInfo) -> str:
        base = info.context.get("base_dir") if isinstance(info.context, dict) else None
        if isinstance(base, Path) and not (base / value).is_file():
            rules.fail(
                f"mapping file {(base / value).resolve()} does not exist; give its path relative to "
                "the config file (e.g. mappings/ut11.yaml) or an absolute path"
            )
        return value

    @model_validator(mode="after")
    def _resolve_password(self, info: ValidationInfo) -> OnecConfig:
        self._password = SecretStr(rules.secret_value(rules.environ_of(info), self.password_env) or "")
        return self

    @property
    def password(self) -> SecretStr:
        """The 1C password from ``password_env``."""
        return self._password


class PollConfig(Section):
    interval_s: Seconds = 60
    start: Annotated[datetime, BeforeValidator(rules.start_moment)]
    overlap_s: Annotated[float, Field(ge=0)] = 600
    changes: Literal["scan", "exchange_plan", "soap"] = "scan"
    track_days: Annotated[int, Field(ge=0)] = 30
    reconcile_days: Days = 90
    reconcile_at: Annotated[time, BeforeValidator(rules.hhmm)] = time(3, 30)
    backfill_window_days: Days = 7
    exchange_plan: Text = "ExchangePlan_ОбменСайтом"  # entity set of the exchange plan (exchange_plan source)
    exchange_node: Text | None = None  # the node's Ref_Key (exchange_plan source)


class HttpConfig(Section):
    listen: Annotated[str, AfterValidator(rules.listen_address)] | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` to serve /healthz and /metrics on, or None for no HTTP endpoint."""
        return rules.split_listen(self.listen) if self.listen else None


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Config(Section):
    """The whole config file, validated. ``bonus``, ``discount`` and ``site`` are None when absent."""

    timezone: Annotated[str, AfterValidator(rules.timezone)]
    delivery_products: tuple[Text, ...] = ()
    state: StateConfig
    onec: OnecConfig
    poll: PollConfig
    bonus: BonusConfig | None = None
    discount: DiscountConfig | None = None
    cards: CardsConfig = CardsConfig()
    site: SiteConfig | None = None
    notify: NotifyConfig = NotifyConfig()
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()

    _config_path: Path = PrivateAttr(default=Path("config.yaml"))

    @field_validator("poll")
    @classmethod
    def _changes_source(cls, value: PollConfig, info: ValidationInfo) -> PollConfig:
        onec = info.data.get("onec")
        if value.changes == "soap" and isinstance(onec, OnecConfig) and onec.soap.wsdl is None:
            rules.report(
                info,
                "poll.changes",
                "is soap but onec.soap.wsdl is not set; set onec.soap.wsdl to the web service's WSDL "
                "or use changes: scan",
            )
        if value.changes == "exchange_plan" and not value.exchange_node:
            rules.report(
                info,
                "poll.exchange_node",
                "poll.changes is exchange_plan but no node is set; set poll.exchange_node to the "
                "Ref_Key of the site's node of poll.exchange_plan "
                "(1C: НСИ и администрирование → Синхронизация данных)",
            )
        return value

    @field_validator("notify", "cards", "http", "log", "delivery_products", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        # "notify:" with nothing under it is YAML null: treat it as the section's defaults.
        if value is None:
            return () if info.field_name == "delivery_products" else {}
        return value

    @model_validator(mode="after")
    def _some_program(self, info: ValidationInfo) -> Config:
        if not (self.bonus_enabled or self.discount_enabled):
            rules.report(
                info,
                "bonus",
                "neither the bonus nor the discount program is enabled; add a bonus: or discount: "
                "section (see config.example.yaml)",
            )
        context = info.context if isinstance(info.context, dict) else {}
        path = context.get("config_path")
        if isinstance(path, Path):
            self._config_path = path
        return self

    @property
    def config_path(self) -> Path:
        """The absolute path of the config file this came from."""
        return self._config_path

    @property
    def mapping_path(self) -> Path:
        """``onec.mapping``, resolved against the config file's directory."""
        return (self._config_path.parent / self.onec.mapping).resolve()

    @property
    def wsdl_location(self) -> str | None:
        """``onec.soap.wsdl`` as a URL, or as an absolute file path if it was given as a path."""
        wsdl = self.onec.soap.wsdl
        if wsdl is None or "://" in wsdl:
            return wsdl
        return str((self._config_path.parent / wsdl).resolve())

    @property
    def tz(self) -> ZoneInfo:
        """The zone of 1C's local times."""
        return ZoneInfo(self.timezone)

    @property
    def poll_start(self) -> datetime:
        """``poll.start`` as an aware datetime (a naive one is in ``timezone``)."""
        start = self.poll.start
        return start if start.tzinfo is not None else start.replace(tzinfo=self.tz)

    @property
    def bonus_enabled(self) -> bool:
        return self.bonus is not None and self.bonus.enabled

    @property
    def discount_enabled(self) -> bool:
        return self.discount is not None and self.discount.enabled

    def bonus_rules(self, lines_net_of_points: bool = True) -> BonusRules:
        """The bonus program's settings for the domain.

        Args:
            lines_net_of_points: the mapping's ``orders.lines_net_of_points`` (1C line amounts
                already net of redeemed points).

        Raises:
            ConfigError: the bonus program is absent or disabled (check ``bonus_enabled`` first).
        """
        bonus = self.bonus
        if bonus is None or not bonus.enabled:
            raise ConfigError(["bonus: the bonus program is not enabled; set bonus.enabled: true"])
        return BonusRules(
            tiers=tuple(Tier(t.code, t.name, t.threshold, t.rate) for t in bonus.tiers),
            point_value=bonus.point_value,
            point_precision=bonus.point_precision,
            hold_days=bonus.hold_days,
            expiry_days=bonus.expiry_days,
            expiry_warning_days=bonus.expiry_warning_days,
            max_redeem_share=bonus.max_redeem_share,
            default_coefficient=bonus.default_coefficient,
            groups=dict(bonus.groups),
            volume_window_days=bonus.volume_window_days,
            lines_net_of_points=lines_net_of_points,
        )

    def discount_rules(self) -> DiscountRules:
        """The discount program's settings for the domain.

        Raises:
            ConfigError: the discount program is absent or disabled (check ``discount_enabled``).
        """
        discount = self.discount
        if discount is None or not discount.enabled:
            raise ConfigError(["discount: the discount program is not enabled; set discount.enabled: true"])
        return DiscountRules(
            levels=tuple(
                Level(lv.code, lv.name, lv.threshold, lv.percent, lv.term_days) for lv in discount.levels
            ),
            period_days=discount.period_days,
        )


def model_fields_by_alias(model: type[BaseModel]) -> Mapping[str, Any]:
    """A model's fields keyed by the name they have in the YAML file."""
    return {(info.alias or name): info for name, info in model.model_fields.items()}
