"""Two ``loyalty-bridge run`` daemons on one PostgreSQL and one 1C: one works, the other stands by.

Real subprocesses with the same config file, the 1C simulator and the site receiver in the test
process. Proves: every order accrued once, 1C written exactly as by a single instance (the same
objects, the same number of effective writes, no redundant PATCH), no webhook twice; then the
leader is killed with SIGKILL mid-work, the standby takes over within a few ``poll.interval_s``
and drains the rest, a restarted instance joins as standby, and SIGTERM stops both with 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from bridge.runtime.config import config_from_data
from bridge.runtime.signals import StopToken
from bridge.service.wiring import build_cycle
from bridge.simulator import SimStore, Simulator, generate, load_reference
from bridge.simulator.operator import Operator
from bridge.simulator.site import SiteReceiver
from bridge.store import schema as t
from bridge.store.db import make_engine, upgrade
from bridge.store.leader import PgLock
from bridge.store.outbox import PENDING
from tests.e2e.cycle_kit import MSK, SECRET, config_data, config_yaml

ORDERS = "Document_ЗаказКлиента"
PARTNERS = "Catalog_Партнеры"
INTERVAL_S = 1
SEED, CUSTOMERS, ORDER_COUNT = 11, 40, 200
BATCHES = ((1, 40), (2, 20))  # (tag, orders): added before and after the leader is killed


@dataclass
class Instance:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text("utf-8", errors="replace")


@dataclass
class Install:
    tmp: Path
    store: SimStore
    site: SiteReceiver
    config: Path
    env: dict[str, str]
    db: Engine
    url: str
    instances: list[Instance] = field(default_factory=list)

    def start(self, name: str) -> Instance:
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen(
            [*_command(), "run", "--config", str(self.config)],
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        inst = Instance(name, proc, log)
        self.instances.append(inst)
        return inst

    def leader(self) -> Instance | None:
        probe = PgLock(self.url)
        try:
            holder = probe.holder()
        finally:
            probe.release()
        return next((i for i in self.instances if holder and f"pid={i.proc.pid} " in holder + " "), None)

    def logs(self) -> str:
        return "\n".join(f"--- {i.name} (pid {i.proc.pid}) ---\n{i.text()[-4000:]}" for i in self.instances)


def _command() -> list[str]:
    script = Path(sys.executable).with_name("loyalty-bridge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bridge.cli"]


def _local_now() -> datetime:
    return datetime.now(MSK).replace(tzinfo=None, microsecond=0)


def _sample(store: SimStore) -> None:
    """The same deterministic data set for the pair and for the single-instance reference run."""
    load_reference(store)
    generate(
        store,
        customers=CUSTOMERS,
        orders=ORDER_COUNT,
        seed=SEED,
        start=_local_now() - timedelta(days=60, hours=1),
        days=60,
    )


SENDERS = 3  # the daemons' onec.write_workers and site.webhook_workers


@pytest.fixture
def install(pg_url: str, tmp_path: Path) -> Iterator[Install]:
    store = SimStore()
    _sample(store)
    with Simulator(store) as sim, SiteReceiver(SECRET) as site:
        data = config_data(sim, site, tmp_path / "unused.db", **{"state.url": pg_url})
        data["poll"]["interval_s"] = INTERVAL_S
        data["log"] = {"level": "info"}
        # The daemons send several write-backs and webhooks at once; the reference sends one at a time.
        data["onec"]["write_workers"] = SENDERS
        data["site"]["webhook_workers"] = SENDERS
        config = tmp_path / "config.yaml"
        config.write_text(config_yaml(data), "utf-8")
        env = {**os.environ, "ONEC_PASSWORD": sim.password, "SITE_WEBHOOK_SECRET": SECRET}
        db = make_engine(pg_url)
        upgrade(db)
        inst = Install(tmp_path, store, site, config, env, db, pg_url)
        try:
            yield inst
        finally:
            for i in inst.instances:
                if i.proc.poll() is None:
                    i.proc.kill()
                    i.proc.wait(10)
            db.dispose()


@dataclass
class Reference:
    writes: Counter[tuple[str, str]]  # after the first drain
    webhooks: int
    more_writes: Counter[tuple[str, str]]  # for the two later batches, one cycle each
    final: dict[tuple[str, str], Any]


def _reference(tmp_path: Path) -> Reference:
    """One instance, in process, on SQLite, over the same data and the same later batches."""
    store = SimStore()
    _sample(store)
    with Simulator(store) as sim, SiteReceiver(SECRET) as site:
        data = config_data(sim, site, tmp_path / "reference.db")
        env = {"ONEC_PASSWORD": sim.password, "SITE_WEBHOOK_SECRET": SECRET}
        config = config_from_data(data, config_path=tmp_path / "reference.yaml", environ=env)
        upgrade(make_engine(config.state.url))
        cycle = build_cycle(config, clock=lambda: datetime.now(MSK))
        for _ in range(2):  # the second one must be idle
            cycle.run(StopToken())
        first, webhooks = _writes(store), len(site.effective)
        customers = _customers(store)
        for tag, n in BATCHES:
            _new_orders(store, customers, n, tag)
            cycle.run(StopToken())
        cycle.run(StopToken())
        return Reference(first, webhooks, _writes(store) - first, _attributes(store))


def _customers(store: SimStore) -> list[str]:
    return sorted({k for s, k in store.effective_writes if s == PARTNERS})


def _attributes(store: SimStore) -> dict[tuple[str, str], Any]:
    """What the bridge wrote, as 1C shows it: every order's and partner's additional attributes
    (times left out: a lot's dates follow the moment the bridge first saw its order)."""
    return {
        (s, row["Number"] if s == ORDERS else row["Ref_Key"]): [
            {k: None if isinstance(v, datetime) else v for k, v in attr.items()}
            for attr in row.get("ДополнительныеРеквизиты") or ()
        ]
        for s in (ORDERS, PARTNERS)
        for row in store.snapshot(s)
    }


def _writes(store: SimStore) -> Counter[tuple[str, str]]:
    """Effective writes to orders (by number: new ones get fresh keys in every 1C) and partners."""
    numbers = {row["Ref_Key"]: row["Number"] for row in store.snapshot(ORDERS)}
    return Counter(
        {
            (s, numbers[k] if s == ORDERS else k): n
            for (s, k), n in store.effective_writes.items()
            if s in (ORDERS, PARTNERS)
        }
    )


def _wait(what: str, cond: Callable[[], bool], timeout: float, inst: Install) -> float:
    started = time.monotonic()
    while not cond():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{inst.logs()}")
        for i in inst.instances:
            if i.proc.poll() not in (None, -signal.SIGKILL):
                pytest.fail(f"{i.name} exited with {i.proc.returncode}\n{inst.logs()}")
        time.sleep(0.2)
    return time.monotonic() - started


def _drained(inst: Install) -> bool:
    """Every 1C order is in the ledger and nothing waits in the outbox."""
    wanted = inst.store.count(ORDERS)
    with inst.db.connect() as conn:
        seen = conn.execute(select(func.count()).select_from(t.orders)).scalar_one()
        pending = conn.execute(
            select(func.count()).select_from(t.outbox).where(t.outbox.c.status == PENDING)
        ).scalar_one()
    return seen == wanted and pending == 0


def _accruals(inst: Install) -> Counter[str]:
    with inst.db.connect() as conn:
        rows = conn.execute(select(t.entries.c.order_id).where(t.entries.c.kind == "accrue")).all()
    return Counter(str(r.order_id) for r in rows)


def _assert_webhooks_single(site: SiteReceiver, resent_allowed: int) -> None:
    effective = site.effective
    bodies = Counter(d.body for d in effective)
    assert max(bodies.values(), default=1) == 1, "the same webhook body delivered under two ids"
    sequences = Counter((d.customer_id, d.sequence) for d in effective)
    assert max(sequences.values(), default=1) == 1, "two webhooks with one customer sequence"
    resent = len(site.deliveries) - len(effective)
    assert resent <= resent_allowed, f"{resent} webhooks re-sent"


def _new_orders(store: SimStore, customers: list[str], n: int, tag: int) -> list[str]:
    """``n`` closed orders dated now, all visible to 1C's readers at once (one batch, one cycle)."""
    op = Operator(store)
    now = datetime.now(MSK) - timedelta(seconds=5)
    made = []
    with store._lock:  # an RLock: the simulator's readers wait until the whole batch is in
        for i in range(n):
            order = op.order(
                customers[(i * 7 + tag) % len(customers)],
                [("Велосипед городской Forward Dortmund 28 2.0", 1, 10000 + 100 * i + tag)],
                date=now,
            )
            op.close(order)
            made.append(order)
    return made


def test_two_instances_one_worker_then_failover(install: Install, tmp_path: Path) -> None:
    (tmp_path / "ref").mkdir()
    timings: dict[str, float] = {}

    # --- two daemons, one set of orders: work done once --------------------------------------------
    started = time.monotonic()
    a, b = install.start("a"), install.start("b")
    with ThreadPoolExecutor(1) as pool:  # the single-instance reference meanwhile, in this process
        pending = pool.submit(_reference, tmp_path / "ref")
        _wait("the first drain", lambda: _drained(install), 90, install)
        timings["first drain"] = time.monotonic() - started
        reference = pending.result(timeout=120)
        timings["reference too"] = time.monotonic() - started
    time.sleep(3 * INTERVAL_S)  # a few idle ticks of both: still nothing twice
    assert _drained(install)
    leader = install.leader()
    assert leader is not None, install.logs()
    standby = b if leader is a else a
    assert "standby: another instance is working" in standby.text()
    assert "leader: this instance works now" not in standby.text()

    accruals = _accruals(install)
    assert accruals and max(accruals.values()) == 1, "an order accrued twice"
    assert _writes(install.store) == reference.writes  # what a single instance writes, no more
    for key, n in install.store.writes.items():
        assert n == install.store.effective_writes[key], f"a redundant PATCH of {key}"
    assert len(install.site.effective) == reference.webhooks
    _assert_webhooks_single(install.site, resent_allowed=0)

    # --- the leader dies mid-work: the standby takes over ------------------------------------------
    first = _writes(install.store)
    customers = _customers(install.store)
    (tag1, n1), (tag2, n2) = BATCHES
    install.site.delay(0.05)  # slow webhooks: the leader is still delivering when it is killed
    before = len(install.site.deliveries)
    batch = _new_orders(install.store, customers, n1, tag1)
    _wait("the leader to start on new orders", lambda: len(install.site.deliveries) > before, 30, install)
    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait(10)
    killed_at = time.monotonic()
    batch += _new_orders(install.store, customers, n2, tag2)
    install.site.delay(0)
    timings["takeover"] = _wait("the standby to lead", lambda: install.leader() is standby, 20, install)
    assert timings["takeover"] <= 5 * INTERVAL_S + 3
    restarted = install.start("restarted")  # systemd's Restart=: the old leader comes back as standby
    _wait("the second drain", lambda: _drained(install), 60, install)
    timings["failover drain"] = time.monotonic() - killed_at

    accruals = _accruals(install)
    assert max(accruals.values()) == 1, "an order accrued twice"
    assert all(accruals[o] == 1 for o in batch), "a new order not accrued"
    for order in batch:  # each new order needs exactly one write-back (its accrual), done once
        assert install.store.effective_writes[(ORDERS, order)] == 1
    more = _writes(install.store) - first
    assert more, "no write-backs in the second part"
    extra = {k: (n, reference.more_writes[k]) for k, n in more.items() if n > reference.more_writes[k]}
    assert not extra, f"written more often than by a single instance: {list(extra.items())[:5]}"
    assert _attributes(install.store) == reference.final  # and 1C ends up exactly the same
    for key, n in install.store.writes.items():
        assert n == install.store.effective_writes[key], f"a redundant PATCH of {key}"
    _assert_webhooks_single(install.site, resent_allowed=SENDERS)  # those in flight at the kill

    # --- stop: SIGTERM, exit 0 -----------------------------------------------------------------------
    _wait("the restarted instance to stand by", lambda: "standby" in restarted.text(), 20, install)
    for inst in (standby, restarted):
        inst.proc.send_signal(signal.SIGTERM)
    for inst in (standby, restarted):
        assert inst.proc.wait(30) == 0, install.logs()
    print(f"timings: {timings}")


def test_once_waits_for_a_running_instance_then_exits_69(tmp_path: Path) -> None:
    import logging

    import structlog
    from click.testing import CliRunner

    from bridge.cli import main
    from bridge.store.leader import leader_lock, whoami

    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    store = SimStore()
    load_reference(store)
    with Simulator(store) as sim:
        data = config_data(sim, None, tmp_path / "state.db")
        config = tmp_path / "config.yaml"
        config.write_text(config_yaml(data), "utf-8")
        upgrade(make_engine(data["state"]["url"]))
        env = {"ONEC_PASSWORD": sim.password}
        running = leader_lock(data["state"]["url"])  # the daemon, as far as `once` can tell
        try:
            assert running.try_acquire()
            started = time.monotonic()
            result = CliRunner().invoke(main, ["once", "--config", str(config), "--wait", "0.5"], env=env)
            assert result.exit_code == 69, result.output
            assert time.monotonic() - started >= 0.5
            assert f"another instance is running ({whoami()})" in result.stderr
        finally:
            running.release()
        result = CliRunner().invoke(main, ["once", "--config", str(config), "--wait", "0"], env=env)
        assert result.exit_code == 0, result.output
        assert "documents applied" in result.stdout
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
