"""Progress of a long backfill: periodic log lines with counts and rate, a bar only on a terminal."""

from __future__ import annotations

import io

from structlog.testing import capture_logs

from bridge.runtime.logging import get_logger
from bridge.runtime.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_logs_count_rate_and_eta_every_n_seconds_then_the_total() -> None:
    clock, out = Clock(), io.StringIO()
    with capture_logs() as logs:
        progress = Progress(
            total=100, label="backfill", log=get_logger(), every_s=10, clock=clock, stream=out
        )
        for _ in range(40):  # 4 documents a second
            clock.now += 0.25
            progress.advance()
        progress.advance(10)
        progress.close()
        progress.close()
    assert [e["event"] for e in logs] == ["progress", "progress done"]
    first = logs[0]
    assert first == {
        "event": "progress",
        "log_level": "info",
        "label": "backfill",
        "done": 40,
        "elapsed_s": 10.0,
        "rate_per_s": 4.0,
        "total": 100,
        "percent": 40.0,
        "eta_s": 15,
    }
    assert logs[-1]["done"] == 50 and logs[-1]["percent"] == 50.0
    assert out.getvalue() == ""  # not a terminal: no bar


def test_without_a_total_or_a_logger() -> None:
    clock = Clock()
    with capture_logs() as logs:
        with Progress(label="orders", log=get_logger(), every_s=1, clock=clock, stream=io.StringIO()) as p:
            clock.now += 2
            p.advance(6)
        quiet = Progress(clock=clock, stream=io.StringIO())
        quiet.advance()
        quiet.close()
    assert [(e["event"], e["done"], e["rate_per_s"]) for e in logs] == [
        ("progress", 6, 3.0),
        ("progress done", 6, 3.0),
    ]
    assert "total" not in logs[0] and "eta_s" not in logs[0]
    assert quiet.done == 1


def test_a_bar_is_drawn_on_a_terminal() -> None:
    tty = Terminal()
    progress = Progress(total=5, label="backfill", stream=tty)
    progress.advance(5)
    progress.close()
    assert "backfill" in tty.getvalue() and "/5 " in tty.getvalue()
