"""Building the bridge's parts from a validated config (one place, used by every command)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine as SqlEngine

from bridge.domain.book import Rules
from bridge.runtime.config import Config, default_config_path, load_config
from bridge.service.engine import Engine
from bridge.store.db import make_engine, require_current
from bridge.store.ledger import LedgerStore


def load(config_path: Path | None) -> Config:
    return load_config(config_path or default_config_path())


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
