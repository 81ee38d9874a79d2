"""ScanSource end to end over real HTTP against the simulator: a 10 000-order first read in bounded
memory, an idle cycle over 20 000 tracked orders, key re-reads under the URL budget, changes,
deletions and the nightly sweep catching a back-dated document."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from bridge.onec.sources import LAST_RECONCILE, Change, ScanSource, watermark_cursor
from bridge.simulator import Generated, SimStore, Simulator, generate
from tests.e2e.test_adapter_kit import (
    MSK,
    ORDERS,
    ROOT,
    MemoryState,
    client,
    cycle,
    encoded_length,
    mapping,
    poll,
)

START = datetime(2025, 1, 1)
NOW = datetime(2026, 1, 2, 12, 0, tzinfo=MSK)  # generate() spreads orders over 2025


class External:
    """A simulator in its own process (``python -m bridge.simulator``): tracemalloc in the test
    process then measures the bridge alone, not the server thread building answers."""

    def __init__(self, orders: int, customers: int, seed: int) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        args = ["--port", str(self.port), "--orders", str(orders), "--customers", str(customers)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge.simulator", *args, "--seed", str(seed)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.odata_url = f"http://127.0.0.1:{self.port}/ut11/odata/standard.odata"

    def wait(self) -> External:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # printed once the data is loaded and it listens
        assert "1C simulator" in line, line
        return self

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module", autouse=True)
def ten_k() -> Iterator[External]:
    """Started first, so that generating its data overlaps the other tests of this module."""
    external = External(orders=10_000, customers=300, seed=7)
    yield external
    external.stop()


@pytest.fixture(scope="module")
def twenty_k() -> Iterator[Simulator]:
    store = SimStore()
    generate(store, customers=200, orders=20_000, seed=11, start=START)
    with Simulator(store) as sim:
        yield sim


@pytest.fixture
def small() -> Iterator[tuple[Simulator, Generated]]:
    store = SimStore()
    made = generate(store, customers=20, orders=300, seed=5, start=START)
    with Simulator(store) as sim:
        yield sim, made


def source(sim: Simulator, **kwargs: object) -> ScanSource:
    url_budget = kwargs.pop("url_budget", None)
    c = client(sim, url_budget=url_budget) if url_budget else client(sim)
    return ScanSource(c, mapping(), poll(START.replace(tzinfo=MSK)), MSK, **kwargs)  # type: ignore[arg-type]


def test_idle_cycle_over_20k_tracked_orders_stays_within_a_few_dozen_requests(twenty_k: Simulator) -> None:
    sim = twenty_k
    state = MemoryState()
    state.remember(sim.store)  # a previous cycle applied every order
    state.cursors.update(
        {
            watermark_cursor("order"): (NOW - timedelta(minutes=1)).isoformat(),
            watermark_cursor("return"): (NOW - timedelta(minutes=1)).isoformat(),
            LAST_RECONCILE: NOW.isoformat(),
        }
    )
    src = source(sim)
    assert len(state.tracked("order", NOW)) == 20_000
    sim.store.reset_counters()
    before = src.client.requests_made
    changes = cycle(src, state, NOW + timedelta(minutes=1))
    requests = sim.store.request_count()
    assert changes == []
    assert requests == src.client.requests_made - before
    assert requests <= 50, requests
    assert src.last_plan == {"order": "scan"}
    assert src.key_requests("order", state.tracked("order", NOW)) > 500  # what keys would have cost
    print(f"idle cycle over 20 000 tracked orders: {requests} requests")


def test_tracked_orders_are_reread_by_key_under_the_url_budget(small: tuple[Simulator, Generated]) -> None:
    sim, made = small
    budget = 900
    sim.max_query_bytes = budget  # an over-long query would get IIS's 404.15 page
    src = source(sim, url_budget=budget)
    state = MemoryState()
    cycle(src, state, NOW)
    open_keys = made.orders[-60:]
    for key in made.orders[:-60]:
        state.docs["order"][key] = (*state.docs["order"][key][:2], True)
    state.track_closed = False  # only the newest 60 orders are tracked: few, so by key
    for key in open_keys:
        state.docs["order"][key] = (state.docs["order"][key][0], None, False)  # date unknown
    changed = open_keys[::7]
    for key in changed:
        sim.store.patch(ORDERS, key, {"СуммаДокумента": Decimal("123.45")})
    sim.store.reset_counters()
    got = cycle(src, state, NOW + timedelta(hours=1))
    assert sorted(c.key for c in got if c.entity == "order") == sorted(changed)
    assert all(c.row and c.row["СуммаДокумента"] == Decimal("123.45") for c in got if c.entity == "order")
    assert src.last_plan == {"order": "keys"}
    lengths = [encoded_length(r.query) for r in sim.store.log]
    assert sim.store.request_count(kinds=["too_long"]) == 0
    assert max(lengths) <= budget
    assert sum(1 for r in sim.store.log if "Ref_Key eq guid" in r.query) >= 3  # several chains


def test_new_changed_deleted_and_back_dated_documents(small: tuple[Simulator, Generated]) -> None:
    sim, made = small
    src, state = source(sim), MemoryState(track_closed=False)
    first = cycle(src, state, NOW)
    assert {c.key for c in first if c.entity == "order"} == set(made.orders)
    assert state.cursors[LAST_RECONCILE] == NOW.isoformat()  # the first full read counts as a sweep

    # nothing new: nothing yielded
    assert cycle(src, state, NOW + timedelta(minutes=1)) == []

    # a new order, an open order deleted, an old closed (untracked) order back-dated and edited
    new = sim.store.put(
        ORDERS, {"Date": (NOW + timedelta(minutes=1)).replace(tzinfo=None), "Статус": "НеСогласован"}
    )
    tracked = state.tracked("order", NOW)
    gone = next(iter(tracked))
    sim.store.delete(ORDERS, gone)
    old = next(k for k in made.orders if k not in tracked)
    sim.store.patch(ORDERS, old, {"Date": datetime(2025, 11, 1), "СуммаДокумента": Decimal(1)})
    now = NOW + timedelta(minutes=2)
    got = {(c.entity, c.key): c for c in cycle(src, state, now)}
    assert ("order", new["Ref_Key"]) in got and got[("order", gone)].row is None
    assert ("order", old) not in got  # back-dated and untracked: only the sweep can see it

    # the sweep runs at 03:30 local time the next night and catches it
    night = datetime(2026, 1, 3, 3, 31, tzinfo=MSK)
    swept = {c.key: c for c in cycle(src, state, night) if c.entity == "order"}
    assert set(swept) == {old}
    assert swept[old].row and swept[old].row["СуммаДокумента"] == Decimal(1)
    assert state.cursors[LAST_RECONCILE] == night.isoformat()
    # …and not again the same night
    assert cycle(src, state, night + timedelta(minutes=5)) == []


def test_customers_come_before_the_orders_that_name_them(small: tuple[Simulator, Generated]) -> None:
    sim, _ = small
    changes = list(source(sim).read(MemoryState(), NOW))
    position = {(c.entity, c.key): i for i, c in enumerate(changes)}
    for i, c in enumerate(changes):
        if c.entity == "order" and c.row and c.row.get("Партнер_Key"):
            assert position[("customer", c.row["Партнер_Key"])] < i
    assert sum(1 for c in changes if c.entity == "customer") == len(
        {c.row["Партнер_Key"] for c in changes if c.entity == "order" and c.row and c.row.get("Партнер_Key")}
    )


def test_first_read_of_10k_orders_yields_each_once_in_bounded_memory(ten_k: External) -> None:
    """Last in the module: by now the external simulator has generated its orders."""
    sim = SimpleNamespace(odata_url=ten_k.wait().odata_url, username="Администратор", password="пароль")
    src, state = source(sim), MemoryState()  # type: ignore[arg-type]
    seen: Counter[str] = Counter()
    partners: set[str] = set()
    customers = 0
    gc.collect()
    tracemalloc.start()
    try:
        for change in src.read(state, NOW):
            if change.entity == "order":
                seen[change.key] += 1
                partners.add(change.row["Партнер_Key"] if change.row else "")
            customers += change.entity == "customer"
            state.apply(change)  # keys and versions only, as the cycle's database would keep
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    reader = client(sim)  # type: ignore[arg-type]
    start, end = START.replace(tzinfo=MSK), NOW + src.future  # what the first read covers
    rows = reader.iter_windows(ORDERS, "Date", start, end, end - start, select=["Ref_Key"], page_size=5000)
    every = {r["Ref_Key"] for r in rows}
    assert len(every) >= 10_000
    assert set(seen) == every and set(seen.values()) == {1}
    assert customers == len(partners - {None, ""})
    # Holding the rows would take what all normalised orders take: measure 500 and scale.
    tracemalloc.start()
    held = list(
        reader.iter_by_keys(ORDERS, sorted(every)[:500], select=list(src.mapping.select_fields("orders")))
    )
    held_500, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del held
    held_all = held_500 * len(every) // 500
    print(f"first read of {len(every)} orders: peak {peak >> 20} MiB, rows held {held_all >> 20} MiB")
    assert peak < held_all / 4, (peak, held_all)
    assert peak < 16 * 2**20
    assert src.cursor_updates()[LAST_RECONCILE] == NOW.isoformat()


class CardState(MemoryState):
    """Tracks the given cards (virtual, waiting for 1C to mark them issued) besides orders."""

    def __init__(self, cards: dict[str, str]) -> None:
        super().__init__()
        self.cards = cards

    def tracked(self, entity: str, now: datetime) -> dict[str, str]:
        return dict(self.cards) if entity == "card" else super().tracked(entity, now)

    def apply(self, change: Change) -> None:
        if change.entity == "card":
            self.cards[change.key] = change.version
            return
        super().apply(change)


def test_tracked_cards_are_rechecked_a_bounded_slice_per_cycle_in_rotation(
    small: tuple[Simulator, Generated],
) -> None:
    sim, _made = small
    cards = mapping().entity_sets()["cards"]
    keys = sorted(sim.store.insert(cards, {"Description": f"card {i}"}) for i in range(400))
    state = CardState({k: sim.store.get(cards, k)["DataVersion"] for k in keys})  # type: ignore[index]
    src = source(sim, recheck_requests=2)
    cycle(src, state, NOW)  # the first read: documents, references
    per_request = len(next(iter(src.client.key_chunks(keys, ["Ref_Key", "DataVersion"]))).keys)
    reads = -(-len(keys) // (2 * per_request))  # cycles to go round once
    assert reads > 1
    changed = keys[-1]  # the last key in order: reached only by the last slice
    sim.store.patch(cards, changed, {"Description": "handed out"})
    seen: list[str] = []
    for n in range(reads):
        sim.store.reset_counters()
        found = [c.key for c in cycle(src, state, NOW + timedelta(minutes=n + 1)) if c.entity == "card"]
        card_requests = sum(1 for r in sim.store.log if cards in r.path)
        assert card_requests <= 2 + len(found), card_requests  # the slice, then the changed card read in full
        seen += found
    assert seen == [changed]  # reached within one round, read once
    assert state.cards[changed] == sim.store.get(cards, changed)["DataVersion"]  # type: ignore[index]
    # Round again: nothing changed, nothing read in full; the cursor wraps to the start.
    for n in range(reads):
        found = [c.key for c in cycle(src, state, NOW + timedelta(hours=1, minutes=n)) if c.entity == "card"]
        assert found == []


def test_few_tracked_cards_are_all_rechecked_every_cycle(small: tuple[Simulator, Generated]) -> None:
    sim, _made = small
    cards = mapping().entity_sets()["cards"]
    keys = [sim.store.insert(cards, {"Description": f"card {i}"}) for i in range(5)]
    state = CardState({k: sim.store.get(cards, k)["DataVersion"] for k in keys})  # type: ignore[index]
    src = source(sim)
    cycle(src, state, NOW)
    sim.store.patch(cards, keys[3], {"Description": "handed out"})
    found = [c.key for c in cycle(src, state, NOW + timedelta(minutes=1)) if c.entity == "card"]
    assert found == [keys[3]]
    assert "card_recheck_after" not in state.cursors  # all of them fit: no rotation
