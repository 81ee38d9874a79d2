"""The crash matrix: the bridge killed (``os._exit(137)``) at every named crash point, restarted
until done, ends exactly where a run without a crash ends — the ledger, 1C's loyalty fields and
cards, and the site's effects: 0 duplicate and 0 lost effects. See ``docs/readme/crash.md``.

The default slice runs every point once per step (n=1) over a small script; ``--run-slow`` runs
thousands of orders, several n per point, crashes that repeat in every restart, and PostgreSQL.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.crash.harness import POINTS, CrashPlan, Script, exercised, run_matrix, verdict

SMALL = Script(customers=20, orders=60, seed=7)
WORKERS = int(os.environ.get("BRIDGE_CRASH_WORKERS", "2"))
PER_UNIT = (
    "after_fetch",
    "before_commit",
    "after_commit",
    "writeback_sent",
    "webhook_sent",
    "delivery_marked",
)
ONCE_PER_CYCLE = ("before_cursor", "after_cursor")  # reached once per process: only n=1 dies


FEATURES = ("orders_earning", "orders_spending", "orders_refused", "customers_in_debt", "cards_issued")
REASONS = ("points_available", "points_released", "points_reversed", "points_expired", "card_issued")


def _check(clean_state: dict, problems: list[str], *, features: tuple[str, ...] = FEATURES) -> None:
    done = exercised(clean_state)
    missing = [f for f in features if done[f] <= 0]
    missing += [r for r in REASONS if done.get(f"reason:{r}", 0) <= 0]
    if missing:
        problems = [*problems, f"the script no longer exercises {missing}: {done}"]
    assert not problems, "\n".join(problems[:60])


def test_every_crash_point_once_per_step(tmp_path: Path) -> None:
    """Every crash point at its 1st occurrence in every step's first attempt (SQLite)."""
    assert set(POINTS) == set(PER_UNIT) | set(ONCE_PER_CYCLE), "a new crash point: add it to the matrix"
    clean, runs = run_matrix(tmp_path, SMALL, [CrashPlan(p) for p in POINTS], workers=WORKERS)
    _check(clean.state, verdict(clean, runs))
    for run in runs:  # every point is on the first read's path; most steps reach every point
        assert run.exits[0][0] == 137 and run.crashes >= 3, (str(run.plan), run.exits)
    redelivered = {str(r.plan): r.state["site"]["redelivered"] for r in runs}
    assert redelivered["webhook_sent:1"], "a death between send and mark must re-send that webhook"


def test_delivery_crash_points_with_concurrent_write_backs(tmp_path: Path) -> None:
    """The crashing bridges send their write-backs three at a time (``onec.write_workers: 3``):
    a death while others are in flight, or after a later one was marked, still ends where the
    clean run, sending one at a time, does."""
    points = ("writeback_sent", "delivery_marked")
    plans = [CrashPlan(p, n) for p in points for n in (1, 5)] + [CrashPlan("writeback_sent", 4, repeat=True)]
    clean, runs = run_matrix(tmp_path, SMALL, plans, workers=WORKERS, config={"onec.write_workers": 3})
    _check(clean.state, verdict(clean, runs))
    assert all(run.crashes >= 1 for run in runs), [(str(r.plan), r.crashes) for r in runs]


@pytest.mark.slow
def test_a_crash_that_keeps_coming_back(tmp_path: Path) -> None:
    """Every process of a step dies at the 7th occurrence until one gets through: the run still
    ends where the clean one does. Each bridge is started afresh (``python -m bridge``, as systemd
    does), not forked from the warm launcher."""
    plans = [CrashPlan(p, 7, repeat=True) for p in ("before_commit", "webhook_sent", "delivery_marked")]
    clean, runs = run_matrix(tmp_path, SMALL, plans, workers=WORKERS, fresh=True)
    _check(clean.state, verdict(clean, runs))
    assert all(run.crashes > 5 for run in runs), [(str(r.plan), r.crashes) for r in runs]


