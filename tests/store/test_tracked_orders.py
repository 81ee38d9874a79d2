"""The orders the idle cycle re-checks: exactly those open, closed or changed within the tracking
period, found through the indexes of migrations 0005 and 0007 rather than by reading every order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, inspect, select, text

from bridge.store import schema as t
from bridge.store import tracking

NOW = datetime(2026, 3, 1, 9, tzinfo=UTC)
DAYS = 30


def _orders(n: int, seed: int) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        doc = NOW - timedelta(days=rnd.uniform(0, 90))
        status = rnd.choice(["open", "closed", "closed", "closed", "cancelled"])
        close = None if status == "open" and rnd.random() < 0.8 else doc + timedelta(days=rnd.uniform(-5, 40))
        updated = doc + timedelta(days=rnd.uniform(0, 45))
        if rnd.random() < 0.1:  # exactly on the boundary
            close = NOW - timedelta(days=DAYS)
        if close is not None:
            updated = max(updated, close)  # as the ledger writes it (``schema.orders.updated_at``)
        rows.append(
            {
                "id": f"{i:08d}-0000-0000-0000-000000000000",
                "customer_id": f"c{i % 7}",
                "doc_date": doc,
                "first_seen_at": doc,
                "close_time": close,
                "version": f"v{i}",
                "status": status,
                "snapshot": {},
                "updated_at": updated,
            }
        )
    return rows


def test_tracked_orders_are_those_open_closed_or_changed_within_the_period(db_engine: Engine) -> None:
    rows = _orders(400, seed=5)
    with db_engine.begin() as conn:
        conn.execute(t.orders.insert(), rows)
    since = NOW - timedelta(days=DAYS)
    wanted = [
        r
        for r in rows
        if r["status"] == "open"
        or (r["close_time"] is not None and r["close_time"] >= since)  # type: ignore[operator]
        or r["updated_at"] >= since  # type: ignore[operator]
    ]
    assert 0 < len(wanted) < len(rows)
    with db_engine.connect() as conn:
        tracked = tracking.tracked_orders(conn, NOW, DAYS)
        assert tracked == {r["id"]: r["version"] for r in wanted}
        # Re-read in document date order, whatever order the rows were written or last changed in.
        by_date = sorted(wanted, key=lambda r: (r["doc_date"], r["id"]))  # type: ignore[return-value]
        assert list(tracked) == [r["id"] for r in by_date]
        assert tracking.tracked_since(conn, NOW, DAYS) == min(r["doc_date"] for r in wanted)  # type: ignore[type-var]
        assert tracking.tracked_orders(conn, NOW - timedelta(days=400), DAYS) == {
            r["id"]: r["version"] for r in rows
        }
    with db_engine.begin() as conn:
        conn.execute(t.orders.delete())
    with db_engine.connect() as conn:
        assert tracking.tracked_orders(conn, NOW, DAYS) == {}
        assert tracking.tracked_since(conn, NOW, DAYS) is None


def test_tracked_orders_seek_indexes_even_after_analyze(sqlite_url: str) -> None:
    from bridge.store.db import make_engine, upgrade

    engine = make_engine(sqlite_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(t.orders.insert(), _orders(2000, seed=9))
        conn.execute(text("ANALYZE"))  # status has two or three values: a plain OR became a scan
    with engine.connect() as conn:
        compiled = tracking._TRACKED_ORDERS.compile(conn)
        plan = conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", tuple(NOW.isoformat() for _ in compiled.positiontup or ())
        ).fetchall()
    details = [row[-1] for row in plan]
    # The one scan is of the open orders' partial index (only open orders are in it), index-only.
    assert [d for d in details if d.startswith("SCAN")] == ["SCAN orders USING COVERING INDEX ix_orders_open"]
    assert sum("COVERING INDEX ix_orders_" in d for d in details) == 2, details
    with engine.connect() as conn:
        compiled = t.OPEN_ORDERS_OF.compile(conn)
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", ("c3",)).fetchall()
    details = [row[-1] for row in plan]
    assert details == ["SEARCH orders USING COVERING INDEX ix_orders_open (customer_id=?)"], details
    engine.dispose()


def test_an_order_closing_ahead_of_its_write_stays_tracked_from_its_close(db_engine: Engine) -> None:
    """A document dated ahead and imported as history closes at its date: the row's ``updated_at``
    is that close time, not the write's, so it is tracked for the period after it closes."""
    from bridge.service.engine import Engine as LoyaltyEngine
    from bridge.store.ledger import LedgerStore
    from tests.domain.factories import MSK, line, order, rules

    eng = LoyaltyEngine(LedgerStore(db_engine), rules(discount=False), MSK)
    ahead = NOW + timedelta(days=10)
    eng.apply_order(order("ahead", "c1", [line(5000)], date=ahead), NOW, history=True)
    eng.apply_order(order("past", "c1", [line(5000)], date=NOW - timedelta(days=40)), NOW, history=True)
    with db_engine.connect() as conn:
        stored = dict(conn.execute(select(t.orders.c.id, t.orders.c.updated_at)).all())
        assert stored == {"ahead": ahead, "past": NOW}
        later = ahead + timedelta(days=DAYS - 1)  # 39 days after the write, 29 after the close
        assert list(tracking.tracked_orders(conn, later, DAYS)) == ["ahead"]
        assert tracking.tracked_orders(conn, ahead + timedelta(days=DAYS + 1), DAYS) == {}


