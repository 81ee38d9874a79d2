"""A scripted 1C history, replayable on any simulator: partners, orders over simulated days,
redemptions, closes and cancels, all decided by a seeded RNG so two runs see the same base.

Objects are named by labels (``p07``, ``o0123``): the simulator gives new ``Ref_Key`` values in
every run, so the comparison of two runs goes through the labels. Every order has its own
``Date`` (one a minute at most), so the scan reads documents in the same order in every run.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.simulator.operator import Operator

PRODUCTS: tuple[tuple[str, int], ...] = (
    ("Велосипед горный Stels Navigator 700 MD 27.5", 32000),
    ("Велосипед городской Forward Dortmund 28 2.0", 21000),
    ("Велосипед детский Novatrack Astra 16", 8900),
    ("Куртка велосипедная Gore Wear C5 Gore-Tex", 14700),
    ("Велоперчатки Author Comfort", 1200),
    ("Джерси Castelli Competizione", 6300),
    ("Шлем Cigna WT-015 (уценка)", 2500),
    ("Фляга Zefal 750 мл (уценка)", 450),
)
DELIVERY = ("Доставка", 500)
STEP_HOURS = (10, 14, 19)


@dataclass
class Step:
    """The operator's actions before one cycle, and the cycle's clock."""

    at: datetime
    actions: list[tuple[str, Any]] = field(default_factory=list)


@dataclass
class History:
    """A replayable script; ``replay`` applies it to one operator and keeps the labels' keys."""

    partners: list[str]
    steps: list[Step]

    @property
    def orders(self) -> int:
        return sum(1 for s in self.steps for a in s.actions if a[0] == "order")


def script(*, seed: int, days: int, partners: int, per_step: int, start: datetime) -> History:
    rng = random.Random(seed)
    names = [f"p{i:02d}" for i in range(partners)]
    steps: list[Step] = []
    open_orders: list[str] = []
    count = 0
    for day in range(days):
        for hour in STEP_HOURS:
            # After the first day, a jump past the 14-day hold: later orders can spend points.
            offset = day if day == 0 else day + 15
            at = start + timedelta(days=offset, hours=hour - start.hour)
            step = Step(at)
            # Some open orders are closed or cancelled first (an order closed days after its Date).
            for label in list(open_orders):
                roll = rng.random()
                if roll < 0.35:
                    step.actions.append(("close", label))
                    open_orders.remove(label)
                elif roll < 0.42:
                    step.actions.append(("cancel", label))
                    open_orders.remove(label)
            for n in range(rng.randint(per_step - 2, per_step + 2)):
                label = f"o{count:04d}"
                count += 1
                items = [
                    (name, rng.choice((1, 1, 1, 2)), price)
                    for name, price in rng.sample(PRODUCTS, rng.randint(1, 3))
                ]
                if rng.random() < 0.3:
                    items.append((DELIVERY[0], 1, DELIVERY[1]))
                redeem = rng.choice((0, 0, 0, 100, 300, 1000)) if day >= 1 else 0
                redeem = min(redeem, items[0][1] * items[0][2] // 2)  # the site lowers the first row
                date = at - timedelta(minutes=50 - n)  # distinct dates: the same read order each run
                step.actions.append(
                    ("order", (label, rng.choice(names), items, date, redeem, rng.random() < 0.15))
                )
                open_orders.append(label)
            steps.append(step)
    return History(names, steps)


class Replay:
    """Applies a ``History`` to one simulator step by step, remembering each label's ``Ref_Key``."""

    def __init__(self, history: History, op: Operator) -> None:
        self.history = history
        self.op = op
        self.keys: dict[str, str] = {}

    def setup(self) -> None:
        for i, name in enumerate(self.history.partners):
            self.keys[name] = self.op.partner(f"Клиент {name}", phone=f"+7916{i:07d}")

    def steps(self, settle: Callable[[], bool] = lambda: True) -> Iterator[Step]:
        """Apply each step's operator actions, then yield it. ``settle`` runs first: steps are hours
        apart, and by then 1C has finished every request of the last one. Without it a write the
        bridge stopped waiting for could land after an operator's later action — a delayed goods
        section putting back rows the operator has since cancelled — which a real 1C never does."""
        for step in self.history.steps:
            assert settle(), "1C is still working on a request of the previous step"
            for kind, arg in step.actions:
                if kind == "order":
                    label, partner, items, date, redeem, closed = arg
                    self.keys[label] = self.op.order(
                        self.keys[partner],
                        items,
                        date=date,
                        redeem=redeem,
                        status="Закрыт" if closed else "КОбеспечению",
                    )
                elif kind == "close":
                    self.op.close(self.keys[arg])
                elif kind == "cancel":
                    self.op.cancel(self.keys[arg])
            yield step

    def labels(self, prefix: str) -> dict[str, str]:
        return {label: key for label, key in self.keys.items() if label.startswith(prefix)}
