"""Progress of long runs (a first backfill of months of history): log lines, and a bar on a terminal.

Owns ``Progress``: ``advance(n)`` after each document; every ``every_s`` seconds one ``progress``
log line with the count, the total (when known), the rate in documents per second and an ETA; a tqdm
bar on stderr only when stderr is a terminal (under systemd it is not, and journald gets the log
lines alone). ``close()`` logs the final count. Cheap enough to call per document.

Must not import anything of the bridge.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    """Counts work done and reports it.

    Args:
        total: how many items are expected, if known.
        label: what is counted, shown in the log and on the bar (e.g. ``"backfill"``).
        log: a structlog logger; without one nothing is logged.
        every_s: seconds between log lines.
        clock: monotonic seconds (tests pass a fake).
        stream: where the bar goes (default ``sys.stderr``); the bar is shown only if it is a TTY.
        unit: the name of one item on the bar and in the log (``doc``).
        report_done: log the final count even when the run was too short for a progress line
            (the daemon's ordinary cycles pass False: only long ones are worth a line).
    """

    def __init__(
        self,
        total: int | None = None,
        label: str = "documents",
        log: Any = None,
        every_s: float = 10,
        *,
        clock: Callable[[], float] = time.monotonic,
        stream: TextIO | None = None,
        unit: str = "doc",
        report_done: bool = True,
    ) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self._log = log
        self._every = every_s
        self._clock = clock
        self._start = self._last = clock()
        self._closed = False
        self._report_done = report_done
        out = stream if stream is not None else sys.stderr
        tty = bool(getattr(out, "isatty", lambda: False)())
        self._bar = tqdm(
            total=total, desc=label, unit=unit, file=out, disable=not tty, dynamic_ncols=True, leave=False
        )

    @property
    def rate(self) -> float:
        """Items per second since the start (0 before any time has passed)."""
        elapsed = self._clock() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done; log if ``every_s`` has passed since the last line."""
        self.done += n
        self._bar.update(n)
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._report("progress")

    def close(self) -> None:
        """Log the final count and remove the bar (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        if self._report_done or self._last != self._start:  # a long run says how it ended
            self._report("progress done")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _report(self, event: str) -> None:
        if self._log is None:
            return
        elapsed = self._clock() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        fields: dict[str, Any] = {
            "label": self.label,
            "done": self.done,
            "elapsed_s": round(elapsed, 1),
            "rate_per_s": round(rate, 2),
        }
        if self.total is not None:
            fields["total"] = self.total
            fields["percent"] = round(100 * self.done / self.total, 1) if self.total else 100.0
            if rate > 0 and self.done < self.total:
                fields["eta_s"] = round((self.total - self.done) / rate)
        self._log.info(event, **fields)
