"""Leader election: which of several bridge processes on one state database does the work.

Only the holder of the **leader lock** reads 1C, applies, writes back and delivers; any other
instance is a standby that tries for the lock once a tick and takes over when the holder is gone.

- PostgreSQL: a session-level advisory lock, ``pg_try_advisory_lock(key)``, held on a dedicated
  connection (autocommit, never returned to a pool) for the life of the process. ``key`` is derived
  from the database and schema, so installations sharing a server do not elect each other. The
  server releases the lock when that session ends: the process exits or is killed, the connection
  drops, or TCP keepalive (set on both ends, see ``KEEPALIVE``) finds a peer host gone. The
  holder's ``application_name`` (``loyalty-bridge pid=… host=…``) tells a standby who leads.
- SQLite: an exclusive ``fcntl.flock`` on ``<database>.lock`` next to the database file, holding
  the holder's pid and host; the kernel releases it when the process dies. One host only, as is
  SQLite itself. An in-memory database has nothing to share: ``NoLock``, always the leader.

``holds()`` re-checks leadership (a round trip on the dedicated connection asking the server
whether *this* session still holds the key; the lock file still being the one locked), so a
leader whose session was ended stops working instead of running alongside its successor.

The lock only keeps traffic to 1C and the site single. Correctness never depends on it: every
unit of work holds its customer's lock and ``processed (doc_id, version)`` makes a second
application of a document version a no-op (``bridge.store.ledger``).

Must not import bridge.onec, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from bridge.errors import TransientError
from bridge.store import access

__all__ = ["KEEPALIVE", "FileLock", "LeaderLock", "NoLock", "PgLock", "acquire", "leader_lock", "lock_key"]

# libpq (client side: the leader notices a dead server or a partition) and the server side (the
# server notices a dead leader host and ends its session, freeing the lock): first probe after 10 s
# idle, then every 5 s, 3 misses -> gone after ~25 s; unacknowledged data -> gone after 30 s.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
_SERVER_SETTINGS = (
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 30000",
    # An idle session killed by the server would silently hand the lock to a standby.
    "SET idle_in_transaction_session_timeout = 0",
)


def whoami() -> str:
    """``pid=… host=…`` of this process: what a standby or a refused ``once`` reports."""
    return f"pid={os.getpid()} host={socket.gethostname()}"


def lock_key(database: str, schema: str) -> int:
    """The advisory-lock key of one installation: a signed 64-bit hash of database and schema."""
    digest = hashlib.blake2b(f"loyalty-bridge:{database}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LeaderLock(Protocol):
    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this process holds it now."""
        ...

    def holds(self) -> bool:
        """Whether this process still holds the lock (checked against the server / the file)."""
        ...

    def holder(self) -> str | None:
        """Who holds the lock (``pid=… host=…``), if anyone and if it can be told."""
        ...

    def release(self) -> None:
        """Give the lock up (and close what holds it). Safe to call twice."""
        ...


class NoLock:
    """An in-memory database: nobody else can share it, so this process always leads."""

    def try_acquire(self) -> bool:
        return True

    def holds(self) -> bool:
        return True

    def holder(self) -> str | None:
        return whoami()

    def release(self) -> None:
        return None


class FileLock:
    """``flock(LOCK_EX)`` on ``path``; the file holds the holder's ``pid=… host=…``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return self.holds()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        except PermissionError as exc:  # state made by another user (root): say which chown fixes it
            error = access.from_os_error(exc, f"sqlite:///{self.path.with_suffix('')}")
            if error is None:
                raise
            raise error from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, (whoami() + "\n").encode(), 0)
        self._fd = fd
        return True

    def holds(self) -> bool:
        if self._fd is None:
            return False
        try:
            # Someone removing the file would let a second process lock a new one: then we lost.
            same = os.fstat(self._fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            self.release()
        return same

    def holder(self) -> str | None:
        if self._fd is not None:
            return whoami()
        try:
            text_ = self.path.read_text("utf-8").strip()
        except OSError:
            return None
        return text_ or None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock


class PgLock:
    """A session-level advisory lock held on a dedicated autocommit connection."""

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        self.url = url
        self.key: int | None = None
        self._engine = create_engine(
            url,
            poolclass=NullPool,  # one connection, never silently replaced by a pool
            isolation_level="AUTOCOMMIT",  # never idle in a transaction
            connect_args={
                **KEEPALIVE,
                "connect_timeout": connect_timeout,
                "application_name": f"loyalty-bridge {whoami()}"[:63],
            },
        )
        self._conn: Connection | None = None
        self._held = False

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._drop()
            conn = self._engine.connect()
            try:
                for statement in _SERVER_SETTINGS:
                    conn.execute(text(statement))
                database, schema = conn.execute(text("select current_database(), current_schema()")).one()
            except BaseException:
                conn.close()
                raise
            self.key = lock_key(str(database), str(schema or "public"))
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            try:
                conn.close()
            except SQLAlchemyError:
                pass

    def try_acquire(self) -> bool:
        """Take the lock if free. Raises ``TransientError`` when the server cannot be reached."""
        if self._held:
            return self.holds()
        try:
            conn = self._connection()
            got = bool(conn.execute(text("select pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        except SQLAlchemyError as exc:
            self._drop()
            raise TransientError(f"state database unreachable for the leader lock: {exc}") from exc
        self._held = got
        return got

    def holds(self) -> bool:
        if not self._held or self._conn is None:
            return False
        try:
            mine = self._conn.execute(
                text(
                    "select exists(select 1 from pg_locks where locktype = 'advisory' "
                    "and pid = pg_backend_pid() and classid = :hi and objid = :lo and objsubid = 1 "
                    "and granted)"
                ),
                self._parts(),
            ).scalar()
        except SQLAlchemyError:
            mine = False
        if not mine:
            self._drop()  # a new session would not hold it; start over with try_acquire
        return bool(mine)

    def _parts(self) -> dict[str, int]:
        assert self.key is not None
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        return {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}

    def holder(self) -> str | None:
        if self._held:
            return whoami()
        try:
            conn = self._connection()
            row = conn.execute(
                text(
                    "select l.pid, a.application_name from pg_locks l "
                    "left join pg_stat_activity a on a.pid = l.pid "
                    "where l.locktype = 'advisory' and l.classid = :hi and l.objid = :lo "
                    "and l.objsubid = 1 and l.granted "
                    "and l.database = (select oid from pg_database where datname = current_database())"
                ),
                self._parts(),
            ).first()
        except SQLAlchemyError:
            self._drop()
            return None
        if row is None:
            return None
        name = str(row.application_name or "")
        return name.removeprefix("loyalty-bridge ") or f"server backend {row.pid}"

    def release(self) -> None:
        if self._held and self._conn is not None:
            try:
                self._conn.execute(text("select pg_advisory_unlock(:k)"), {"k": self.key})
            except SQLAlchemyError:
                pass  # closing the session below frees it anyway
        self._drop()
        self._engine.dispose()


def leader_lock(url: str) -> LeaderLock:
    """The leader lock for the state database at ``url`` (``state.url``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return PgLock(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        path = Path(database).expanduser().resolve()
        return FileLock(path.with_name(path.name + ".lock"))
    return NoLock()


def acquire(lock: LeaderLock, wait_s: float, *, poll_s: float = 0.5, sleep: Any = time.sleep) -> bool:
    """Try for ``lock`` until it is taken or ``wait_s`` passed (``once``, ``backfill``)."""
    deadline = time.monotonic() + max(wait_s, 0.0)
    while True:
        if lock.try_acquire():
            return True
        if time.monotonic() >= deadline:
            return False
        sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))
