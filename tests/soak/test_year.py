"""A year in the life of one store, day by day: the soak test.

One installation (``tests.e2e.cycle_kit.world``: the 1C simulator over real HTTP, the site
receiver, a SQLite state database, both programs on, ``state.keep_sent_days: 30``) runs one cycle
every simulated morning and now and then a second one in the afternoon, while ``Shop`` plays the
store's 1C users and site (orders, closes, cancellations, reopenings, corrections after closing,
returns, redemptions, cards handed out; quiet Sundays and quiet days). Time does the rest: holds
end, expiry warnings go out, points expire, level terms end, orders leave the rolling volume
window and the discount period.

* After every cycle (every ``check_every``-th in the long run, and the last) ``Inspector`` holds
  1C, the site and the ledger to each other (see ``tests/soak/consistency.py``).
* At the end the oracle (``tests/soak/oracle.py``) replays 1C's history through the pure rules
  from nothing and compares every customer's book with the ledger the bridge built cycle by cycle;
  the final state of each order in 1C is checked against SPEC's arithmetic.
* A report (``-s``): seconds per cycle in the first and the last month, outbox rows (bounded by
  the pruning), the state database's size, what the shop did and what the site was told.
* Each tier change is told once (SPEC §4). (It was not, with a rolling volume window, until
  ``customers.tier_seen_at``: the soak found it; the minimal cases are in
  ``tests/domain/test_time_windows.py``.)

Each run is made once per module (a fixture) and judged by the tests that read it.

The default run is the ``season`` slice: 70 days, 18 customers, a calendar compressed so that
every time-driven rule comes round several times (hold 7 days, expiry 40, volume window 30,
discount period 45, terms 30). ``--run-slow`` adds a whole year of it with 50 customers, and a
year with the usual lengths (lifetime volume, hold 14, expiry 120, period 180, terms 90).
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import func, select

from bridge.domain.book import Book
from bridge.store import schema as t
from tests.e2e.cycle_kit import MSK, World, world
from tests.soak.consistency import Inspector
from tests.soak.oracle import Journal, Reading, differences, final_state_problems, replay
from tests.soak.shop import Shop

START = datetime(2026, 1, 12, 9, tzinfo=MSK)  # a Monday


def levels(term_days: int) -> list[dict[str, Any]]:
    return [
        {"code": "base", "name": "Новичок", "threshold": 0, "percent": 0, "term_days": None},
        {"code": "fan", "name": "Фанат животных", "threshold": 10000, "percent": 5, "term_days": term_days},
        {"code": "king", "name": "Царь зверей", "threshold": 50000, "percent": 10, "term_days": term_days},
    ]


COMPRESSED: dict[str, Any] = {
    "bonus.hold_days": 7,
    "bonus.expiry_days": 40,
    "bonus.expiry_warning_days": 5,
    "bonus.volume_window_days": 30,
    "discount.period_days": 45,
    "discount.levels": levels(30),
}
USUAL: dict[str, Any] = {
    "bonus.hold_days": 14,
    "bonus.expiry_days": 120,
    "bonus.expiry_warning_days": 7,
    "discount.period_days": 180,
    "discount.levels": levels(90),
}


@dataclass(frozen=True)
class Variant:
    name: str
    days: int
    customers: int
    rules: dict[str, Any]
    check_every: int = 1  # cycles between two full inspections (the last cycle is always inspected)
    seed: int = 2026


@dataclass
class Run:
    """What a run measured, for the report."""

    variant: Variant
    cycles: list[tuple[int, float]] = field(default_factory=list)  # (day, seconds)
    work: list[tuple[int, int, int]] = field(default_factory=list)  # (day, writes to 1C, requests)
    outbox_rows: list[tuple[int, int]] = field(default_factory=list)  # (day, rows after the cycle)
    documents: int = 0
    db_bytes: int = 0
    wal_bytes: int = 0
    shop: Counter[str] = field(default_factory=Counter)
    told: Counter[str] = field(default_factory=Counter)  # webhook reasons the site acted on
    inspected: tuple[int, int, int] = (0, 0, 0)  # cycles, orders, open orders with a discount
    in_debt: int = 0  # customers seen owing points
    refused: int = 0  # orders seen with a refusal
    oracle: tuple[int, int] = (0, 0)  # customers, document versions replayed
    repeated: list[str] = field(default_factory=list)  # tier changes the site was told twice
    wall_s: float = 0.0

    def month(self, first: bool) -> list[float]:
        last_day = self.cycles[-1][0]
        return [s for d, s in self.cycles if (d < 30 if first else d > last_day - 30)]

    def work_in(self, first: bool) -> tuple[float, float]:
        """Median writes to 1C and requests to 1C per cycle in the first or the last month."""
        last_day = self.work[-1][0]
        month = [(w, r) for d, w, r in self.work if (d < 30 if first else d > last_day - 30)]
        return statistics.median(w for w, _ in month), statistics.median(r for _, r in month)

    def text(self) -> str:
        first, last = self.month(True), self.month(False)
        rows = dict(self.outbox_rows)
        return "\n".join(
            [
                f"soak {self.variant.name}: {self.variant.days} days, {self.variant.customers} customers, "
                f"{len(self.cycles)} cycles, {self.documents} documents applied, {self.wall_s:.1f} s in all",
                f"  seconds per cycle: first month median {statistics.median(first):.3f} "
                f"(max {max(first):.3f}), last month median {statistics.median(last):.3f} "
                f"(max {max(last):.3f}); "
                f"writes to 1C and requests per cycle (medians): first month {self.work_in(True)}, "
                f"last month {self.work_in(False)}",
                "  outbox rows after the cycle: "
                + ", ".join(f"day {d}: {rows[d]}" for d in sorted(rows) if d % 30 == 0 or d == max(rows)),
                f"  state database: {self.db_bytes / 1e6:.2f} MB, its WAL {self.wal_bytes / 1e6:.2f} MB",
                f"  inspected: {self.inspected[0]} cycles, {self.inspected[1]} order checks, "
                f"{self.inspected[2]} of open orders at a discount level; oracle: {self.oracle[0]} "
                f"customers, {self.oracle[1]} document versions replayed",
                f"  the shop: {dict(sorted(self.shop.items()))}; redemptions refused: {self.refused}, "
                f"customers in debt at some point: {self.in_debt}",
                f"  the site was told: {dict(sorted(self.told.items()))}; the same tier change twice: "
                f"{len(self.repeated)}",
            ]
        )


def quietly(tmp: Path, variant: Variant) -> Run:
    """``play`` with the cycle's logs above warnings only (it logs every write-back at debug level,
    thousands of lines a simulated day); the logging configuration is put back afterwards."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        return play(tmp, variant)
    finally:
        structlog.configure(**saved)


