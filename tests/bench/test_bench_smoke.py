"""The benchmark still runs: ``tests/bench/bench.py --quick`` at tiny sizes prints every figure.

No timing is asserted (CI machines vary); the figures themselves are docs/readme/performance.md's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).with_name("bench.py")
TINY = [
    "--orders=60",
    "--customers=15",
    "--idle-recent=40",
    "--idle-old=80",
    "--mem-small=30",
    "--mem-large=90",
    "--entries=2000",
]


def run_bench(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_bench_quick_prints_every_figure() -> None:
    out = run_bench("--quick", "--only=a,b,c,d,e,split", *TINY)
    for figure in (
        "rules + ledger, sqlite: orders/s",
        "each run, orders/s",
        "1C requests per order",
        "I/O floor",
        "bridge over the I/O floor",
        "cycle: processing / delivery, seconds",
        "CPU seconds of the bridge's process",
        "bridge's CPU over 1.25× the floor's seconds",
        "split: delivery in a 2nd process",
        "sent while the other process still processed",
        "idle cycle: 1C requests",
        "idle cycle: seconds",
        "peak memory large / small backlog",
        "balance read (sqlite",
        "| part | figure | value | target |",
    ):
        assert figure in out, f"{figure!r} missing from:\n{out}"


def test_bench_concurrent_write_backs_have_a_floor_with_the_same_concurrency() -> None:
    """(b) with ``--write-workers``: the floor replays the write-backs from as many threads."""
    out = run_bench("--only=b", "--orders=60", "--customers=15", "--write-workers=3", "--latency-ms=2")
    for figure in (
        "onec.write_workers 3, 1C answering in +2 ms",
        "as many threads as the bridge's write-backs used: seconds",
        "I/O floor sent from one thread: seconds",
        "bridge over the I/O floor",
    ):
        assert figure in out, f"{figure!r} missing from:\n{out}"


def test_the_floor_keeps_each_threads_order_and_the_first_threads_stretches() -> None:
    sys.path.insert(0, str(BENCH.parent))
    try:
        from bench import split_by_thread  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(BENCH.parent))

    def call(name: str) -> tuple[str, str, None, dict[str, str]]:
        return ("GET", name, None, {})

    names = ["p1", "p2", "a1", "b1", "a2", "b2", "c1", "p3", "d1", "d2"]
    threads = [0, 0, 1, 2, 1, 2, 3, 0, 4, 4]
    parts = [
        [[c[1] for c in part] for part in stretch]
        for stretch in split_by_thread([call(n) for n in names], threads)
    ]
    assert parts == [[["p1", "p2"]], [["a1", "a2"], ["b1", "b2"], ["c1"]], [["p3"]], [["d1", "d2"]]]