def test_migration_0007_brings_updated_at_up_to_the_close_time(db_url: str) -> None:
    from bridge.store.db import make_engine, upgrade

    engine = make_engine(db_url)
    upgrade(engine, "0006")
    rows = [
        {**r, "updated_at": NOW - timedelta(days=60)}
        for r in _orders(50, seed=3)
        if r["close_time"] is not None
    ]
    with engine.begin() as conn:
        conn.execute(t.orders.insert(), rows)
    upgrade(engine)
    with engine.connect() as conn:
        stored = dict(conn.execute(select(t.orders.c.id, t.orders.c.updated_at)).all())
        # the tracked orders after the migration: those closed (or changed) within the period
        since = NOW - timedelta(days=DAYS)
        wanted = {r["id"] for r in rows if r["status"] == "open" or r["close_time"] >= since}  # type: ignore[operator]
        assert set(tracking.tracked_orders(conn, NOW, DAYS)) == wanted
    assert stored == {r["id"]: max(r["updated_at"], r["close_time"]) for r in rows}  # type: ignore[type-var]
    engine.dispose()


def test_an_open_order_marked_for_deletion_is_tracked_like_a_cancelled_one(db_engine: Engine) -> None:
    """Not open any more: not re-checked every cycle for ever, nor given the level discount
    (``open_order_ids``); re-checked for the period after its last change, like a cancelled one
    (un-marked in 1C later, the nightly sweep finds it)."""
    from bridge.domain.model import OrderStatus
    from bridge.service.engine import Engine as LoyaltyEngine
    from bridge.store.ledger import LedgerStore
    from tests.domain.factories import MSK, line, order, rules

    eng = LoyaltyEngine(LedgerStore(db_engine), rules(), MSK)
    eng.apply_order(order("kept", "c1", [line(5000)], status=OrderStatus.OPEN), NOW)
    eng.apply_order(order("gone", "c1", [line(5000)], status=OrderStatus.OPEN, deleted=True), NOW)
    with db_engine.connect() as conn:
        assert tracking.open_order_ids(conn, "c1") == ["kept"]
        later = NOW + timedelta(days=DAYS + 1)
        assert list(tracking.tracked_orders(conn, later, DAYS)) == ["kept"]
    assert eng.order_view("gone") is not None  # its facts are kept as before


def test_migration_0009_stores_open_orders_marked_for_deletion_as_cancelled(db_url: str) -> None:
    from bridge.store.db import make_engine, upgrade

    engine = make_engine(db_url)
    upgrade(engine, "0008")
    rows = [
        {**r, "status": "open", "close_time": None, "snapshot": {"deleted": i % 2 == 0, "status": "open"}}
        for i, r in enumerate(_orders(6, seed=5))
    ]
    rows[1]["status"] = "closed"
    rows[1]["snapshot"] = {"deleted": True, "status": "closed"}
    with engine.begin() as conn:
        conn.execute(t.orders.insert(), rows)
    upgrade(engine)
    with engine.connect() as conn:
        stored = dict(conn.execute(select(t.orders.c.id, t.orders.c.status)).all())
    columns = {c["name"] for c in inspect(engine).get_columns("customers")}
    assert stored == {
        r["id"]: "cancelled" if i % 2 == 0 else ("closed" if i == 1 else "open") for i, r in enumerate(rows)
    }
    assert "tier_seen_at" in columns
    engine.dispose()
