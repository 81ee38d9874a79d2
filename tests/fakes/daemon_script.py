"""A real ``loyalty-bridge run`` stand-in for subprocess tests: ``serve()`` with a fake cycle.

The cycle does ``--units`` units of work of ``--unit-s`` seconds each, calling ``token.check()``
before each (as the real cycle must), and prints to stdout, flushed, one line per event:
``unit C.I start``, ``unit C.I stop-seen`` (the first time it notices a stop request mid-unit; it
still finishes the unit), ``unit C.I done``, ``cycle C done``; finally ``exit RC``. Logs (JSON) go to
stderr. Run with the repository root on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from bridge.runtime.daemon import serve
from bridge.runtime.logging import configure_logging, get_logger
from bridge.runtime.metrics import CycleStats
from bridge.runtime.signals import StopToken


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=3)
    parser.add_argument("--unit-s", type=float, default=0.5)
    parser.add_argument("--interval", type=float, default=60)
    parser.add_argument("--fail-cycles", type=int, default=0, help="the first N cycles raise")
    args = parser.parse_args()
    configure_logging("debug", "json", secrets=["fake-secret-value"])
    cycles = 0

    def say(text: str) -> None:
        print(text, flush=True)

    def cycle(token: StopToken) -> CycleStats:
        nonlocal cycles
        cycles += 1
        started = datetime.now(UTC)
        if cycles <= args.fail_cycles:
            raise ConnectionError(f"1C unreachable (fake), password fake-secret-value, cycle {cycles}")
        done = 0
        for i in range(1, args.units + 1):
            token.check()
            say(f"unit {cycles}.{i} start")
            seen = False
            end = time.monotonic() + args.unit_s
            while time.monotonic() < end:  # the "work": not interruptible by the stop request
                time.sleep(min(0.02, max(end - time.monotonic(), 0)))
                if token.requested and not seen:
                    seen = True
                    say(f"unit {cycles}.{i} stop-seen")
                token.heartbeat()
            done += 1
            say(f"unit {cycles}.{i} done")
        say(f"cycle {cycles} done")
        return CycleStats(
            started_at=started,
            finished_at=datetime.now(UTC),
            documents_processed=done,
            outbox_depth={"webhook": 0},
        )

    rc = serve(cycle, interval_s=args.interval, log=get_logger(component="fake-daemon"))
    say(f"exit {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
