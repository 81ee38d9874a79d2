"""Running a scripted history through a whole installation, clean or under faults, and reducing
what it left behind — ledger, 1C, site, quarantine — to plain data two runs can be compared on.

The 1C client's retry policy is made instant (no sleeps, a few more attempts) and its read timeout
short, so a fault run costs seconds, not minutes. Nothing else of the bridge is touched.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bridge.errors import BridgeError
from bridge.net import RetryPolicy
from bridge.store import schema as t
from bridge.store import tracking
from tests.e2e.cycle_kit import World, world
from tests.faults.history import History, Replay

ORDERS = "Document_ЗаказКлиента"
PARTNERS = "Catalog_Партнеры"
CARDS = "Catalog_КартыЛояльности"
PROPS = "ChartOfCharacteristicTypes_ДополнительныеРеквизитыИСведения"
#: Every kind of fault the simulator knows except control characters (which change data, by design).
FAULT_KINDS = (
    "error500",
    "error503",
    "error429",
    "html200",
    "bom",
    "truncated",
    "truncated_json",
    "delay",
    "reset",
    "timeout_after_send",
)


def fast_client(w: World, *, read_timeout: float) -> None:
    """No sleeping between retries, a few more attempts, and a short read timeout."""
    client = w.cycle.gateway.client
    client.retry_policy = RetryPolicy(max_attempts=8, base_s=0.0, cap_s=0.0, deadline_s=None)
    client._sleep = lambda _s: None  # the retry loop's injected sleep (Retry-After capped to 0 anyway)
    client.timeout = (2.0, read_timeout)


@dataclass
class RunLog:
    """What a run went through: cycles run, cycles that ended early, errors seen, faults fired."""

    cycles: int = 0
    aborted: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    fired: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    requests: int = 0
    most_at_once: int = 0  # the most 1C requests in flight at one time


def cycle_until_complete(w: World, at: datetime, log: RunLog, *, limit: int = 50) -> None:
    """Run cycles at ``at`` until one completes: a cycle cut short by 1C is simply run again.

    Only the bridge's own errors are caught; anything else is a bug and fails the test.
    """
    for _ in range(limit):
        log.cycles += 1
        # Cycles are ``poll.interval_s`` apart: by the next one, 1C has finished the requests the
        # bridge stopped waiting for (a ``delay`` outlasting the read timeout). Without this the
        # compressed clock lets a look-up overtake a create 1C is still working on (see faults.md).
        assert w.sim.wait_settled(), "the simulator is still working on a request after 10 s"
        try:
            result = w.once(at)
        except BridgeError as exc:
            log.aborted += 1
            log.errors[type(exc).__name__] += 1
            continue
        log.failures += result.failures
        return
    raise AssertionError(f"no complete cycle at {at} in {limit} attempts: {log.errors}")


def pending_outbox(w: World) -> int:
    with w.cycle.engine.store.engine.connect() as conn:
        return len(conn.execute(select(t.outbox.c.id).where(t.outbox.c.status == "pending")).all())


def next_due(w: World) -> datetime | None:
    """When the outbox's next head message (a customer's oldest pending one, per channel) is due."""
    heads: dict[tuple[str, str], tuple[int, datetime]] = {}
    with w.cycle.engine.store.engine.connect() as conn:
        pending = select(
            t.outbox.c.channel, t.outbox.c.customer_id, t.outbox.c.id, t.outbox.c.next_attempt_at
        )
        for channel, customer, msg_id, when in conn.execute(pending.where(t.outbox.c.status == "pending")):
            head = heads.get((channel, customer))
            if head is None or msg_id < head[0]:
                heads[(channel, customer)] = (msg_id, when)
    return min((when for _, when in heads.values()), default=None)


def drain(w: World, at: datetime, log: RunLog, *, limit: int = 60) -> datetime:
    """Follow-up cycles, each at the moment the next retry is due, as the daemon polling every
    ``poll.interval_s`` would reach it; returns the clock of the last one."""
    for _ in range(limit):
        due = next_due(w)
        if due is None:
            return at
        at = max(at, due)
        cycle_until_complete(w, at, log)
    raise AssertionError(f"outbox not drained after {limit} follow-up cycles (at {at})")


@dataclass(frozen=True)
class FaultPlan:
    """``sim.faults.rate(rate, kinds, seed, seconds=...)``; ``seconds`` outlasts the client's read
    timeout, so a ``delay`` and a write's hang after applying surface as real read timeouts."""

    rate: float
    seed: int
    kinds: tuple[str, ...] = FAULT_KINDS
    seconds: float = 0.4
    read_timeout: float = 0.3
    write_workers: int = 1  # ``onec.write_workers`` of the faulty run (the clean run sends one at a time)


