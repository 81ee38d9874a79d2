"""`poll.start` is the go-live moment: on a state database with no cursor yet, one far in the past
would turn months of old orders into new purchases (close time = now, SMS to customers). `check`,
`once` and `run` say so, naming `poll.start` and `backfill --from`; once a cursor exists, silence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bridge.service.check import format_report, run_check
from bridge.service.golive import poll_start_problem, poll_start_warning
from bridge.simulator import Simulator
from bridge.store import tracking
from bridge.store.db import make_engine
from tests.e2e.cycle_kit import MSK
from tests.e2e.test_check_simulator import config, start
from tests.e2e.test_cli_cycle import Install, cli, install  # noqa: F401 - the fixture

NOW = datetime(2026, 11, 23, 9, tzinfo=MSK)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = start()
    yield simulator
    simulator.stop()


def test_a_start_months_back_on_a_fresh_state_is_named_with_what_to_do(
    sim: Simulator, tmp_path: Path
) -> None:
    cfg = config(sim, tmp_path)  # poll.start: 2026-01-01
    warning = poll_start_warning(cfg, NOW)
    assert warning is not None
    assert warning.startswith("poll.start (2026-01-01T00:00:00+03:00) is 326 days in the past")
    assert "`loyalty-bridge backfill --from DATE`" in warning and "go-live moment" in warning


def test_silence_when_the_start_is_recent_a_cursor_exists_or_the_source_does_not_use_it(
    sim: Simulator, tmp_path: Path
) -> None:
    cfg = config(sim, tmp_path)
    assert poll_start_problem(cfg, cfg.poll_start + timedelta(hours=23)) is None  # within a day
    engine = make_engine(cfg.state.url)
    with engine.begin() as conn:
        tracking.set_cursor(conn, "orders_watermark", NOW.isoformat(), NOW)
    engine.dispose()
    assert poll_start_problem(cfg, NOW) is None


def test_a_missing_database_is_not_created_by_the_question(sim: Simulator, tmp_path: Path) -> None:
    cfg = config(sim, tmp_path, migrated=False)
    assert poll_start_problem(cfg, NOW) is None
    assert not (tmp_path / "state.db").exists()


def test_check_warns_but_passes(sim: Simulator, tmp_path: Path) -> None:
    report = run_check(config(sim, tmp_path))  # today is long after 2026-01-01
    assert report.exit_code == 0
    [item] = [i for i in report.items if i.kind == "warning" and i.area == "Change source"]
    assert item.area == "Change source" and item.text.startswith("poll.start (2026-01-01")
    assert "backfill --from" in item.fix
    text = format_report(report)
    assert "  ! poll.start (2026-01-01" in text and "warning(s) marked !" in text


def test_once_says_it_on_stderr_and_in_the_log_then_never_again(install: Install) -> None:  # noqa: F811
    cfg = str(install.config)  # poll.start: 2025-01-01
    assert cli("db", "upgrade", "--config", cfg)[0] == 0
    code, _, err = cli("once", "--config", cfg, "--now", "2026-03-20T12:00:00")
    assert code in (0, 1), err
    lines = err.splitlines()
    assert (
        "loyalty-bridge: warning: poll.start (2025-01-01T00:00:00+03:00) is 443 days in the past" in lines[0]
    )
    assert "backfill --from DATE" in lines[0]
    assert any('"event": "poll.start is not the go-live moment"' in line for line in lines[1:])
    code, _, err = cli("once", "--config", cfg, "--now", "2026-03-20T12:01:00")
    assert "poll.start" not in err
