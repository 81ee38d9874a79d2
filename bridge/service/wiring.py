"""Building the bridge's parts from a validated config (one place, used by every command)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection
from sqlalchemy import Engine as SqlEngine

from bridge.domain.book import Rules
from bridge.domain.ledger import Event
from bridge.domain.views import CustomerView
from bridge.errors import ConfigError
from bridge.onec.mapping import Mapping
from bridge.onec.odata import ODataClient
from bridge.runtime.config import Config, default_config_path, load_config
from bridge.service.composer import Composer, Notifier
from bridge.service.cycle import Channel, Cycle
from bridge.service.engine import Engine
from bridge.service.gateway import Gateway
from bridge.service.onec_clients import onec_client, soap_client
from bridge.store.db import make_engine, require_current
from bridge.store.ledger import LedgerStore


def load(config_path: Path | None, *, secrets: bool = True) -> Config:
    """The config ``--config`` names; ``secrets=False`` for commands that contact nothing outside.

    Raises:
        ConfigError: the config's problems, followed by the mapping file's when the config names a
            mapping file that exists (so both are fixed in one round, not one after the other).
    """
    path = config_path or default_config_path()
    try:
        return load_config(path, secrets=secrets)
    except ConfigError as exc:
        more = _mapping_problems(path, exc.problems)
        if not more:
            raise
        raise ConfigError([*exc.problems, *more], **exc.fields) from None


def _mapping_problems(config_path: Path, problems: list[str]) -> list[str]:
    """The problems of the mapping file an invalid config names (``onec.mapping``, default
    ``mappings/ut11.yaml``), if it can be told which file that is and the file exists."""
    from bridge.onec.mapping import load_mapping
    from bridge.runtime.config import read_document
    from bridge.runtime.config_models import OnecConfig

    if any(p.startswith("onec.mapping") or p.startswith("onec:") for p in problems):
        return []  # the config's own line about it says enough
    try:
        data = read_document(Path(config_path).expanduser()).data
    except ConfigError:
        return []
    onec = data.get("onec") if isinstance(data, dict) else None
    default = OnecConfig.model_fields["mapping"].default
    named = onec.get("mapping", default) if isinstance(onec, dict) else None
    if not isinstance(named, str) or not named.strip():
        return []
    mapping = (Path(config_path).expanduser().absolute().parent / named).resolve()
    if not mapping.is_file():
        return []
    try:
        load_mapping(mapping)
    except ConfigError as exc:
        return exc.problems
    return []


def lines_net_of_points(config: Config) -> bool:
    """The mapping's ``orders.lines_net_of_points`` (true for UT 11 as the case study runs it)."""
    from bridge.onec.mapping import load_mapping

    return bool(load_mapping(config.mapping_path).orders.lines_net_of_points)


def rules_of(config: Config, net_of_points: bool | None = None) -> Rules:
    net = (
        lines_net_of_points(config) if net_of_points is None and config.bonus_enabled else bool(net_of_points)
    )
    return Rules(
        bonus=config.bonus_rules(lines_net_of_points=net) if config.bonus_enabled else None,
        discount=config.discount_rules() if config.discount_enabled else None,
    )


def open_database(config: Config, *, require_migrated: bool = True) -> SqlEngine:
    """The state database's engine; by default refuses a database ``db upgrade`` has not migrated."""
    engine = make_engine(config.state.url)
    if require_migrated:
        require_current(engine)
    return engine


def build_engine(config: Config, rules: Rules | None = None) -> Engine:
    """The loyalty engine over the configured state database (which must be migrated)."""
    db = open_database(config)
    prefix = config.cards.prefix if config.discount_enabled else None
    return Engine(LedgerStore(db), rules or rules_of(config), config.tz, card_prefix=prefix)


def make_source(config: Config, client: ODataClient, mapping: Mapping) -> Any:
    """The change source ``poll.changes`` names."""
    from bridge.onec.sources import ExchangePlanSource, ScanSource, SoapSource

    if config.poll.changes == "exchange_plan":
        assert config.poll.exchange_node is not None  # the config refuses it otherwise
        return ExchangePlanSource(client, mapping, config.poll.exchange_plan, config.poll.exchange_node)
    if config.poll.changes == "soap":
        return SoapSource(soap_client(config), mapping, config.tz)
    return ScanSource(client, mapping, config.poll, config.tz)


