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


def test_bench_quick_prints_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--only=a,b,c,d,e,split", *TINY],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
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