# --- the long suite ------------------------------------------------------------------------------------


def _big() -> Script:
    orders = int(os.environ.get("BRIDGE_CRASH_ORDERS", "3000"))
    customers = int(os.environ.get("BRIDGE_CRASH_CUSTOMERS", str(max(20, orders // 10))))
    return Script(customers=customers, orders=orders, seed=11)


def _full_plans(script: Script) -> list[CrashPlan]:
    late = max(7, script.orders // 3)  # deep into the first read's documents and deliveries
    plans = [CrashPlan(p, n) for p in PER_UNIT for n in (1, 7, late)]
    plans += [CrashPlan(p) for p in ONCE_PER_CYCLE]
    every = max(7, script.orders // 10)
    # A first read yields the customers of a batch before its orders, and a customer not in the
    # ledger yet is not remembered: a process dying at every `after_fetch:n` (`after_commit:n`)
    # with n no larger than that never commits anything (see docs/readme/crash.md).
    for p in PER_UNIT:
        extra = script.customers if p in ("after_fetch", "after_commit") else 0
        plans.append(CrashPlan(p, every + extra, repeat=True))
    return plans


@pytest.mark.slow
def test_full_matrix(tmp_path: Path) -> None:
    """Thousands of orders; every point at several n; repeating crashes ($BRIDGE_CRASH_ORDERS sizes it)."""
    script = _big()
    started = time.monotonic()
    # $BRIDGE_CRASH_WRITE_WORKERS: the crashing bridges send that many write-backs at once.
    write_workers = int(os.environ.get("BRIDGE_CRASH_WRITE_WORKERS", "1"))
    config = {"onec.write_workers": write_workers} if write_workers > 1 else None
    clean, runs = run_matrix(tmp_path, script, _full_plans(script), workers=WORKERS, config=config)
    print(
        f"\ncrash matrix: {len(runs)} runs over {script.orders} orders in {time.monotonic() - started:.0f} s"
    )
    for run in runs:
        print(f"  {run.plan}: {run.crashes} deaths, attempts per step {[len(c) for c in run.exits]}")
    # The big script's customers have so many purchases that what they spent is always covered
    # by another lot: no debt (the small script has one).
    _check(clean.state, verdict(clean, runs), features=tuple(f for f in FEATURES if f != "customers_in_debt"))


@pytest.mark.slow
def test_a_write_back_repeated_after_a_crash(tmp_path: Path) -> None:
    """Every process dies after its 7th write to 1C, before recording the order's new
    DataVersion; the next process re-reads that order as changed. Before a promotion updated every
    open order of the customer (5378d54), the re-read order got the level discount written into
    it, which the clean run never wrote."""
    clean, runs = run_matrix(tmp_path, SMALL, [CrashPlan("writeback_sent", 7, repeat=True)], workers=WORKERS)
    _check(clean.state, verdict(clean, runs))


@pytest.mark.slow
@pytest.mark.postgres
def test_every_crash_point_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The default slice with the state in PostgreSQL (a killed connection's transaction is rolled
    back by the server, not by a file lock). Each run gets a schema of its own."""
    from sqlalchemy import create_engine, text

    admin = create_engine(pg_url)
    base, _, options = pg_url.partition("options=-csearch_path%3D")
    mine = options.split("&")[0]  # the fixture's schema, dropped by it; ours are named after it
    created: list[str] = []

    def url(name: str) -> str:
        schema = f"{mine}_{name}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        created.append(schema)
        return f"{base}options=-csearch_path%3D{schema}"

    try:
        clean, runs = run_matrix(
            tmp_path, SMALL, [CrashPlan(p) for p in POINTS], workers=WORKERS, state_url=url
        )
    finally:
        with admin.begin() as conn:
            for schema in created:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    _check(clean.state, verdict(clean, runs))
