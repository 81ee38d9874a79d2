"""Opening the state database and migrating it (``loyalty-bridge db upgrade``).

SQLite (the default) runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE`` so two writers queue for the write lock instead of deadlocking half-way;
PostgreSQL serialises per customer with row locks (see ``bridge.store.ledger``).
Must not import bridge.onec, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from bridge.errors import StateError, StateNotMigrated
from bridge.store import access

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create the engine for ``state.url``; SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StateError(f"state.url: not a database URL ({exc}); e.g. sqlite:///state.db") from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = Path(database).expanduser().resolve().parent
            if not folder.is_dir():
                raise StateError(
                    f"state.url: folder {folder} does not exist; create it (systemd: StateDirectory=)",
                    url=url,
                )
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        _sqlite_setup(engine)
        _sqlite_access(engine, url)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, echo=echo, pool_pre_ping=True)
    raise StateError(
        f"state.url: unsupported database {parsed.get_backend_name()!r}; use sqlite or postgresql"
    )


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA wal_autocheckpoint=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # On the driver directly: the same statement without SQLAlchemy's execution machinery
        # (~0.1 ms on every transaction of the ledger's hot path).
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE")


def _sqlite_access(engine: Engine, url: str) -> None:
    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        # "attempt to write a readonly database" says nothing of why: files owned by another user
        # (a `db upgrade` run as root) get one line naming them and the chown that fixes it.
        if access.is_readonly(context.original_exception):
            paths = access.unwritable(url)
            if paths:
                raise access.access_error(paths, url) from context.original_exception


def make_durable(engine: Engine) -> None:
    """Make every transaction committed so far survive a power cut, before its effects leave.

    SQLite in WAL mode with ``synchronous=NORMAL`` writes each commit to the log without syncing
    it (a killed process loses nothing; a power cut could lose the last commits): one ``fsync``
    of the log here makes all of them durable. The cycle calls it before it acknowledges a change
    queue to 1C and before it delivers the outbox, so nothing that 1C forgets or the site receives
    can be missing from the ledger after a power cut. PostgreSQL: every commit is already durable.
    """
    if engine.dialect.name != "sqlite":
        return
    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    wal = Path(database).expanduser().with_name(Path(database).name + "-wal")
    try:
        fd = os.open(wal, os.O_RDONLY)
    except FileNotFoundError:
        return  # nothing in the log: every commit is in the database file, synced by its checkpoint
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Create or migrate the schema; returns the revision now in force."""
    cfg = _alembic_config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except OperationalError as exc:
        raise StateError(f"state database unusable: {exc.orig}", url=str(engine.url)) from exc
    return current_revision(engine) or ""


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise StateError(f"state database unreachable: {exc}", url=str(engine.url)) from exc


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def require_current(engine: Engine) -> None:
    """Refuse to work on a database that was not created or migrated by ``db upgrade``."""
    current = current_revision(engine)
    if current != head_revision():
        raise StateNotMigrated(
            f"state database is at revision {current or 'none'}, the bridge needs {head_revision()}: "
            f"run `loyalty-bridge db upgrade`",
            url=engine.url.render_as_string(hide_password=True),
        )