def make_notifier(config: Config) -> Notifier | None:
    """Render SPEC §4's notifications into the outbox (each at most once), if a channel is on."""
    notify = config.notify
    if notify.sms.url is None and notify.email.smtp_host is None:
        return None
    from bridge.domain.model import Customer
    from bridge.notify.templates import render
    from bridge.store import outbox, tracking

    def notifier(conn: Connection, event: Event, view: CustomerView, now: datetime) -> None:
        known = tracking.contacts(conn, event.customer_id)
        customer = Customer(event.customer_id, known["name"] or "", known["phone"], known["email"])
        for message in render(event, view, customer, notify, config.tz):
            outbox.enqueue(
                conn,
                channel=message.channel,
                kind=message.kind,
                customer_id=event.customer_id,
                target=message.to,
                payload=message.payload,
                now=now,
                dedup_key=message.dedup_key,
            )

    return notifier


def channels(config: Config) -> list[Channel]:
    """The outgoing channels the config turns on (1C write-back is always on)."""
    found: list[Channel] = []
    if config.site is not None:
        from bridge.site.webhook import WebhookSender

        previous = config.site.previous_secret
        sender = WebhookSender(
            config.site.webhook_url,
            config.site.secret.get_secret_value(),
            previous.get_secret_value() if previous is not None else None,
            timeout_s=config.site.timeout_s,
        )
        site = config.site
        found.append(Channel("webhook", sender.send, site.max_retry_hours, site.webhook_workers))
    hours = config.site.max_retry_hours if config.site is not None else 72
    sms = config.notify.sms
    if sms.url is not None:
        from bridge.notify.sms import SmsSender

        found.append(
            Channel(
                "sms",
                SmsSender(
                    sms.url, _secret(sms.token, "notify.sms.token_env"), sms.sender, timeout_s=sms.timeout_s
                ).send,
                hours,
            )
        )
    email = config.notify.email
    if email.smtp_host is not None:
        from bridge.notify.email import EmailSender

        sender_email = EmailSender(
            email.smtp_host,
            email.smtp_port,
            email.username,
            _secret(email.password, "notify.email.password_env") if email.username else None,
            email.from_ or "",
            email.starttls,
            timeout_s=email.timeout_s,
            from_name=config.notify.shop_name,
        )
        found.append(Channel("email", sender_email.send, hours))
    return found


def make_gateway(config: Config, mapping: Mapping) -> Gateway:
    """The 1C gateway for this config: its OData client, the mapping, the product groups."""
    return Gateway(
        onec_client(config),
        mapping,
        config.tz,
        groups=config.bonus.groups.keys() if config.bonus is not None else (),
        delivery_products=config.delivery_products,
        card_kind=config.cards.kind,
    )


def composed_engine(config: Config, mapping: Mapping | None = None) -> Engine:
    """The engine with the composer attached: every unit of work queues what 1C, the site and the
    customer must be told (``build_cycle``; ``resync`` without a 1C client)."""
    from bridge.onec.mapping import load_mapping

    mapping = mapping if mapping is not None else load_mapping(config.mapping_path)
    rules = rules_of(config, bool(mapping.orders.lines_net_of_points))
    composer = Composer(
        rules,
        config.tz,
        webhook=config.site is not None,
        notifier=make_notifier(config),
    )
    engine = build_engine(config, rules)
    engine.hooks.append(composer)
    return engine


def build_cycle(
    config: Config,
    *,
    clock: Callable[[], datetime],
    history: bool = False,
    source: Any = None,
    heartbeat: Callable[[], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Cycle:
    """The whole cycle for this config: 1C client and gateway, change source, engine, outbox."""
    from bridge.onec.mapping import load_mapping

    mapping = load_mapping(config.mapping_path)
    gateway = make_gateway(config, mapping)
    client = gateway.client
    engine = composed_engine(config, mapping)
    return Cycle(
        engine=engine,
        gateway=gateway,
        source=source if source is not None else make_source(config, client, mapping),
        track_days=config.poll.track_days,
        channels=channels(config),
        clock=clock,
        history=history,
        heartbeat=heartbeat,
        progress=progress,
        write_workers=config.onec.write_workers,
        keep_sent_days=config.state.keep_sent_days,
    )


def _secret(value: SecretStr | None, key: str) -> str:
    """A channel's secret; the config's validation already refused a channel without it."""
    if value is None:
        raise ConfigError(f"{key}: the variable it names is not set")
    return value.get_secret_value()
