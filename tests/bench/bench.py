"""The bridge's benchmark, run by hand (not a pytest test):

    python tests/bench/bench.py [--quick] [--pg URL] [--only a,b,c,d,e,split] [--profile]

(a) rules + ledger alone (``Engine.apply_order`` over domain orders, no HTTP): orders/s on SQLite
    and, with ``--pg``, PostgreSQL;
(b) one whole cycle against the 1C simulator on loopback over a backlog of closed orders: orders/s
    and 1C requests per order, beside an **I/O floor** — the very requests the real run made
    (recorded on the bridge's own ``requests`` session: method, URL, body), replayed with a bare
    ``requests.Session`` against an identical, freshly generated simulator, with the rules, the
    ledger, the outbox and the translation switched off — and the bridge's time over that floor;
(c) an idle cycle with recently closed (still tracked) orders and older ones in the state:
    requests and seconds;
(d) peak memory of a cycle against backlog size (a child process per size: the simulator runs in
    its own process, so only the bridge's memory is measured);
(e) a customer's view (balance read) with ~1 M ledger entries in the database.

It prints one table and, with ``--profile``, where the time of (a) and (b) goes (cProfile, top
functions by own time). The figures and what they mean are in docs/readme/performance.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
import structlog  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bridge.domain.model import Order  # noqa: E402
from bridge.runtime.config import Config, config_from_data  # noqa: E402
from bridge.runtime.signals import StopToken  # noqa: E402
from bridge.service.cycle import Cycle  # noqa: E402
from bridge.service.engine import Engine  # noqa: E402
from bridge.service.wiring import build_cycle, make_gateway, rules_of  # noqa: E402
from bridge.simulator import SimStore, Simulator, generate, load_reference  # noqa: E402
from bridge.store import schema as t  # noqa: E402
from bridge.store import tracking  # noqa: E402
from bridge.store.db import make_engine, upgrade  # noqa: E402
from bridge.store.ledger import LedgerStore  # noqa: E402
from tests.e2e.cycle_kit import MSK, config_data  # noqa: E402

ORDERS = "Document_ЗаказКлиента"
FULL = {
    "orders": 20_000,
    "customers": 5_000,
    "idle_recent": 20_000,
    "idle_old": 100_000,
    "mem_small": 10_000,
    "mem_large": 100_000,
    "entries": 1_000_000,
}
QUICK = {
    "orders": 2_000,
    "customers": 500,
    "idle_recent": 2_000,
    "idle_old": 10_000,
    "mem_small": 1_000,
    "mem_large": 10_000,
    "entries": 100_000,
}
TRACK_DAYS = 30
NOW = datetime(2026, 3, 1, 9, tzinfo=MSK)  # the clock of every run (a Sunday morning)


def quiet_logs() -> None:
    import logging

    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


# --- 1C data ----------------------------------------------------------------------------------------


def populate(store: SimStore, *, customers: int, orders: int, days: int, seed: int = 7) -> list[str]:
    """Deterministic partners and orders over ``days`` ending the day before ``NOW``; every order
    closed and posted (a backlog of closed orders). The same arguments give the same infobase,
    Ref_Keys and DataVersions, so a replay meets the very same data."""
    load_reference(store)
    start = (NOW - timedelta(days=days + 1)).replace(tzinfo=None)
    made = generate(store, customers=customers, orders=orders, seed=seed, start=start, days=days)
    for row in store.snapshot(ORDERS):
        # The bench's own data: close what ``generate`` left open (no version bump needed, nothing read it).
        row["Статус"] = "Закрыт"
        row["Posted"] = True
    return made.orders


def make_config(sim: Any, state_url: str, folder: Path, write_workers: int = 1) -> Config:
    data = config_data(sim, None, folder / "unused.db", **{"poll.track_days": TRACK_DAYS})
    data["state"] = {"url": state_url}
    data["poll"]["start"] = "2020-01-01T00:00:00"
    data["onec"]["page_size"] = 500
    data["onec"]["write_workers"] = write_workers
    env = {"ONEC_PASSWORD": sim.password}
    return config_from_data(data, config_path=folder / "config.yaml", environ=env)


def read_orders(config: Config, sim: Simulator) -> list[Order]:
    """The domain orders of every order in the simulator (read over HTTP, untimed)."""
    from bridge.onec.mapping import load_mapping

    gateway = make_gateway(config, load_mapping(config.mapping_path))
    rows = gateway.client.iter_all(gateway.sets["orders"])
    orders = [gateway.order(row) for row in rows]
    orders.sort(key=lambda o: (o.date, o.id))
    return orders


# --- databases ----------------------------------------------------------------------------------------


@contextmanager
def database(kind: str, folder: Path, pg: str | None) -> Iterator[str]:
    """A fresh, migrated state database: SQLite in ``folder`` or a throw-away PostgreSQL schema."""
    if kind == "sqlite":
        path = folder / f"state-{uuid.uuid4().hex[:6]}.db"
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        try:
            yield url
        finally:
            # Removed at once: a run leaves ~100 MB of dirty pages, and the kernel writing them
            # back would compete with the next run for this VM's two cores.
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
        return
    assert pg is not None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in pg else "?"
    url = f"{pg}{sep}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def plain_engine(config: Config, url: str) -> Engine:
    rules = rules_of(config, True)
    prefix = config.cards.prefix if config.discount_enabled else None
    return Engine(LedgerStore(make_engine(url)), rules, config.tz, card_prefix=prefix)


# --- results ------------------------------------------------------------------------------------------


@dataclass
class Report:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, part: str, what: str, value: str, target: str = "") -> None:
        self.rows.append((part, what, value, target))
        print(f"  {part:<4} {what:<58} {value:>14}  {target}", flush=True)

    def table(self) -> str:
        lines = ["| part | figure | value | target |", "| --- | --- | ---: | --- |"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows]
        return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def top_functions(prof: cProfile.Profile, n: int = 18, cumulative: bool = False) -> str:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    if cumulative:
        stats.sort_stats("cumtime").print_stats("bridge/", 40)
    else:
        stats.sort_stats("tottime").print_stats(n)
    text_ = out.getvalue()
    start = text_.find("   ncalls")
    return text_[start:] if start >= 0 else text_


# --- (a) rules + ledger ------------------------------------------------------------------------------


def bench_rules(
    report: Report, sizes: dict[str, int], folder: Path, pg: str | None, profile: bool, repeat: int = 1
) -> dict[str, str]:
    store = SimStore()
    populate(store, customers=sizes["customers"], orders=sizes["orders"], days=365)
    with Simulator(store) as sim:
        config = make_config(sim, "sqlite://", folder)
        orders = read_orders(config, sim)
    where: dict[str, str] = {}
    for kind in ("sqlite", "postgresql"):
        if kind == "postgresql" and pg is None:
            report.add("a", "rules + ledger, PostgreSQL", "skipped", "(give --pg URL)")
            continue
        rates: list[float] = []
        for run in range(repeat if kind == "sqlite" else 1):  # each run on a fresh database
            with database(kind, folder, pg) as url:
                engine = plain_engine(config, url)
                prof = cProfile.Profile() if profile and run == 0 else None
                started = time.perf_counter()
                if prof:
                    prof.enable()
                for order in orders:
                    engine.apply_order(order, NOW)
                if prof:
                    prof.disable()
                    where[f"a-{kind}"] = top_functions(prof)
                rates.append(len(orders) / (time.perf_counter() - started))
                engine.store.engine.dispose()
        rate = statistics.median(rates)
        target = f"≥ 2000 ({verdict(rate >= 2000)})" if kind == "sqlite" else ""
        runs = f", median of {len(rates)} runs" if len(rates) > 1 else ""
        what = f"rules + ledger, {kind}: orders/s ({len(orders)} orders{runs})"
        report.add("a", what, f"{rate:,.0f}", target)
        if len(rates) > 1:
            report.add("a", "  each run, orders/s", " / ".join(f"{r:,.0f}" for r in rates))
        if kind == "sqlite":
            pages, split = wal_pages_per_unit(config, folder, orders)
            report.add("a", "SQLite: WAL pages one unit of work's commit writes", f"{pages:.1f}")
            if split:
                report.add("a", "  of which, by B-tree (the eight largest)", split)
    return where


def wal_pages_per_unit(
    config: Config, folder: Path, orders: list[Any], sample: int = 500
) -> tuple[float, str]:
    """How many pages a unit of work's commit appends to SQLite's WAL (each costs a write; the
    commit is most of (a)'s time): the first half of a sample warms a fresh database, then the WAL
    is emptied, automatic checkpoints are stopped, and the frames the second half adds are counted.
    Also which B-trees (tables, indexes) those pages belong to, per unit (SQLite's ``dbstat``)."""
    import sqlite3
    import struct
    from collections import Counter

    from sqlalchemy import event

    warm, counted = orders[: sample // 2], orders[sample // 2 : sample]
    with database("sqlite", folder, None) as url:
        warmer = plain_engine(config, url)
        for order in warm:
            warmer.apply_order(order, NOW)
        # A new engine for the counted half: the store keeps its thread's connection between
        # units, so the warm engine's connection would still checkpoint every 10 000 pages and
        # restart the WAL under the count.
        engine = plain_engine(config, url)

        @event.listens_for(engine.store.engine, "connect")
        def _no_checkpoint(dbapi: Any, _record: Any) -> None:
            dbapi.execute("PRAGMA wal_autocheckpoint=0")

        side = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
        try:
            side.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            for order in counted:
                engine.apply_order(order, NOW)
            frames = side.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
            log = Path(url.split("///", 1)[1] + "-wal").read_bytes()
            pages: list[int] = []
            if len(log) >= 32:  # empty when the sample wrote nothing (tiny sizes)
                size = struct.unpack(">I", log[8:12])[0]  # the WAL header's page size
                pages = [struct.unpack(">I", log[at : at + 4])[0] for at in range(32, len(log), 24 + size)]
            try:
                owner = dict(side.execute("SELECT pageno, name FROM dbstat").fetchall())
            except sqlite3.OperationalError:  # SQLite built without dbstat
                owner = {}
        finally:
            side.close()
            engine.store.engine.dispose()
            warmer.store.engine.dispose()
    units = max(1, len(counted))
    by_tree = Counter(owner.get(page, "?") for page in pages[:frames])
    split = ", ".join(f"{name} {n / units:.1f}" for name, n in by_tree.most_common(8)) if owner else ""
    return float(frames) / units, split


# --- (b) end to end and its I/O floor -----------------------------------------------------------------


class Recorder:
    """Wraps the bridge's own 1C session(s) (``make_session``: adapters, auth, timeouts and proxy
    settings stay as the daemon has them) and remembers every request sent, in order, for the floor."""

    def __init__(self, *sessions: requests.Session) -> None:
        self.calls: list[tuple[str, str, bytes | None, dict[str, str]]] = []
        self.threads: list[int] = []  # the thread that sent each call (write-back workers: several)
        self.waited = 0.0  # seconds inside requests (summed over threads): sending, 1C answering, reading
        for session in dict.fromkeys(sessions):
            self._wrap(session)

    def _wrap(self, session: requests.Session) -> None:
        send = session.request

        def request(method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k != "If-Match"}
            self.calls.append((str(method), str(url), kwargs.get("data"), headers))
            self.threads.append(threading.get_ident())
            started = time.perf_counter()
            try:
                return send(method, url, *args, **kwargs)
            finally:
                self.waited += time.perf_counter() - started

        session.request = request  # type: ignore[method-assign]


class Phases:
    """Times the cycle's two phases: processing the documents, then delivering the outbox (the
    cycle's calls of ``deliver_channel``, wrapped for the run)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.delivery = self.delivery_waited = 0.0
        self.processing = self.processing_waited = 0.0

    @contextmanager
    def timing(self) -> Iterator[None]:
        import bridge.service.cycle as cycle_module

        original = cycle_module.deliver_channel

        def timed(*args: Any, **kwargs: Any) -> Any:
            started, waited = time.perf_counter(), self.recorder.waited
            try:
                return original(*args, **kwargs)
            finally:
                self.delivery += time.perf_counter() - started
                self.delivery_waited += self.recorder.waited - waited

        cycle_module.deliver_channel = timed  # type: ignore[assignment]
        started, waited = time.perf_counter(), self.recorder.waited
        try:
            yield
        finally:
            cycle_module.deliver_channel = original
            self.processing = time.perf_counter() - started - self.delivery
            self.processing_waited = self.recorder.waited - waited - self.delivery_waited


def new_world(
    folder: Path, url: str, sim: Any, clock: list[datetime], write_workers: int = 1
) -> tuple[Config, Cycle, Recorder]:
    config = make_config(sim, url, folder, write_workers)
    cycle = build_cycle(config, clock=lambda: clock[0])
    return config, cycle, Recorder(cycle.gateway.client._session)


Call = tuple[str, str, bytes | None, dict[str, str]]


def split_by_thread(calls: list[Call], threads: list[int]) -> list[list[list[Call]]]:
    """The recorded calls as stretches, in order: a stretch of calls the first thread sent is one
    part; a stretch sent by other threads (write-back workers) is one part per thread, each in the
    order that thread sent them."""
    stretches: list[list[list[Call]]] = []
    main, current = (threads[0] if threads else 0), ""
    workers: dict[int, list[Call]] = {}
    for call, thread in zip(calls, threads, strict=True):
        kind = "main" if thread == main else "workers"
        if kind != current:
            stretches.append([[]] if kind == "main" else [])
            workers, current = {}, kind
        if kind == "main":
            stretches[-1][0].append(call)
            continue
        if thread not in workers:
            workers[thread] = []
            stretches[-1].append(workers[thread])
        workers[thread].append(call)
    return stretches


def replay(calls: list[Call], auth: Any, threads: list[int] | None = None) -> tuple[float, float, int]:
    """Send the recorded requests again on a session built like the bridge's (``make_session``:
    the same HTTP stack, nothing of the bridge above it); read and parse every answer. Returns the
    seconds, this process's CPU seconds and the number of requests.

    Without ``threads`` every call is sent in order from one thread. With it (the thread that sent
    each call in the bridge's run), the floor has the bridge's own concurrency: a stretch of calls
    the first thread sent goes out in order, and a stretch sent by write-back workers goes out from
    as many threads, each sending its recorded calls in order. The replay does not wait between
    the bridge's batches, so this floor is, if anything, lower than the bridge could reach.
    """
    from bridge.net import make_session

    session = make_session(timeout=60, auth=auth)

    def send(part: list[Call]) -> None:
        for method, url, data, headers in part:
            response = session.request(method, url, data=data, headers=headers)
            body = response.content
            if body and response.headers.get("Content-Type", "").startswith("application/json"):
                json.loads(body)

    stretches = [[calls]] if threads is None else split_by_thread(calls, threads)
    started, cpu_started = time.perf_counter(), time.process_time()
    for stretch in stretches:
        if len(stretch) == 1:
            send(stretch[0])
            continue
        with ThreadPoolExecutor(len(stretch)) as pool:
            list(pool.map(send, stretch))
    return time.perf_counter() - started, time.process_time() - cpu_started, len(calls)


def request_kinds(store: SimStore) -> str:
    """``GET entity Document_ЗаказКлиента: 1500, …`` — what the 1C requests were, most first."""
    from collections import Counter

    counts: Counter[str] = Counter()
    for rec in store.log:
        if rec.kind == "route":  # the bench's own /bench/stats
            continue
        name = rec.path.strip("/").split("/")[-1].split("(")[0]
        counts[f"{rec.method} {rec.kind} {name}"] += 1
    return ", ".join(f"{what}: {n}" for what, n in counts.most_common())


def bench_cycle(
    report: Report,
    sizes: dict[str, int],
    folder: Path,
    profile: bool,
    in_process: bool = False,
    write_workers: int = 1,
    latency_ms: float = 0.0,
) -> dict[str, str]:
    """(b): the simulator runs in its own process (1C is another server; in the bridge's process it
    would compete for the GIL and the garbage collector with the bridge), unless ``in_process``.
    ``write_workers`` is the bridge's ``onec.write_workers``; ``latency_ms`` makes 1C (both
    simulators, the bridge's and the floor's) take that long over every answer, as a real 1C does."""
    where: dict[str, str] = {}
    n, customers = sizes["orders"], sizes["customers"]
    with simulator(n, customers, in_process, latency_ms) as sim, database("sqlite", folder, None) as url:
        clock = [NOW]
        _config, cycle, session = new_world(folder, url, sim, clock, write_workers)
        sim_stats(sim, reset=True)
        prof = cProfile.Profile() if profile else None
        phases = Phases(session)
        started, cpu_started = time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        with phases.timing():
            result = cycle.run(StopToken())
        if prof:
            prof.disable()
            where["b"] = top_functions(prof)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        calls, threads = list(session.calls), list(session.threads)
        waited = session.waited
        stats = sim_stats(sim)
        auth = cycle.gateway.client._auth
    assert result.documents_failed == 0, result.failures[:3]
    # The floor: the same requests against an identical infobase, nothing else.
    concurrent = len(set(threads)) > 1
    with simulator(n, customers, in_process, latency_ms) as floor_sim:
        old_base = calls[0][1].split("/odata/")[0] if calls else ""
        new_base = floor_sim.odata_url.split("/odata/")[0]
        moved = [(m, u.replace(old_base, new_base, 1), d, h) for m, u, d, h in calls]
        floor_s, floor_cpu, sent = replay(moved, auth, threads if concurrent else None)
    serial_s = 0.0
    if concurrent:  # the same calls from one thread, for comparison (a floor the bridge can beat)
        with simulator(n, customers, in_process, latency_ms) as serial_sim:
            new_base = serial_sim.odata_url.split("/odata/")[0]
            moved = [(m, u.replace(old_base, new_base, 1), d, h) for m, u, d, h in calls]
            serial_s, _cpu, _sent = replay(moved, auth)
    total, gets, effective = stats["total"], stats["gets"], stats["effective"]
    writes = total - gets
    rate = n / elapsed
    per_order = total / n
    where_sim = "in the bridge's process" if in_process else "in its own process"
    setting = f"onec.write_workers {write_workers}" + (
        f", 1C answering in +{latency_ms:g} ms" if latency_ms else ""
    )
    report.add("b", "settings", setting)
    report.add("b", f"cycle over {n} closed orders / {customers} customers: orders/s", f"{rate:,.0f}")
    report.add("b", f"cycle: seconds (simulator {where_sim})", f"{elapsed:.1f}")
    report.add(
        "b",
        "1C requests per order (GET / PATCH+POST)",
        f"{per_order:.2f} ({gets}/{writes})",
        f"write-backs need {(effective + 0) / n:.2f}+reads",
    )
    report.add("b", "effective 1C writes (changed something)", f"{effective}")
    report.add("b", "1C requests by kind", stats["kinds"])
    report.add("b", "cycle: seconds inside requests (summed over threads)", f"{waited:.1f}")
    report.add(
        "b",
        "cycle: processing / delivery, seconds (of which inside requests)",
        f"{phases.processing:.1f} ({phases.processing_waited:.1f}) / "
        f"{phases.delivery:.1f} ({phases.delivery_waited:.1f})",
    )
    how = "as many threads as the bridge's write-backs used" if concurrent else "one thread"
    report.add(
        "b", f"I/O floor: the same {sent} requests, bridge's HTTP stack, {how}: seconds", f"{floor_s:.1f}"
    )
    if concurrent:
        report.add("b", "I/O floor sent from one thread: seconds", f"{serial_s:.1f}")
    # Where the seconds are spent: the simulator is another process, so the difference between
    # wall clock and this process's CPU is (mostly) 1C answering. The floor's CPU is the HTTP stack.
    report.add("b", "cycle: CPU seconds of the bridge's process", f"{cpu:.1f}")
    report.add("b", "I/O floor: CPU seconds of its process (the HTTP stack)", f"{floor_cpu:.1f}")
    report.add(
        "b",
        "bridge's CPU over 1.25× the floor's seconds (≥ 1: one process cannot reach 1.25×)",
        f"{cpu / (1.25 * floor_s):.2f}" if floor_s else "n/a",
        f"own CPU {cpu - floor_cpu:.1f} s, {(cpu - floor_cpu) / n * 1000:.2f} ms per order",
    )
    # The floor is the least time the same calls can take: with concurrent write-backs, the lower
    # of the two replays (on loopback the threads mostly contend for the GIL, and either can win).
    lowest = min(floor_s, serial_s) if concurrent and serial_s else floor_s
    ratio = elapsed / lowest if lowest else float("inf")
    which = " (the lower of the two floors)" if concurrent else ""
    report.add(
        "b", f"bridge over the I/O floor{which}", f"{ratio:.2f}×", f"≤ 1.25× ({verdict(ratio <= 1.25)})"
    )
    return where


def bench_split(report: Report, sizes: dict[str, int], folder: Path) -> None:
    """(b), an experiment: the delivery in a second process, draining the outbox while the first
    one still processes the documents. The daemon does not work this way; this measures what such
    a design could gain here (README "Left to do"). Beside it, the same backlog as one cycle."""
    n, customers = sizes["orders"], sizes["customers"]
    for split in (False, True):
        with simulator(n, customers, False) as sim, database("sqlite", folder, None) as url:
            _config, cycle, _session = new_world(folder, url, sim, [NOW])
            sim_stats(sim, reset=True)
            done = folder / f"processed-{uuid.uuid4().hex[:6]}"
            child = None
            if split:
                cycle.channels = []  # the child delivers
                child = subprocess.Popen(
                    [sys.executable, __file__, "--deliver-child", sim.odata_url, url, str(folder), str(done)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            started = time.perf_counter()
            result = cycle.run(StopToken())
            processed = time.perf_counter() - started
            delivered = ""
            if child is not None:
                done.write_text("done")
                delivered = child.communicate()[0].strip()
            elapsed = time.perf_counter() - started
            stats = sim_stats(sim)
        assert result.documents_failed == 0, result.failures[:3]
        how = "split: delivery in a 2nd process" if split else "one process (as the daemon)"
        report.add(
            "b",
            f"{how}: seconds, processing done at; 1C requests / effective writes",
            f"{elapsed:.1f}, {processed:.1f}; {stats['total']} / {stats['effective']}",
            delivered,
        )


def deliver_child(odata_url: str, url: str, folder: str, done: str) -> None:
    """The split experiment's delivery process: deliver the onec outbox until the other process
    has finished processing and nothing is left; print the messages sent and the passes."""
    from bridge.service.delivery import deliver_channel

    quiet_logs()
    _config, cycle, _session = new_world(Path(folder), url, _Remote(odata_url), [NOW])
    channel = cycle.channels[0]
    flag = Path(done)
    seen = {"sends": 0, "while_processing": -1}

    def before_send() -> bool:  # deliver_channel asks before every send
        if seen["while_processing"] < 0 and flag.exists():
            seen["while_processing"] = seen["sends"]
        seen["sends"] += 1
        return False

    sent = passes = 0
    started = time.perf_counter()
    while True:
        finished = flag.exists()
        stats = deliver_channel(
            channel.name,
            cycle.engine.store.transaction,
            channel.send,
            NOW,
            max_age_hours=channel.max_age_hours,
            stop=before_send,
        )
        passes += 1
        sent += stats.sent
        if finished and stats.requests == 0:
            break
        if stats.requests == 0:
            time.sleep(0.002)
    print(
        f"{sent} messages in {passes} passes, {time.perf_counter() - started:.1f} s after the child's start; "
        f"{seen['while_processing']} of them sent while the other process still processed"
    )


@contextmanager
def simulator(orders: int, customers: int, in_process: bool, latency_ms: float = 0.0) -> Iterator[Any]:
    """The bench's infobase (``populate``), served in this process or in a child process; with
    ``latency_ms`` every answer comes that much later (the simulator's ``delay`` fault on every
    request: each connection has its own handler thread, so concurrent requests wait in parallel,
    as they do in a 1C server's sessions)."""
    if in_process:
        store = SimStore()
        populate(store, customers=customers, orders=orders, days=365)
        with Simulator(store) as sim:
            add_latency(sim, latency_ms)
            yield sim
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    port_file = folder / "port"
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(orders), str(customers), str(port_file), str(latency_ms)],
        stdout=subprocess.DEVNULL,
    )
    try:
        while not port_file.exists() or not port_file.read_text().strip():
            if server.poll() is not None:
                raise SystemExit("simulator process died")
            time.sleep(0.2)
        port = int(port_file.read_text())
        yield _Remote(f"http://127.0.0.1:{port}/ut11/odata/standard.odata")
    finally:
        server.terminate()
        server.wait()


def sim_stats(sim: Any, *, reset: bool = False) -> dict[str, Any]:
    """What 1C (the simulator) saw: requests, GETs, effective writes, by kind; ``reset`` zeroes them."""
    if isinstance(sim, Simulator):
        if reset:
            sim.store.reset_counters()
        return _stats_of(sim.store)
    base = sim.odata_url.split("/odata/")[0]
    answer = requests.get(f"{base}/bench/{'reset' if reset else 'stats'}", timeout=60)
    answer.raise_for_status()
    return dict(answer.json())


def _stats_of(store: SimStore) -> dict[str, Any]:
    seen = [rec for rec in store.log if rec.kind != "route"]
    return {
        "total": len(seen),
        "gets": sum(1 for rec in seen if rec.method == "GET"),
        "effective": sum(store.effective_writes.values()),
        "kinds": request_kinds(store),
    }


# --- (c) idle cycle ------------------------------------------------------------------------------------


def bench_idle(report: Report, sizes: dict[str, int], folder: Path, profile: bool = False) -> dict[str, str]:
    recent, old = sizes["idle_recent"], sizes["idle_old"]
    total = recent + old
    days = max(TRACK_DAYS + 1, round(TRACK_DAYS * total / recent))
    store = SimStore()
    populate(store, customers=sizes["customers"], orders=total, days=days)
    with Simulator(store) as sim, database("sqlite", folder, None) as url:
        config = make_config(sim, url, folder)
        orders = read_orders(config, sim)
        since = NOW - timedelta(days=TRACK_DAYS)
        older = [o for o in orders if o.date < since - timedelta(days=1)]
        # The state a daemon running for months left: every older order applied an hour after its date,
        # time-driven work done, cursors at the first recent order (no outbox: those write-backs were
        # delivered long ago).
        seeder = plain_engine(config, url)
        seeder.card_prefix = None  # cards get issued (and created in 1C) by the real catch-up below
        for order in older:
            seeder.apply_order(order, order.date + timedelta(hours=1))
        cut = older[-1].date if older else NOW - timedelta(days=days)
        seeder.tick(cut + timedelta(hours=2))
        with seeder.store.transaction() as conn:
            for name in ("orders_watermark", "returns_watermark"):
                tracking.set_cursor(conn, name, (cut + timedelta(hours=1)).isoformat(), cut)
            tracking.set_cursor(conn, "last_reconcile", NOW.isoformat(), cut)
            conn.execute(t.customers.update().values(onec_version="seeded"))
        seeder.store.engine.dispose()
        clock = [NOW]
        _config, cycle, _session = new_world(folder, url, sim, clock)
        started = time.perf_counter()
        catch_up = cycle.run(StopToken())
        catch_s = time.perf_counter() - started
        assert catch_up.documents_failed == 0, catch_up.failures[:3]
        report.add(
            "c", f"catch-up cycle over the {len(orders) - len(older)} recent orders: s", f"{catch_s:.1f}"
        )
        with cycle.engine.store.engine.connect() as conn:
            tracked = len(tracking.tracked_orders(conn, NOW + timedelta(minutes=5), TRACK_DAYS))
            known = conn.execute(text("SELECT count(*) FROM orders")).scalar()
            cards = len(tracking.tracked_cards(conn))
        clock[0] = NOW + timedelta(minutes=5)
        store.reset_counters()
        _session.waited = 0.0
        prof = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if prof:
            prof.enable()
        idle = cycle.run(StopToken())
        if prof:
            prof.disable()
        idle_s = time.perf_counter() - started
        requests_ = store.request_count()
        kinds = request_kinds(store)
    report.add("c", "idle cycle: orders in state / tracked / cards tracked", f"{known}/{tracked}/{cards}")
    report.add("c", "idle cycle: 1C requests", f"{requests_}", f"< 50 ({verdict(requests_ < 50)})")
    report.add("c", "idle cycle: 1C requests by kind", kinds)
    report.add("c", "idle cycle: seconds", f"{idle_s:.2f}", f"< 1 ({verdict(idle_s < 1)})")
    report.add("c", "idle cycle: of which waiting for 1C (the simulator) to answer", f"{_session.waited:.2f}")
    report.add("c", "idle cycle: the bridge's own seconds", f"{idle_s - _session.waited:.2f}")
    assert idle.documents_processed == 0 or True
    return {"c": top_functions(prof, cumulative=True)} if prof else {}


# --- (d) memory ----------------------------------------------------------------------------------------


def memory_child(orders: int, customers: int) -> None:
    """Run in a child process: the simulator in a grandchild, one cycle here, peak RSS growth out."""
    quiet_logs()
    folder = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    with simulator(orders, customers, in_process=False) as sim, database("sqlite", folder, None) as url:
        clock = [NOW]
        _config, cycle, session = new_world(folder, url, sim, clock)
        session.calls = _NoList()  # recording off: the list would grow with the backlog
        session.threads = _NoList()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = cycle.run(StopToken())
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kb": before, "after_kb": after, "docs": result.documents_processed}))


@dataclass
class _Remote:
    """A simulator in another process: only its address and credentials."""

    odata_url: str
    username: str = "Администратор"
    password: str = "пароль"


class _NoList(list):  # type: ignore[type-arg]
    def append(self, item: Any) -> None:  # recording off: memory would grow with the backlog
        pass


def add_latency(sim: Simulator, latency_ms: float) -> None:
    if latency_ms > 0:
        sim.faults.rate(1.0, kinds=("delay",), seed=1, seconds=latency_ms / 1000)


def serve(orders: int, customers: int, port_file: str, latency_ms: float = 0.0) -> None:
    quiet_logs()
    store = SimStore()
    populate(store, customers=customers, orders=orders, days=365)
    with Simulator(store) as sim:
        add_latency(sim, latency_ms)

        def stats(method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
            if path.endswith("/reset"):
                store.reset_counters()
            return 200, {"Content-Type": "application/json"}, json.dumps(_stats_of(store)).encode()

        sim.add_route(f"/{sim.infobase}/bench/", stats, auth=False)
        Path(port_file).write_text(str(sim.port))
        while True:
            time.sleep(3600)


def bench_memory(report: Report, sizes: dict[str, int]) -> None:
    peaks = []
    for n in (sizes["mem_small"], sizes["mem_large"]):
        customers = max(1, n // 4)
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n), str(customers)],
            capture_output=True,
            text=True,
            check=True,
        )
        data = json.loads(out.stdout.strip().splitlines()[-1])
        peaks.append(data["after_kb"] / 1024)
        growth = (data["after_kb"] - data["before_kb"]) / 1024
        report.add(
            "d",
            f"peak RSS of a cycle over {n} orders: MiB (growth in cycle)",
            f"{peaks[-1]:.0f} (+{growth:.0f})",
        )
    ratio = peaks[1] / peaks[0]
    report.add("d", "peak memory large / small backlog", f"{ratio:.2f}×", f"flat ({verdict(ratio < 1.3)})")


