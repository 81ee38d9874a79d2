"""``make_durable``: one fsync of SQLite's write-ahead log makes every commit so far survive a power
cut; the cycle calls it before it acknowledges a change queue and before anything is delivered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from bridge.store.db import make_durable, make_engine, upgrade


def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files ``os.fsync`` is called on (still syncing them)."""
    seen: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}") if Path("/proc/self/fd").exists() else str(fd))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def test_the_log_of_a_file_database_is_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO counters (name, value) VALUES ('x', 1)"))
    seen = fsynced(monkeypatch)
    make_durable(engine)
    assert len(seen) == 1
    if Path("/proc/self/fd").exists():
        assert seen[0] == str(tmp_path / "state.db-wal")
    engine.dispose()


def test_nothing_to_sync_in_memory_or_without_a_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = fsynced(monkeypatch)
    make_durable(make_engine("sqlite://"))
    make_durable(make_engine(f"sqlite:///{tmp_path / 'never-opened.db'}"))
    assert seen == []
