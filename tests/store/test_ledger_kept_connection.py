"""SQLite: ``LedgerStore.transaction`` keeps each thread's connection between units of work.

The units are the same transactions as before (committed or rolled back as a whole, visible to
other connections once committed); only the pool checkout between them is gone.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text

from bridge.store.db import make_engine, upgrade
from bridge.store.ledger import LedgerStore

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)


def _customers(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT id FROM customers ORDER BY id"))]


def test_units_share_one_connection_and_commit_each(engine: Engine) -> None:
    store = LedgerStore(engine)
    drivers = []
    for name in ("anna", "boris"):
        with store.transaction() as conn:
            drivers.append(conn.connection.driver_connection)
            store.lock_customer(conn, name, NOW)
        assert not conn.in_transaction()
        assert name in _customers(engine)  # committed: seen from another connection
    assert drivers[0] is drivers[1]


def test_a_failed_unit_is_rolled_back_and_the_next_one_works(engine: Engine) -> None:
    store = LedgerStore(engine)
    with pytest.raises(RuntimeError), store.transaction() as conn:
        store.lock_customer(conn, "anna", NOW)
        raise RuntimeError("the rules failed")
    assert _customers(engine) == []
    with store.transaction() as conn:
        store.lock_customer(conn, "boris", NOW)
    assert _customers(engine) == ["boris"]


def test_an_invalidated_or_closed_connection_is_replaced(engine: Engine) -> None:
    store = LedgerStore(engine)
    with store.transaction() as conn:
        first = conn
    first.invalidate()
    with store.transaction() as conn:
        store.lock_customer(conn, "anna", NOW)
        assert conn is not first
    conn.close()
    with store.transaction() as again:
        store.lock_customer(again, "boris", NOW)
        assert again is not conn
    assert _customers(engine) == ["anna", "boris"]


def test_each_thread_has_its_own_connection(engine: Engine) -> None:
    store = LedgerStore(engine)
    seen: dict[str, object] = {}
    both_alive = threading.Barrier(2)  # a finished thread's connection goes back to the pool

    def unit(name: str) -> None:
        for _ in range(2):
            both_alive.wait(timeout=10)
            with store.transaction() as conn:
                store.lock_customer(conn, name, NOW)
                seen.setdefault(name, conn.connection.driver_connection)
                assert seen[name] is conn.connection.driver_connection

    threads = [threading.Thread(target=unit, args=(name,)) for name in ("anna", "boris")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["anna"] is not seen["boris"]
    assert _customers(engine) == ["anna", "boris"]


def test_postgresql_checks_a_connection_out_per_unit(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        upgrade(engine)
        store = LedgerStore(engine)
        with store.transaction() as first:
            store.lock_customer(first, "anna", NOW)
        assert first.closed  # back to the pool: the next unit's checkout pings the server
        with store.transaction() as second:
            store.lock_customer(second, "boris", NOW)
        assert second is not first
    finally:
        engine.dispose()
