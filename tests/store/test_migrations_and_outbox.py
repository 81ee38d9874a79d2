"""Migrations match the schema; the outbox keeps order, dedup and supersedes (SQLite + PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from bridge.store import outbox
from bridge.store.db import current_revision, head_revision
from bridge.store.ledger import LedgerStore
from bridge.store.schema import metadata
from tests.domain.factories import at


def test_migrations_build_exactly_the_schema(db_engine: Engine) -> None:
    assert current_revision(db_engine) == head_revision()
    with db_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migration_0008_keeps_every_processed_row_in_a_table_without_rowid(sqlite_url: str) -> None:
    from sqlalchemy import select

    from bridge.store import schema as t
    from bridge.store.db import make_engine, upgrade

    engine = make_engine(sqlite_url)
    upgrade(engine, "0007")
    rows = [
        {
            "doc_id": f"d{i % 40}",
            "version": f"v{i}",
            "customer_id": f"c{i % 7}" if i % 5 else None,
            "processed_at": at(2026, 3, 1) + timedelta(minutes=i),
        }
        for i in range(200)
    ]
    with engine.begin() as conn:
        conn.execute(t.processed.insert(), rows)
    upgrade(engine)
    with engine.connect() as conn:
        ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'processed'").scalar()
        kept = conn.execute(select(t.processed)).mappings().all()
    assert ddl is not None and ddl.endswith(") WITHOUT ROWID")
    assert sorted(map(dict, kept), key=lambda r: r["version"]) == sorted(rows, key=lambda r: r["version"])
    engine.dispose()


def _enqueue(conn, customer: str, n: int, **kw):  # type: ignore[no-untyped-def]
    return outbox.enqueue(
        conn,
        channel="webhook",
        kind="customer.updated",
        customer_id=customer,
        payload={"n": n},
        now=at(2026, 3, 1),
        **kw,
    )


def test_due_gives_each_customers_oldest_pending_only(db_engine: Engine) -> None:
    store = LedgerStore(db_engine)
    now = at(2026, 3, 1)
    with db_engine.begin() as conn:
        for c in ("a", "b"):
            store.lock_customer(conn, c, now)
        for n in range(3):
            _enqueue(conn, "a", n)
        _enqueue(conn, "b", 0)
    with db_engine.begin() as conn:
        due = outbox.due(conn, "webhook", now)
        assert sorted((m.customer_id, m.payload["n"]) for m in due) == [("a", 0), ("b", 0)]
        first_a = next(m for m in due if m.customer_id == "a")
        outbox.mark_retry(conn, first_a.id, now + timedelta(minutes=5), "503")
    with db_engine.begin() as conn:
        # a's head waits for its retry: a's later messages wait too; b is not held up
        assert [(m.customer_id, m.payload["n"]) for m in outbox.due(conn, "webhook", now)] == [("b", 0)]
        outbox.mark_dead(conn, first_a.id, "gone")
        assert ("a", 1) in [(m.customer_id, m.payload["n"]) for m in outbox.due(conn, "webhook", now)]
        assert outbox.depth(conn)[0] == 3


def test_dedup_key_sends_a_notification_at_most_once(db_engine: Engine) -> None:
    with db_engine.begin() as conn:
        assert _enqueue(conn, "a", 1, dedup_key="sms:accrued:x") is not None
        assert _enqueue(conn, "a", 2, dedup_key="sms:accrued:x") is None


def test_newer_write_back_supersedes_an_undelivered_one(db_engine: Engine) -> None:
    with db_engine.begin() as conn:
        for n in range(2):
            outbox.enqueue(
                conn,
                channel="onec",
                kind="order",
                customer_id="a",
                target="o1",
                payload={"n": n},
                now=at(2026, 3, 1),
                supersede=True,
            )
        pending = outbox.listing(conn)
    assert [m.payload["n"] for m in pending] == [1]


def test_retry_of_dead_messages_keeps_their_id(db_engine: Engine) -> None:
    with db_engine.begin() as conn:
        mid = _enqueue(conn, "a", 1)
        assert mid is not None
        outbox.mark_dead(conn, mid, "410 Gone")
        before = outbox.listing(conn, (outbox.DEAD,))[0]
        assert outbox.retry(conn, at(2026, 3, 2), all_dead=True) == 1
        after = outbox.listing(conn)[0]
    assert after.message_id == before.message_id and after.status == outbox.PENDING


def test_prune_deletes_only_finished_messages_older_than_the_cutoff(db_engine: Engine) -> None:
    from sqlalchemy import select, update

    from bridge.store import schema as t

    store = LedgerStore(db_engine)
    cutoff = at(2026, 6, 1)
    with store.transaction() as conn:
        ids = {name: _enqueue(conn, name, 0) for name in ("old_sent", "new_sent", "pending", "dead")}
        ids["superseded"] = _enqueue(conn, "superseded", 0)
        ids["new_superseded"] = outbox.enqueue(
            conn,
            channel="onec",
            kind="partner",
            customer_id="new_superseded",
            payload={},
            now=cutoff + timedelta(hours=1),
        )

        def set_row(name: str, **values: object) -> None:
            conn.execute(update(t.outbox).where(t.outbox.c.id == ids[name]).values(**values))

        set_row("old_sent", status=outbox.SENT, sent_at=cutoff - timedelta(seconds=1))
        set_row("new_sent", status=outbox.SENT, sent_at=cutoff)  # not older than the cutoff
        set_row("dead", status=outbox.DEAD)  # queued long before: a dead message is never pruned
        set_row("superseded", status=outbox.SUPERSEDED)
        set_row("new_superseded", status=outbox.SUPERSEDED)
    with store.transaction() as conn:
        assert outbox.prune_batch(conn, cutoff) == 2
    with store.transaction() as conn:
        assert outbox.prune_batch(conn, cutoff) == 0
        left = set(conn.execute(select(t.outbox.c.customer_id)).scalars())
    assert left == {"new_sent", "pending", "dead", "new_superseded"}


def test_prune_takes_at_most_a_batch_oldest_first(db_engine: Engine) -> None:
    from sqlalchemy import select, update

    from bridge.store import schema as t

    store = LedgerStore(db_engine)
    with store.transaction() as conn:
        for n in range(7):
            _enqueue(conn, f"c{n}", n)
        conn.execute(update(t.outbox).values(status=outbox.SENT, sent_at=at(2026, 3, 2)))
    with store.transaction() as conn:
        assert outbox.prune_batch(conn, at(2026, 4, 1), limit=5) == 5
        assert list(conn.execute(select(t.outbox.c.customer_id).order_by(t.outbox.c.id)).scalars()) == [
            "c5",
            "c6",
        ]
        assert outbox.prune_batch(conn, at(2026, 4, 1), limit=5) == 2
