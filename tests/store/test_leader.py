"""The leader lock: one holder at a time, freed when the holder's session or process dies.

PostgreSQL: two sessions, one gets the advisory lock; ending the holder's session from the server
(``pg_terminate_backend``, what a dead host looks like once keepalive gives up) frees it, and the
deposed holder notices. SQLite: ``flock`` across real processes; ``kill -9`` frees it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bridge.errors import TransientError
from bridge.store.leader import FileLock, NoLock, PgLock, acquire, leader_lock, lock_key, whoami


def test_lock_kind_follows_the_state_url(tmp_path: Path) -> None:
    assert isinstance(leader_lock(f"sqlite:///{tmp_path}/state.db"), FileLock)
    assert leader_lock(f"sqlite:///{tmp_path}/state.db").path == tmp_path / "state.db.lock"  # type: ignore[attr-defined]
    assert isinstance(leader_lock("sqlite://"), NoLock)
    assert isinstance(leader_lock("postgresql+psycopg://u@h/db"), PgLock)


def test_lock_key_is_per_database_and_schema() -> None:
    assert lock_key("test", "public") == lock_key("test", "public")
    assert lock_key("test", "public") != lock_key("test", "other")
    assert lock_key("test", "public") != lock_key("prod", "public")
    assert -(2**63) <= lock_key("x", "y") < 2**63


# --- PostgreSQL -------------------------------------------------------------------------------------


def test_pg_one_holder_and_the_other_sees_who(pg_url: str) -> None:
    a, b = PgLock(pg_url), PgLock(pg_url)
    try:
        assert a.try_acquire() and a.holds()
        assert not b.try_acquire() and not b.holds()
        assert b.holder() == whoami()  # same process here: pid and host of the holder
        assert a.try_acquire()  # re-asking keeps it (not a second, re-entrant hold)
        a.release()
        assert not a.holds()
        assert b.try_acquire() and b.holds()
        assert not a.try_acquire()
    finally:
        a.release()
        b.release()


def test_pg_other_schemas_do_not_elect_each_other(pg_url: str) -> None:
    own, public = PgLock(pg_url), PgLock(pg_url.rsplit("?", 1)[0])  # no search_path: schema public
    try:
        assert own.try_acquire()
        assert public.try_acquire()  # another installation on the same server and database
        assert own.key != public.key
    finally:
        own.release()
        public.release()


def test_pg_a_terminated_session_frees_the_lock_and_the_holder_notices(pg_url: str) -> None:
    a, b = PgLock(pg_url), PgLock(pg_url)
    admin = create_engine(pg_url)
    try:
        assert a.try_acquire()
        assert not b.try_acquire()
        with admin.connect() as conn:
            killed = conn.execute(
                text(
                    "select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory' "
                    "and classid = :hi and objid = :lo and objsubid = 1 and granted"
                ),
                a._parts(),
            ).all()
        assert killed == [(True,)]
        deadline = time.monotonic() + 5
        while not b.try_acquire():  # the backend exits a moment after being told to
            assert time.monotonic() < deadline, "the lock was not freed"
            time.sleep(0.05)
        assert not a.holds()  # the deposed leader finds out on its next check
        assert not a.try_acquire()  # and its new session does not get it back
        assert b.holds()
    finally:
        a.release()
        b.release()
        admin.dispose()


def test_pg_a_killed_holder_process_frees_the_lock(pg_url: str, tmp_path: Path) -> None:
    holder = _holder_process(pg_url, tmp_path)
    b = PgLock(pg_url)
    try:
        assert not b.try_acquire()
        assert b.holder() == f"pid={holder.pid} host={socket.gethostname()}"
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 10
        while not b.try_acquire():
            assert time.monotonic() < deadline, "the lock was not freed after kill -9"
            time.sleep(0.05)
    finally:
        b.release()
        holder.kill()


def test_pg_unreachable_server_is_transient() -> None:
    lock = PgLock("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_timeout=2)
    with pytest.raises(TransientError, match="leader lock"):
        lock.try_acquire()
    assert not lock.holds()
    lock.release()


def test_acquire_waits_then_gives_up(pg_url: str) -> None:
    a, b = PgLock(pg_url), PgLock(pg_url)
    try:
        assert a.try_acquire()
        started = time.monotonic()
        assert not acquire(b, 0.3, poll_s=0.05)
        assert 0.3 <= time.monotonic() - started < 3
        a.release()
        assert acquire(b, 1, poll_s=0.05)
    finally:
        a.release()
        b.release()


# --- SQLite: flock across processes ------------------------------------------------------------------


def test_file_lock_across_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    holder = _holder_process(url, tmp_path)
    lock = leader_lock(url)
    try:
        assert not lock.try_acquire()
        assert lock.holder() == f"pid={holder.pid} host={socket.gethostname()}"
        second = _try_in_process(url)
        assert second == "refused"
        holder.send_signal(signal.SIGKILL)  # the kernel drops a dead process's flock
        holder.wait(10)
        assert lock.try_acquire() and lock.holds()
        assert _try_in_process(url) == "refused"
        assert lock.holder() == whoami()
    finally:
        lock.release()
        holder.kill()
    assert _try_in_process(url) == "acquired"  # released on release()


def test_file_lock_replaced_file_means_lost(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "state.db.lock")
    assert lock.try_acquire()
    os.unlink(lock.path)  # someone cleaned up the "stale" file: another process could lock a new one
    assert not lock.holds()
    assert lock.try_acquire()  # a fresh file, locked again
    lock.release()


# --- helpers -------------------------------------------------------------------------------------------


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from bridge.store.leader import leader_lock
    lock = leader_lock(sys.argv[1])
    print("acquired" if lock.try_acquire() else "refused", flush=True)
    if sys.argv[2] == "hold":
        time.sleep(600)
    lock.release()
    """
)


def _holder_process(url: str, tmp_path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, "hold"], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "acquired":
        proc.kill()
        pytest.fail(f"the holder process did not get the lock: {line!r}")
    return proc


def _try_in_process(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _HOLDER, url, "once"], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()
