"""The crash matrix's harness: one installation, one scripted history of 1C, the bridge as a real
process that may be killed at a named crash point, and the final state to compare.

The 1C simulator and the site receiver live in the test process and outlive the bridge's deaths;
the bridge runs as ``python -m bridge once --config … --now …`` with ``BRIDGE_CRASH_AT`` in its
environment, so ``os._exit(137)`` really ends a process mid-cycle (open transaction, socket, all).

A run is a :class:`Script` (generated orders, then steps of 1C changes each followed by ``once``
at a fixed simulated time) played by :func:`play` under a :class:`CrashPlan`; :func:`final_state`
reads what the installation ended with; :func:`compare` lists every difference between two runs
and :func:`delivery_problems` what a single run's site saw that it should not have. See
``docs/readme/crash.md``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bridge.crashpoints import POINTS
from bridge.simulator import SimStore, Simulator, generate, load_reference
from bridge.simulator.generate import attribute_row, make_line
from bridge.simulator.operator import CARDS, ORDERS, PARTNERS, Operator
from bridge.simulator.site import SiteReceiver
from tests.e2e.cycle_kit import MSK, ROOT, SECRET, config_data, config_yaml

__all__ = [
    "POINTS",
    "CrashPlan",
    "Launcher",
    "Outcome",
    "Script",
    "compare",
    "delivery_problems",
    "exercised",
    "installation",
    "play",
    "run_matrix",
    "verdict",
]

CRASH_EXIT = 137  # what bridge.crashpoints exits with


# --- the scripted history ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """A deterministic history of 1C: ``orders`` generated orders of ``customers`` customers over
    the two months before the first ``once``, then four rounds of operator changes and a year
    of time passing (see :meth:`steps`).

    Every choice (which open order closes, which is cancelled, who asks for points) is made from
    sorted keys and ``seed``, so a crash run and the clean run see exactly the same 1C changes at
    the same points of the script.
    """

    customers: int = 40
    orders: int = 150
    seed: int = 7

    @property
    def start(self) -> datetime:
        return datetime(2025, 9, 1)

    def steps(self) -> list[tuple[datetime, Callable[[Operator, random.Random], None] | None]]:
        """(the ``--now`` of the step's ``once``, the 1C changes made just before it)."""
        at = lambda day, hour=9: datetime(2025, 11, 1, hour, tzinfo=MSK) + timedelta(days=day)  # noqa: E731
        return [
            (at(0), None),  # first read: every generated order
            (at(1), self._close_and_cancel),  # open orders close or are cancelled; closed ones reversed
            (at(18), self._ask_for_points),  # holds are over: new orders redeem points, cards handed out
            (at(19), self._finish_redemptions),  # redeeming orders close, one is cancelled (release)
            (at(40), self._reverse_spent),  # the orders that paid for spent points cancelled: debts
            (at(400), None),  # a year on: points expire, level terms end
        ]

    # Each step picks from the store's current rows, sorted, with the script's own generator.

    def _close_and_cancel(self, op: Operator, rng: random.Random) -> None:
        rows = _orders(op.store)
        open_rows = [r for r in rows if r["Статус"] != "Закрыт" and not r["DeletionMark"]]
        for i, row in enumerate(open_rows):
            if i % 3 == 0:
                op.close(row["Ref_Key"])
            elif i % 3 == 1 and rng.random() < 0.5:
                op.cancel(row["Ref_Key"])
        closed = [r for r in rows if r["Статус"] == "Закрыт" and r["Posted"] and not r["DeletionMark"]]
        for row in rng.sample(closed, k=min(3, len(closed))):
            op.cancel(row["Ref_Key"])
        if closed:
            op.mark_deleted(closed[-1]["Ref_Key"])
            op.edit(closed[len(closed) // 2]["Ref_Key"])  # saved unchanged: only the DataVersion moves

    def _ask_for_points(self, op: Operator, rng: random.Random) -> None:
        closed: dict[str, int] = defaultdict(int)
        for r in _orders(op.store):
            if r["Статус"] == "Закрыт" and r["Posted"] and not r["DeletionMark"]:
                closed[r["Партнер_Key"]] += 1
        best = sorted(closed, key=lambda p: (-closed[p], p))[:8]  # the likeliest to have points
        day = datetime(2025, 11, 18, 10)
        for n, partner in enumerate(best):
            redeem = 99999 if n % 4 == 3 else rng.choice((50, 100, 200))  # every 4th is refused
            item = ("Шлем Cigna WT-015 (уценка)", 1, 3000)  # a sale item: earns nothing back
            _new_order(op, partner, [item], day, redeem, rng)
        # by number: the Ref_Key of a card the bridge created is drawn at random by the simulator
        cards = sorted(op.store.snapshot(CARDS), key=lambda r: (str(r.get("Штрихкод")), str(r.get("Code"))))
        for card in cards[::5]:
            op.hand_out_card(card["Ref_Key"])

    def _finish_redemptions(self, op: Operator, rng: random.Random) -> None:
        mine = [r for r in _orders(op.store) if r["Number"].startswith("CR-")]
        for i, row in enumerate(mine):
            if i == 1:
                op.cancel(row["Ref_Key"])
            else:
                op.close(row["Ref_Key"])

    def _reverse_spent(self, op: Operator, rng: random.Random) -> None:
        """Half of the customers who redeemed lose every other purchase: what they spent is a debt."""
        spenders = sorted(
            {
                r["Партнер_Key"]
                for r in _orders(op.store)
                if r["Number"].startswith("CR-")
                and r["Статус"] == "Закрыт"
                and op.order_attribute(r["Ref_Key"], "Бонусы к списанию") < 1000
            }
        )
        for partner in spenders[::2]:
            for r in _orders(op.store):
                if (
                    r["Партнер_Key"] == partner
                    and r["Статус"] == "Закрыт"
                    and not r["Number"].startswith("CR-")
                ):
                    op.cancel(r["Ref_Key"])

    def populate(self, store: SimStore) -> None:
        load_reference(store)
        generate(
            store,
            customers=self.customers,
            orders=self.orders,
            seed=self.seed,
            start=self.start,
            days=60,
            redeem_share=0.1,
        )


def _orders(store: SimStore) -> list[dict[str, Any]]:
    return sorted(store.snapshot(ORDERS), key=lambda r: r["Number"])


def _new_order(
    op: Operator,
    partner: str,
    items: list[tuple[str, int, int]],
    date: datetime,
    redeem: int,
    rng: random.Random,
) -> str:
    """``Operator.order`` with a key and number of the script's own (the simulator would draw a
    random ``Ref_Key``, and the two runs must name the same documents)."""
    vat = op.vat_key()
    lines = [make_line(op.product(name), qty, price, vat_key=vat) for name, qty, price in items]
    points = Decimal(redeem)
    first = lines[0]
    first["Сумма"] = first["Сумма"] - points if points < first["Сумма"] else first["Сумма"]
    first["СуммаСНДС"] = first["Сумма"]
    for i, line in enumerate(lines, start=1):
        line["LineNumber"] = str(i)
    prop = op.store.property_key("Бонусы к списанию")
    number = f"CR-{sum(1 for r in op.store.snapshot(ORDERS) if r['Number'].startswith('CR-')) + 1:06d}"
    return op.store.insert(
        ORDERS,
        {
            "Ref_Key": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "Number": number,
            "Date": date.strftime("%Y-%m-%dT%H:%M:%S"),
            "Posted": True,
            "DeletionMark": False,
            "Статус": "КОбеспечению",
            "Партнер_Key": partner,
            "СуммаДокумента": sum((line["Сумма"] for line in lines), Decimal(0)),
            "ЦенаВключаетНДС": True,
            "Товары": lines,
            "ДополнительныеРеквизиты": [attribute_row(prop, points, "Edm.Double")] if prop else [],
        },
    )


# --- the installation --------------------------------------------------------------------------------


@dataclass
class Installation:
    store: SimStore
    site: SiteReceiver
    config: Path
    env: dict[str, str]
    state_url: str
    op: Operator
    launcher: Launcher


@contextmanager
def installation(
    tmp: Path,
    script: Script,
    launcher: Launcher,
    *,
    state_url: str | None = None,
    config: dict[str, Any] | None = None,
) -> Iterator[Installation]:
    """1C (populated by ``script``), the site and a migrated state database; config on disk
    (``config``: dotted keys over the kit's defaults, e.g. ``{"onec.write_workers": 3}``)."""
    store = SimStore()
    script.populate(store)
    with Simulator(store) as sim, SiteReceiver(SECRET) as site:
        url = state_url or f"sqlite:///{tmp / 'state.db'}"
        data = config_data(
            sim,
            site,
            tmp / "state.db",
            # The audit matches every webhook the site received with its outbox row, so the rows
            # are kept: the script's last step is a year on, where pruning would delete them.
            **{
                "state.url": url,
                "poll.start": "2025-09-01T00:00:00",
                "state.keep_sent_days": None,
                **(config or {}),
            },
        )
        path = tmp / "config.yaml"
        path.write_text(config_yaml(data), "utf-8")
        # A small environment: requests scans all of it for proxy settings on every call.
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")}
        env.update(ONEC_PASSWORD=sim.password, SITE_WEBHOOK_SECRET=SECRET, PYTHONPATH=str(ROOT))
        inst = Installation(store, site, path, env, url, Operator(store), launcher)
        if state_url is None:
            shutil.copyfile(_migrated_sqlite(), tmp / "state.db")
        else:
            code, out = _bridge(inst, "db", "upgrade")
            assert code == 0, out
        yield inst


_TEMPLATE: list[Path] = []
_TEMPLATE_LOCK = threading.Lock()


def _migrated_sqlite() -> Path:
    """An empty state database at the latest revision, migrated once per test process and copied
    for every run (alembic costs seconds; a copy costs nothing)."""
    with _TEMPLATE_LOCK:  # alembic's module-level proxies are not thread-safe
        if not _TEMPLATE:
            from bridge.store.db import make_engine, upgrade

            path = Path(tempfile.mkdtemp(prefix="crash-template-")) / "state.db"
            db = make_engine(f"sqlite:///{path}")
            upgrade(db)
            db.dispose()
            _TEMPLATE.append(path)
        return _TEMPLATE[0]


class Launcher:
    """Runs the bridge's CLI as a real process: forked from a pre-warmed ``tests.crash.zygote``
    (the default: a fork costs the cycle, not ~3 s of imports), or ``exec``-ed afresh
    (``fresh=True``: ``python -m bridge``, exactly as systemd starts it)."""

    def __init__(self, *, fresh: bool = False) -> None:
        self.fresh = fresh
        self._zygote: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def run(self, argv: list[str], env: dict[str, str], scratch: Path) -> tuple[int, str]:
        if self.fresh:
            proc = subprocess.run(
                [sys.executable, "-m", "bridge", *argv],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            return proc.returncode, proc.stdout + proc.stderr
        out = scratch / "bridge.out"
        with self._lock:
            zygote = self._start()
            assert zygote.stdin is not None and zygote.stdout is not None
            zygote.stdin.write(json.dumps({"argv": argv, "env": env, "out": str(out)}) + "\n")
            zygote.stdin.flush()
            answer = zygote.stdout.readline()
        if not answer:
            raise RuntimeError("the crash-matrix zygote died")
        return int(json.loads(answer)["code"]), out.read_text("utf-8", errors="replace")

    def _start(self) -> subprocess.Popen[str]:
        if self._zygote is None or self._zygote.poll() is not None:
            self._zygote = subprocess.Popen(
                [sys.executable, "-m", "tests.crash.zygote"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        return self._zygote

    def close(self) -> None:
        if self._zygote is not None:
            assert self._zygote.stdin is not None
            self._zygote.stdin.close()
            self._zygote.wait(timeout=30)
            self._zygote = None


def _bridge(inst: Installation, *args: str, crash: str | None = None) -> tuple[int, str]:
    env = dict(inst.env)
    if crash:
        env["BRIDGE_CRASH_AT"] = crash
    t0 = time.monotonic()
    code, out = inst.launcher.run([*args, "--config", str(inst.config)], env, inst.config.parent)
    if os.environ.get("BRIDGE_CRASH_DEBUG"):  # one line per bridge process
        print(args, crash, code, round(time.monotonic() - t0, 2), out.strip()[-150:])
    return code, out


# --- playing the script ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashPlan:
    """Where the bridge dies: ``point`` at its ``nth`` occurrence in a process.

    ``repeat=False`` (systemd restarting a service that lost power once): the first attempt of
    every step runs with ``BRIDGE_CRASH_AT``, restarts run without it — at most one death per step.
    ``repeat=True`` (a fault that keeps coming back): every attempt runs with it, so each process
    dies at the ``nth`` occurrence until an attempt reaches the point fewer than ``nth`` times;
    needs ``nth >= 2`` (with 1 a point before the first commit would never let a run progress).
    """

    point: str | None = None
    nth: int = 1
    repeat: bool = False

    def __post_init__(self) -> None:
        if self.point is not None and self.point not in POINTS:
            raise ValueError(f"unknown crash point {self.point!r}")
        if self.repeat and self.nth < 2:
            raise ValueError("a repeating crash needs nth >= 2")

    @property
    def spec(self) -> str | None:
        return f"{self.point}:{self.nth}" if self.point else None

    def __str__(self) -> str:
        return "clean" if self.point is None else f"{self.spec}{' repeat' if self.repeat else ''}"


@dataclass
class Outcome:
    """What one run did: exits per step, deaths, and the final state (see :func:`final_state`)."""

    plan: CrashPlan
    exits: list[list[int]] = field(default_factory=list)  # per step (then the drain), every attempt
    state: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the run could not finish (no progress, an unexpected exit)
    # Per step, what its completed ``once`` said ("cycle done: …" and any failure lines): when a
    # run ends elsewhere than the clean one, the verdict shows where their steps parted.
    steps: list[str] = field(default_factory=list)

    @property
    def crashes(self) -> int:
        return sum(code == CRASH_EXIT for step in self.exits for code in step)


MAX_ATTEMPTS = 400
MAX_DRAIN = 6


def _once(inst: Installation, now: datetime, plan: CrashPlan) -> tuple[list[int], str]:
    """``once`` at ``now`` until an attempt completes (exits with anything but the crash code);
    returns every attempt's exit code and the completed attempt's output."""
    codes: list[int] = []
    while True:
        crash = plan.spec if plan.repeat or not codes else None
        code, out = _bridge(inst, "once", "--now", now.replace(tzinfo=None).isoformat(), crash=crash)
        codes.append(code)
        if code != CRASH_EXIT:
            assert code in (0, 1), f"once at {now} ({plan}) exited {code}:\n{out}"
            if "failed, tried again next cycle:" not in out:
                return codes, out
            # 1C's error while reading a document (a loaded machine's timeout, …): the daemon runs
            # the cycle again at its next poll, minutes before the next step of the script.
            assert len(codes) < MAX_ATTEMPTS, f"{plan}: still failing at {now}:\n{out}"
            continue
        assert crash is not None, f"died without a crash point at {now}:\n{out}"
        assert len(codes) < MAX_ATTEMPTS, f"{plan}: no progress at {now} after {len(codes)} attempts"


def play(inst: Installation, script: Script, plan: CrashPlan) -> Outcome:
    """The whole script under ``plan``, then clean ``once`` cycles a minute apart until one of
    them applies no document and leaves no message pending (drained); returns the final state."""
    outcome = Outcome(plan)
    rng = random.Random(script.seed * 7919)
    now = None
    for now, change in script.steps():
        if change is not None:
            change(inst.op, rng)
        codes, out = _once(inst, now, plan)
        outcome.exits.append(codes)
        outcome.steps.append(f"{now:%Y-%m-%d %H:%M} exit {codes[-1]}: {_said(out)}")
    assert now is not None
    drain: list[int] = []
    for minute in range(1, MAX_DRAIN + 1):
        codes, out = _once(inst, now + timedelta(minutes=minute), CrashPlan())
        drain += codes
        if " 0 documents applied" in out and _drained(inst):
            break
    else:
        raise AssertionError(f"{plan}: not drained after {MAX_DRAIN} cycles")
    outcome.exits.append(drain)
    outcome.state = final_state(inst, now + timedelta(minutes=MAX_DRAIN + 1))
    return outcome


def _said(out: str) -> str:
    """The summary and failure lines of a ``once``'s output (its JSON log lines left out)."""
    lines = [line.strip() for line in out.splitlines()]
    said = [line for line in lines if line.startswith(("cycle done:", "loyalty-bridge:"))]
    return " | ".join(said)[:600] or out.strip()[-300:]


def _drained(inst: Installation) -> bool:
    """No outbox row is pending (the cycle delivers everything due at its ``now``)."""
    from bridge.store import schema as t
    from bridge.store.db import make_engine

    db = make_engine(inst.state_url)
    try:
        with db.connect() as conn:
            pending = conn.execute(select(t.outbox.c.id).where(t.outbox.c.status == "pending")).first()
    finally:
        db.dispose()
    return pending is None


# --- the final state ---------------------------------------------------------------------------------


def final_state(inst: Installation, at: datetime) -> dict[str, Any]:
    """Everything a crash must not change, in comparable plain data:

    * ``ledger``: every customer's view at ``at`` and every order's view (the engine's own reads),
      and the insert-only tables row by row (ids aside);
    * ``onec``: the loyalty attributes of every order and partner, every partner's cards;
    * ``site``: every customer's latest snapshot and the sequence of effects it received;
    * ``outbox``: the webhook-ids the bridge marked sent and what each carried.
    """
    from bridge.service.wiring import build_engine
    from bridge.store import schema as t

    config = _load_config(inst)
    engine = build_engine(config)
    db = engine.store.engine
    try:
        with db.connect() as conn:
            customers = sorted(r.id for r in conn.execute(select(t.customers.c.id)))
            orders = sorted(r.id for r in conn.execute(select(t.orders.c.id)))
            # 1C's own keys and versions are left out: the simulator draws a card's Ref_Key at
            # random and a write repeated after a crash moves its global DataVersion counter.
            drop = {"id", "entry_id", "onec_id", "onec_version", "version"}
            tables = {
                name: sorted(_row(r, drop) for r in conn.execute(select(getattr(t, name))))
                for name in ("entries", "allocations", "level_history", "events", "cards")
            }
            tables["processed"] = sorted({r.doc_id for r in conn.execute(select(t.processed.c.doc_id))})
            outbox_rows = [r._asdict() for r in conn.execute(select(t.outbox).order_by(t.outbox.c.id))]
        ledger = {
            "customers": {c: _plain_view(asdict(engine.customer_view(c, at))) for c in customers},
            "orders": {o: _plain_view(asdict(engine.order_view(o))) for o in orders},
            "tables": tables,
        }
    finally:
        db.dispose()
    return {
        "ledger": ledger,
        "onec": _onec_state(inst.store),
        "site": _site_state(inst.site),
        "outbox": _outbox_state(outbox_rows),
    }


def _load_config(inst: Installation) -> Any:
    from bridge.runtime.config import load_config

    return load_config(inst.config, environ=inst.env)


def _row(row: Any, drop: set[str]) -> str:
    data = {k: v for k, v in row._asdict().items() if k not in drop}
    if isinstance(data.get("cause"), str):  # "doc:<key>@<DataVersion>": the version is 1C's counter
        data["cause"] = data["cause"].split("@")[0]
    if isinstance(data.get("key"), str):  # a level event's key names the same cause
        data["key"] = _VERSION_IN_KEY.sub("@", data["key"])
    return json.dumps(data, default=str, sort_keys=True)


# A level event's key ends with its document's DataVersion, 1C's global counter (see ``drop``).
_VERSION_IN_KEY = re.compile(r"@[A-Za-z0-9+/=]+")


def _plain_view(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _onec_state(store: SimStore) -> dict[str, Any]:
    """Orders and partners whole (attributes, discounted lines) but their ``DataVersion`` (a
    write repeated after a crash moves it without changing anything); cards by owner, without
    the ``Ref_Key`` the simulator draws at random on ``POST``."""

    def whole(entity_set: str) -> dict[str, Any]:
        return {
            r["Ref_Key"]: {k: _plain_view(v) for k, v in r.items() if k != "DataVersion"}
            for r in store.snapshot(entity_set)
        }

    cards: dict[str, list[Any]] = defaultdict(list)
    for card in store.snapshot(CARDS):
        cards[str(card.get("Партнер_Key"))].append(
            {k: _plain_view(v) for k, v in card.items() if k not in ("Ref_Key", "DataVersion")}
        )
    return {
        "orders": whole(ORDERS),
        "partners": whole(PARTNERS),
        "cards": {p: sorted(cs, key=lambda c: json.dumps(c, sort_keys=True)) for p, cs in cards.items()},
    }


def _site_state(site: SiteReceiver) -> dict[str, Any]:
    """The latest snapshot per customer, and per customer the effects in arrival order: the
    ``data`` of each distinct webhook-id the site acted on (the body's ``timestamp`` left out)."""
    effects: dict[str, list[Any]] = defaultdict(list)
    bodies: dict[str, set[bytes]] = defaultdict(set)
    calls: dict[str, int] = defaultdict(int)
    for d in site.deliveries:
        calls[d.webhook_id] += 1
        if d.ok:
            bodies[d.webhook_id].add(d.body)
    for d in site.effective:
        effects[str(d.customer_id)].append(d.json["data"])
    customers = sorted(effects)
    return {
        "latest": {c: site.latest(c) for c in customers},
        "effects": dict(effects),
        "received": sorted(bodies),
        "bodies_per_id": {w: len(b) for w, b in bodies.items()},
        "redelivered": sorted(w for w, n in calls.items() if n > 1),
    }


def _outbox_state(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "webhooks_sent": {
            r["message_id"]: r["payload"] for r in rows if r["channel"] == "webhook" and r["status"] == "sent"
        },
        "webhook_status": sorted(r["status"] for r in rows if r["channel"] == "webhook"),
        "dead": [
            (r["channel"], r["kind"], r["target"], r["last_error"]) for r in rows if r["status"] == "dead"
        ],
    }


# --- a whole matrix -----------------------------------------------------------------------------------


def run_matrix(
    tmp: Path,
    script: Script,
    plans: list[CrashPlan],
    *,
    workers: int = 2,
    state_url: Callable[[str], str] | None = None,
    fresh: bool = False,
    config: dict[str, Any] | None = None,
) -> tuple[Outcome, list[Outcome]]:
    """The clean run and one run per plan, ``workers`` at a time (each worker thread forks its
    bridges from a zygote of its own); every run gets its own 1C, site and state database.

    ``state_url(name)`` gives a run's database URL (default: a SQLite file in its directory).
    ``config`` (dotted keys) applies to the crashing runs only: the clean run keeps the defaults.
    """
    local = threading.local()
    launchers: list[Launcher] = []
    lock = threading.Lock()

    def one(index: int, plan: CrashPlan) -> Outcome:
        launcher = getattr(local, "launcher", None)
        if launcher is None:
            launcher = local.launcher = Launcher(fresh=fresh)
            with lock:
                launchers.append(launcher)
        name = f"run{index:03d}"
        where = tmp / name
        where.mkdir()
        url = state_url(name) if state_url is not None else None
        try:
            own = config if plan.point is not None else None
            with installation(where, script, launcher, state_url=url, config=own) as inst:
                return play(inst, script, plan)
        except AssertionError as exc:  # one plan failing must not hide what the others found
            return Outcome(plan, error=str(exc).splitlines()[0])

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(one, i, plan) for i, plan in enumerate([CrashPlan(), *plans])]
            results = [f.result() for f in futures]
    finally:
        for launcher in launchers:
            launcher.close()
    return results[0], results[1:]


def verdict(clean: Outcome, runs: list[Outcome]) -> list[str]:
    """Every problem of the matrix, one line each (empty: 0 duplicate and 0 lost effects)."""
    if clean.error is not None:
        return [f"clean run: {clean.error}"]
    lines = [f"clean run: {p}" for p in delivery_problems(clean.state)]
    for run in runs:
        if run.error is not None:
            lines.append(f"{run.plan}: {run.error}")
            continue
        problems = delivery_problems(run.state) + compare(clean.state, run.state)
        if run.crashes == 0:
            problems.append("the crash point was never reached (nothing tested)")
        if problems:  # where the two runs' steps parted, if they did
            problems += [
                f"step {i}: clean «{a}» / this run «{b}»"
                for i, (a, b) in enumerate(zip(clean.steps, run.steps, strict=False))
            ]
        lines += [f"{run.plan}: {p}" for p in problems]
    return lines


def exercised(state: dict[str, Any]) -> dict[str, int]:
    """What the script made the bridge do (a matrix over a script that does nothing proves nothing)."""
    customers, orders = state["ledger"]["customers"].values(), state["ledger"]["orders"].values()
    reasons: dict[str, int] = defaultdict(int)
    for effects in state["site"]["effects"].values():
        for effect in effects:
            for reason in effect["reasons"]:
                reasons[reason] += 1
    return {
        "orders_earning": sum(1 for o in orders if Decimal(o["points_earned"]) > 0),
        "orders_spending": sum(1 for o in orders if Decimal(o["points_spent"]) > 0),
        "orders_refused": sum(1 for o in orders if o["message"]),
        "customers_in_debt": sum(1 for c in customers if Decimal(c["debt"]) > 0),
        "cards_issued": sum(1 for c in customers if c["card_status"] == "issued"),
        "webhooks": sum(len(e) for e in state["site"]["effects"].values()),
        **{f"reason:{k}": v for k, v in sorted(reasons.items())},
    }


# --- judging ----------------------------------------------------------------------------------------


def delivery_problems(state: dict[str, Any]) -> list[str]:
    """What a single run's site saw that at-least-once with an idempotency key does not allow:
    a webhook-id acted on with two different bodies, a message marked sent that never arrived, a
    message that arrived but was never enqueued, a dead message."""
    site, out = state["site"], state["outbox"]
    problems = [
        f"webhook-id {w} carried {n} different bodies" for w, n in site["bodies_per_id"].items() if n > 1
    ]
    received = set(site["received"])
    problems += [
        f"webhook-id {w} marked sent but never received (lost)"
        for w in out["webhooks_sent"]
        if w not in received
    ]
    problems += [
        f"webhook-id {w} received but not marked sent" for w in received if w not in out["webhooks_sent"]
    ]
    problems += [f"dead outbox message {d}" for d in out["dead"]]
    return problems


def compare(clean: dict[str, Any], crashed: dict[str, Any]) -> list[str]:
    """Every difference between two final states (empty: the crash changed nothing)."""
    diffs: list[str] = []
    for area in ("ledger", "onec"):
        for part, expected in clean[area].items():
            _diff(f"{area}.{part}", expected, crashed[area][part], diffs)
    _diff("site.latest", clean["site"]["latest"], crashed["site"]["latest"], diffs)
    _diff("site.effects", clean["site"]["effects"], crashed["site"]["effects"], diffs)
    _diff(
        "outbox.webhook_status", clean["outbox"]["webhook_status"], crashed["outbox"]["webhook_status"], diffs
    )
    return diffs


def _diff(where: str, a: Any, b: Any, out: list[str], limit: int = 20) -> None:
    if len(out) >= limit or a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in b:
                out.append(f"{where}[{key}]: missing after the crash (clean: {_short(a[key])})")
            elif key not in a:
                out.append(f"{where}[{key}]: only after the crash: {_short(b[key])}")
            else:
                _diff(f"{where}[{key}]", a[key], b[key], out, limit)
        return
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(f"{where}[{i}]", x, y, out, limit)
        return
    out.append(f"{where}: clean {_short(a)} != crashed {_short(b)}")


def _short(value: Any, n: int = 400) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= n else text[:n] + "…"