def play(tmp: Path, variant: Variant) -> Run:
    """The whole run; raises AssertionError at the first cycle that leaves an inconsistency."""
    began = time.monotonic()
    run = Run(variant)
    overrides = {
        **variant.rules,
        "state.keep_sent_days": 30,
        "poll.start": START.replace(hour=0, tzinfo=None).isoformat(),
    }
    with world(tmp, start=START, **overrides) as w:
        assert w.site is not None
        shop = Shop(w.op, w.site, random.Random(variant.seed), variant.customers)
        inspector = Inspector(w, shop.points_on)
        journal = Journal(w.store)
        days = random.Random(variant.seed + 1)
        cycle = 0
        for day in range(variant.days):
            morning = START + timedelta(days=day)
            quiet = morning.weekday() == 6 or days.random() < 0.08
            moments = [(morning, 1.0)]
            if days.random() < 0.15:
                moments.append((morning + timedelta(hours=6), 0.3))
            for at, share in moments:
                if not quiet:
                    shop.shift(day, at, share)
                journal.before_cycle(at)
                t0 = time.monotonic()
                result = w.once(at)
                run.cycles.append((day, time.monotonic() - t0))
                run.work.append((day, result.writes_to_1c, result.requests_to_1c))
                journal.after_cycle()
                run.documents += result.documents_processed
                cycle += 1
                last = day == variant.days - 1 and at == moments[-1][0]
                if cycle % variant.check_every == 0 or last:
                    label = f"day {day} ({at:%Y-%m-%d %H:%M})"
                    problems = inspector.cycle_problems(result, at, label)
                    assert not problems, _listing(problems)
            run.outbox_rows.append((day, _outbox_rows(w)))
        end = w.clock[0]
        run.inspected = (inspector.checked, inspector.orders, inspector.discounted)
        run.in_debt, run.refused = len(inspector.in_debt), len(inspector.refused)
        run.shop = shop.done
        for d in w.site.effective:
            run.told.update(d.json["data"]["reasons"])
        run.repeated = repeated_tier_changes(w)
        run.oracle = _oracle(w, journal, end)
        db = Path(str(w.config.state.url).removeprefix("sqlite:///"))
        wal = Path(f"{db}-wal")
        run.db_bytes, run.wal_bytes = db.stat().st_size, wal.stat().st_size if wal.exists() else 0
    run.wall_s = time.monotonic() - began
    return run