# --- (e) balance read ------------------------------------------------------------------------------------


def bench_balance(report: Report, sizes: dict[str, int], folder: Path, pg: str | None) -> None:
    """A template customer's real history, cloned until the ledger holds ``entries`` rows."""
    store = SimStore()
    populate(store, customers=1, orders=60, days=365)
    with Simulator(store) as sim:
        config = make_config(sim, "sqlite://", folder)
        orders = read_orders(config, sim)
    kinds = ["sqlite"] + (["postgresql"] if pg else [])
    for kind in kinds:
        with database(kind, folder, pg) as url:
            engine = plain_engine(config, url)
            for order in orders:
                engine.apply_order(order, order.date + timedelta(hours=1))
            template = orders[0].customer_id
            assert template is not None
            db = engine.store.engine
            with db.connect() as conn:
                entries = [
                    dict(r._mapping) for r in conn.execute(t.entries.select().order_by(t.entries.c.id))
                ]
                allocs = [dict(r._mapping) for r in conn.execute(t.allocations.select())]
            per = len(entries)
            copies = max(1, sizes["entries"] // per)
            ids: list[str] = []
            next_entry = max(e["id"] for e in entries) + 1
            next_alloc = max((a["id"] for a in allocs), default=0) + 1
            batch_e: list[dict[str, Any]] = []
            batch_a: list[dict[str, Any]] = []
            for c in range(copies - 1):
                cid = f"bench-{c:07d}"
                ids.append(cid)
                remap = {}
                for e in entries:
                    remap[e["id"]] = next_entry
                    batch_e.append({**e, "id": next_entry, "customer_id": cid})
                    next_entry += 1
                for a in allocs:
                    batch_a.append(
                        {**a, "id": next_alloc, "entry_id": remap[a["entry_id"]], "customer_id": cid}
                    )
                    next_alloc += 1
                if len(batch_e) > 50_000 or c == copies - 2:
                    with db.begin() as conn:
                        conn.execute(t.entries.insert(), batch_e)
                        if batch_a:
                            conn.execute(t.allocations.insert(), batch_a)
                    batch_e, batch_a = [], []
            with db.connect() as conn:
                count = conn.execute(text("SELECT count(*) FROM entries")).scalar()
            probe = [template, *ids[:: max(1, len(ids) // 200)]][:200]
            for cid in probe[:20]:
                engine.customer_view(cid, NOW)  # warm
            started = time.perf_counter()
            for cid in probe:
                engine.customer_view(cid, NOW)
            ms = (time.perf_counter() - started) / len(probe) * 1000
            report.add(
                "e",
                f"balance read ({kind}, {count:,} entries, {per} per customer): ms",
                f"{ms:.2f}",
                f"< 5 ({verdict(ms < 5)})",
            )
            db.dispose()


# --- main ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke)")
    parser.add_argument(
        "--pg", metavar="URL", help="also PostgreSQL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument(
        "--only",
        default="a,b,c,d,e",
        help="parts to run, e.g. a,b; 'split' (not in the default) is (b)'s experiment with the "
        "delivery in a second process",
    )
    parser.add_argument("--profile", action="store_true", help="print where the time of (a) and (b) goes")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="(a) on SQLite: runs on fresh databases; the median is the figure (a shared VM swings ±20 %%)",
    )
    for key in FULL:
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, help=f"override the size {key}")
    parser.add_argument(
        "--sim-in-process",
        action="store_true",
        help="(b): serve the simulator in the bridge's own process, as before (GIL and GC shared)",
    )
    parser.add_argument("--memory-child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--write-workers",
        type=int,
        default=1,
        help="(b): the bridge's onec.write_workers (the floor then sends with the same concurrency)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="(b): 1C answers every request this much later (a real 1C takes tens of ms)",
    )
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--deliver-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.deliver_child:
        deliver_child(*args.deliver_child)
        return 0
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    if args.serve:
        serve(int(args.serve[0]), int(args.serve[1]), args.serve[2], float(args.serve[3]))
        return 0
    quiet_logs()
    sizes = dict(QUICK if args.quick else FULL)
    for key in FULL:
        value = getattr(args, key)
        if value is not None:
            sizes[key] = value
    parts = set(args.only.split(","))
    report = Report()
    where: dict[str, str] = {}
    print(f"sizes: {sizes}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        folder = Path(tmp)
        steps: list[tuple[str, Callable[[], Any]]] = [
            (
                "a",
                lambda: where.update(bench_rules(report, sizes, folder, args.pg, args.profile, args.repeat)),
            ),
            (
                "b",
                lambda: where.update(
                    bench_cycle(
                        report,
                        sizes,
                        folder,
                        args.profile,
                        args.sim_in_process,
                        args.write_workers,
                        args.latency_ms,
                    )
                ),
            ),
            ("c", lambda: where.update(bench_idle(report, sizes, folder, args.profile))),
            ("d", lambda: bench_memory(report, sizes)),
            ("e", lambda: bench_balance(report, sizes, folder, args.pg)),
        ]
        steps.append(("split", lambda: bench_split(report, sizes, folder)))
        for name, step in steps:
            if name in parts:
                step()
    print()
    print(report.table())
    for name, text_ in where.items():
        print(f"\nwhere the time goes ({name}), by own time:\n{text_}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
