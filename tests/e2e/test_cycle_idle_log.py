"""A cycle with nothing to do is not logged at info: months of idle polls every minute would bury
the journal (README: use ``log.level: debug`` to see them)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from structlog.testing import capture_logs

from tests.e2e.cycle_kit import MSK, world

JACKET = "Куртка велосипедная Gore Wear C5 Gore-Tex"


def test_an_idle_cycle_logs_cycle_done_at_debug_a_busy_one_at_info(tmp_path: Path) -> None:
    at = datetime(2026, 3, 2, 12, tzinfo=MSK)
    with world(tmp_path, start=at) as w:
        w.once(at)  # the reference catalogs: partners, cards
        anna = w.op.partner("Смирнова Анна Петровна", phone="+79160000001")
        w.op.order(anna, [(JACKET, 1, 14700)], date=at)
        with capture_logs() as busy:
            result = w.once(datetime(2026, 3, 2, 12, 5, tzinfo=MSK))
        assert result.documents_processed
        with capture_logs() as idle:
            result = w.once(datetime(2026, 3, 2, 12, 6, tzinfo=MSK))
        assert not result.documents_processed and not result.writes_to_1c
    assert [e["log_level"] for e in busy if e["event"] == "cycle.done"] == ["info"]
    assert [e["log_level"] for e in idle if e["event"] == "cycle.done"] == ["debug"]