def _oracle(w: World, journal: Journal, now: datetime) -> tuple[int, int]:
    """The oracle's replay and the final-state check against the live ledger; returns the customers
    and the document versions replayed."""
    engine = w.cycle.engine
    rules = engine.rules
    reading = Reading(w.store, rules, w.config.delivery_products, w.config.tz)
    replayed = replay(journal, reading, rules)
    with engine.store.engine.connect() as conn:
        by_customer: dict[str, list[str]] = {}
        for oid, cid in conn.execute(select(t.orders.c.id, t.orders.c.customer_id)):
            by_customer.setdefault(cid, []).append(oid)
        told: dict[str, Counter[tuple[str, str | None, Decimal | None]]] = {}
        for cid, reason, oid, points in conn.execute(
            select(t.events.c.customer_id, t.events.c.reason, t.events.c.order_id, t.events.c.points)
        ):
            told.setdefault(cid, Counter())[(reason, oid, points)] += 1

    def book(customer: str) -> Book:
        return engine.book(customer, tuple(by_customer.get(customer, ())))

    def live(customer: str) -> tuple[Book, Counter[tuple[str, str | None, Decimal | None]]]:
        return book(customer), told.get(customer, Counter())

    problems = differences(replayed, live, by_customer, rules, now, w.config.tz)
    problems += final_state_problems(w.store, reading, book, by_customer, rules, now)
    assert not problems, _listing(problems)
    return len(replayed.books), sum(len(docs) for _, docs in journal.cycles)


def repeated_tier_changes(w: World) -> list[str]:
    """Snapshots announcing ``tier_changed`` to the very tier the customer's previous announcement
    named: the customer is told twice (SPEC §4: each message at most once)."""
    assert w.site is not None
    told: dict[str, str] = {}
    repeated = []
    for d in w.site.effective:
        data = d.json["data"]
        if "tier_changed" not in data["reasons"]:
            continue
        customer, tier = data["customer"]["id"], data["bonus"]["tier"]["code"]
        if told.get(customer) == tier:
            repeated.append(f"customer {customer}: tier_changed to {tier} again at {d.json['timestamp']}")
        told[customer] = tier
    return repeated


def _outbox_rows(w: World) -> int:
    with w.cycle.engine.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.outbox)).scalar_one())


def _listing(problems: list[str], limit: int = 25) -> str:
    more = f"\n… and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} inconsistencies:\n" + "\n".join(problems[:limit]) + more


def judge(run: Run) -> None:
    """The report's loose bounds: a cycle does not slow down with the months, the outbox stays
    bounded by the pruning, the database stays small; and the run exercised what it is for."""
    print("\n" + run.text())
    first, last = statistics.median(run.month(True)), statistics.median(run.month(False))
    assert last <= 3 * first + 0.05, f"a cycle slowed down: median {first:.3f} s -> {last:.3f} s"
    rows = [n for _, n in run.outbox_rows]
    if run.variant.days > 60:
        settled = max(rows[30:60])  # the retention's worth of messages, once pruning has begun
        assert max(rows[60:]) <= 2 * settled, f"the outbox keeps growing: {rows[::15]}"
    assert run.db_bytes < 32e6, f"the state database grew to {run.db_bytes / 1e6:.1f} MB"
    # The WAL is checkpointed every 10 000 pages (README, "Durability on SQLite"): ~41 MB at most.
    assert run.wal_bytes < 48e6, f"the WAL grew to {run.wal_bytes / 1e6:.1f} MB"
    assert run.inspected[2], "no open order was ever checked at a discount level"
    assert run.refused and run.in_debt, f"refusals {run.refused}, customers in debt {run.in_debt}: none"
    for reason in (
        "points_accrued",
        "points_available",
        "points_expiring",
        "points_expired",
        "points_redeemed",
        "points_released",
        "points_reversed",
        "tier_changed",
        "level_changed",
        "card_issued",
    ):
        assert run.told[reason], f"the run never told the site {reason}: {dict(run.told)}"
    for action in ("close", "cancel", "delete", "reopen", "edit closed", "cancel closed", "return"):
        assert run.shop[action], f"the shop never did «{action}»: {dict(run.shop)}"


SEASON = Variant("season", days=70, customers=18, rules=COMPRESSED, seed=3)
YEARS = [
    Variant("year-compressed", days=365, customers=50, rules=COMPRESSED, check_every=5, seed=7),
    Variant("year-usual", days=365, customers=50, rules=USUAL, check_every=5, seed=11),
]


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return quietly(tmp_path_factory.mktemp("season"), SEASON)


@pytest.fixture(scope="module", params=YEARS, ids=lambda v: v.name)
def year(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    variant: Variant = request.param
    return quietly(tmp_path_factory.mktemp(variant.name), variant)


def test_a_season_of_daily_cycles_keeps_1c_the_site_and_the_ledger_in_step(season: Run) -> None:
    judge(season)


def test_a_season_tells_each_tier_change_once(season: Run) -> None:
    assert not season.repeated, "\n".join(season.repeated)


@pytest.mark.slow
def test_a_year_of_daily_cycles_keeps_1c_the_site_and_the_ledger_in_step(year: Run) -> None:
    judge(year)


@pytest.mark.slow
def test_a_year_tells_each_tier_change_once(year: Run) -> None:
    assert not year.repeated, "\n".join(year.repeated)
