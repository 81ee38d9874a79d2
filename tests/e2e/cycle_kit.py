"""A whole installation on loopback for the daemon's end-to-end tests: the 1C simulator with the
reference catalogs, a site receiver, a SQLite state database, a real config, and the cycle with
a clock the test moves. Nothing is patched: every byte crosses real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from bridge.runtime.config import Config, config_from_data
from bridge.runtime.signals import StopToken
from bridge.service.cycle import Cycle, CycleResult
from bridge.service.wiring import build_cycle
from bridge.simulator import SimStore, Simulator, load_reference
from bridge.simulator.operator import Operator
from bridge.simulator.site import SiteReceiver
from bridge.store.db import make_engine, upgrade

MSK = ZoneInfo("Europe/Moscow")
ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def config_data(sim: Simulator, site: SiteReceiver | None, state: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "timezone": "Europe/Moscow",
        "delivery_products": ["Доставка"],
        "state": {"url": f"sqlite:///{state}"},
        "onec": {
            "odata_url": sim.odata_url,
            "username": sim.username,
            "password_env": "ONEC_PASSWORD",
            "mapping": str(ROOT / "mappings" / "ut11.yaml"),
            "timeout_s": 10,
        },
        "poll": {"start": "2025-01-01T00:00:00", "track_days": 30},
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
            "period_days": 365,
            "levels": [
                {"code": "base", "name": "Новичок", "threshold": 0, "percent": 0, "term_days": None},
                {"code": "fan", "name": "Фанат животных", "threshold": 10000, "percent": 5, "term_days": 180},
                {"code": "king", "name": "Царь зверей", "threshold": 50000, "percent": 10, "term_days": 180},
            ],
        },
        "cards": {"prefix": "2990", "kind": "Дисконтная карта"},
    }
    if site is not None:
        data["site"] = {"webhook_url": site.url, "secret_env": "SITE_WEBHOOK_SECRET"}
    for key, value in overrides.items():
        node = data
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        if value is None and last in node:
            del node[last]
        else:
            node[last] = value
    return data


@dataclass
class World:
    sim: Simulator
    site: SiteReceiver | None
    config: Config
    cycle: Cycle
    clock: list[datetime]
    op: Operator
    results: list[CycleResult] = field(default_factory=list)

    @property
    def store(self) -> SimStore:
        return self.sim.store

    def once(self, at: datetime | None = None) -> CycleResult:
        """One `once` at ``at`` (the cycle's clock, like ``--now``)."""
        if at is not None:
            self.clock[0] = at
        result = self.cycle.run(StopToken())
        self.results.append(result)
        return result

    def order_attr(self, order: str, description: str) -> Any:
        return self.op.order_attribute(order, description)

    def partner_attr(self, partner: str, description: str) -> Any:
        return self.op.partner_attribute(partner, description)


@contextmanager
def world(
    tmp: Path,
    *,
    site: bool = True,
    start: datetime | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Iterator[World]:
    store = SimStore()
    load_reference(store)
    with Simulator(store) as sim:
        receiver = SiteReceiver(SECRET) if site else None
        if receiver is not None:
            receiver.start()
        try:
            data = config_data(sim, receiver, tmp / "state.db", **overrides)
            environ = {"ONEC_PASSWORD": sim.password, "SITE_WEBHOOK_SECRET": SECRET, **(env or {})}
            config = config_from_data(data, config_path=tmp / "config.yaml", environ=environ)
            upgrade(make_engine(config.state.url))
            clock = [start or datetime(2026, 1, 1, 9, tzinfo=MSK)]
            cycle = build_cycle(config, clock=lambda: clock[0])
            yield World(sim, receiver, config, cycle, clock, Operator(store))
        finally:
            if receiver is not None:
                receiver.stop()


def config_yaml(data: Any) -> str:
    """Config data (``config_data``) as a YAML file's text: Decimals as plain numbers."""
    return yaml.safe_dump(_plain(data), allow_unicode=True)


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    return value