def run(
    tmp: Path,
    history: History,
    *,
    final: datetime,
    faults: FaultPlan | None = None,
    drain_clean: bool = False,
) -> tuple[dict[str, Any], RunLog]:
    """Replay ``history`` (one cycle per step, repeated until complete, then follow-up cycles
    until the outbox is empty), then one cycle at ``final`` and its follow-ups.

    With ``drain_clean`` the faults are switched off for the final drain (not needed: faults.md).
    """
    log = RunLog()
    tmp.mkdir(parents=True, exist_ok=True)
    workers = {"onec.write_workers": faults.write_workers} if faults is not None else {}
    with world(tmp, start=history.steps[0].at, **workers) as w:
        fast_client(w, read_timeout=faults.read_timeout if faults is not None else 10.0)
        replay = Replay(history, w.op)
        replay.setup()
        if faults is not None:
            w.sim.faults.rate(faults.rate, kinds=faults.kinds, seed=faults.seed, seconds=faults.seconds)
        for step in replay.steps(settle=w.sim.wait_settled):
            cycle_until_complete(w, step.at, log)
            drain(w, step.at, log)
        if drain_clean:
            w.sim.faults.clear()
        cycle_until_complete(w, final, log)
        drain(w, final, log)
        w.sim.faults.clear()
        log.fired = Counter(kind for kind, _ in w.sim.faults.fired)
        log.requests = sum(w.store.requests.values())
        log.most_at_once = w.sim.most_at_once
        return final_state(w, replay), log


def clean_and_faulty(
    tmp: Path, history: History, *, final: datetime, faults: FaultPlan
) -> tuple[tuple[dict[str, Any], RunLog], tuple[dict[str, Any], RunLog]]:
    """Both runs at once: the clean one in a separate process (the machine's other core)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        clean = pool.submit(run, tmp / "clean", history, final=final)
        faulty = run(tmp / "faulty", history, final=final, faults=faults)
        return clean.result(), faulty


def final_state(w: World, replay: Replay) -> dict[str, Any]:
    """Everything a run left behind, with 1C keys replaced by the script's labels."""
    names = {key: label for label, key in replay.keys.items()}
    cards_1c = w.store.rows(CARDS)
    names.update({str(r["Ref_Key"]): f"card:{r['Штрихкод']}" for r in cards_1c})

    def label(value: Any) -> Any:
        if isinstance(value, str):
            return names.get(value, value)
        if isinstance(value, dict):
            return {k: label(v) for k, v in value.items() if k not in ("DataVersion", "Ref_Key")}
        if isinstance(value, list | tuple):
            return [label(v) for v in value]
        return value

    prop_names = {r["Ref_Key"]: r["Description"] for r in w.store.rows(PROPS)}

    def onec(entity_set: str, key: str) -> dict[str, Any]:
        row = w.store.get(entity_set, key)
        assert row is not None
        attrs = {
            prop_names.get(a["Свойство_Key"], a["Свойство_Key"]): a["Значение"]
            for a in row["ДополнительныеРеквизиты"]
        }
        body = label({k: v for k, v in row.items() if k != "ДополнительныеРеквизиты"})
        body["attributes"] = attrs
        return body

    engine = w.cycle.engine.store.engine
    with engine.connect() as conn:
        entries = sorted(
            (
                label(r.customer_id),
                label(r.order_id or ""),
                r.kind,
                str(r.points),
                str(r.money),
                r.effective_at.isoformat(),
                r.available_at.isoformat() if r.available_at else "",
                r.expires_at.isoformat() if r.expires_at else "",
            )
            for r in conn.execute(select(t.entries))
        )
        cards = sorted((label(r.customer_id), r.number, r.status) for r in conn.execute(select(t.cards)))
        quarantined = [
            (
                label(q["doc_id"]),
                q["number"],
                q["field"],
                q["reason"].replace(q["doc_id"], label(q["doc_id"])),
            )
            for q in tracking.quarantined(conn)
        ]
        outbox = Counter((r.channel, r.status) for r in conn.execute(select(t.outbox)))
    site = w.site
    assert site is not None
    partners = replay.labels("p")
    return {
        "entries": entries,
        "cards": cards,
        "cards_in_1c": sorted((label(r["Партнер_Key"]), r["Штрихкод"]) for r in cards_1c),
        "quarantine": quarantined,
        "outbox": dict(outbox),
        "orders_1c": {lbl: onec(ORDERS, key) for lbl, key in replay.labels("o").items()},
        "partners_1c": {lbl: onec(PARTNERS, key) for lbl, key in partners.items()},
        "site_latest": {lbl: label(site.latest(key)) for lbl, key in partners.items()},
        "site_sequences": sorted(
            (label(d.customer_id), d.sequence) for d in site.effective if d.customer_id is not None
        ),
    }
