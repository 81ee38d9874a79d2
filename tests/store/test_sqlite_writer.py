"""SQLite write transactions of one process take turns through a lock (``bridge.store.db``): the
next starts the moment the previous ends, however it ends, instead of polling SQLite's busy
handler — so the cycle's thread and its background delivery both make progress."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from bridge.errors import StateError
from bridge.store import db
from bridge.store.db import make_engine


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    eng = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield eng  # type: ignore[misc]
    eng.dispose()


def _other_thread_begins_within(engine: Engine, seconds: float) -> bool:
    done = threading.Event()

    def write() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        done.set()

    threading.Thread(target=write, daemon=True).start()
    return done.wait(seconds)


def test_free_after_commit_rollback_a_read_and_an_error(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (0)"))
    assert _other_thread_begins_within(engine, 2)
    with engine.connect() as conn:  # a read, closed without commit
        conn.execute(text("SELECT count(*) FROM t")).scalar()
    assert _other_thread_begins_within(engine, 2)
    with pytest.raises(ZeroDivisionError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (5)"))
        1 / 0  # noqa: B018
    assert _other_thread_begins_within(engine, 2)
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO t VALUES (6)"))
        conn.rollback()
        conn.execute(text("INSERT INTO t VALUES (7)"))  # a second transaction on the same connection
        conn.commit()
    assert _other_thread_begins_within(engine, 2)
    with engine.connect() as conn:
        assert sorted(r[0] for r in conn.execute(text("SELECT n FROM t"))) == [0, 1, 1, 1, 1, 7]


def test_free_after_an_invalidated_connection(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO t VALUES (0)"))
        conn.invalidate()
        conn.rollback()
    assert _other_thread_begins_within(engine, 2)


def test_a_waiting_thread_starts_as_soon_as_the_holder_commits(engine: Engine) -> None:
    order: list[str] = []
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (0)"))
        waiter = threading.Thread(
            target=lambda: (_other_thread_begins_within(engine, 5), order.append("other"))
        )
        waiter.start()
        time.sleep(0.3)  # the other thread waits meanwhile (not failing, not busy-erroring)
        order.append("holder")
    waiter.join(5)
    assert order == ["holder", "other"]


def test_a_transaction_held_past_the_timeout_is_a_clear_error(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.2)
    failed: list[BaseException] = []

    def write() -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (1)"))
        except StateError as exc:
            failed.append(exc)

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (0)"))
        other = threading.Thread(target=write)
        other.start()
        other.join(5)
    assert failed and "held it for 0.2 s" in str(failed[0])
    assert _other_thread_begins_within(engine, 2)
