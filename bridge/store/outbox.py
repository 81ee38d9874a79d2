"""The transactional outbox: every outgoing effect (1C write-back, webhook, SMS, e-mail) is a row
inserted in the same transaction as the ledger entries that caused it, then delivered after commit.

Rows move ``pending`` → ``sent`` | ``dead`` (or ``superseded`` when a newer write-back of the same
1C object replaces an undelivered one). ``message_id`` never changes, so a webhook keeps its
``webhook-id`` across retries and manual re-sends. ``dedup_key`` makes a notification happen at most
once. Must not import bridge.onec, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, String, and_, bindparam, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.expression import Select

from bridge.store import schema as t
from bridge.store.hot import bind_time, driver, errors
from bridge.store.schema import time_param

PENDING, SENT, DEAD, SUPERSEDED = "pending", "sent", "dead", "superseded"
CHANNELS = ("onec", "webhook", "sms", "email")


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One outgoing message as the senders see it."""

    id: int
    message_id: str
    channel: str  # onec | webhook | sms | email
    kind: str  # onec: order | partner | discount | card; webhook: customer.updated; sms/email: reason
    customer_id: str
    target: str | None
    sequence: int | None
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to enqueue (see :func:`enqueue`; the creation time is the batch's ``now``)."""

    channel: str
    kind: str
    customer_id: str
    payload: dict[str, Any]
    target: str | None = None
    sequence: int | None = None
    supersede: bool = False


def _message(row: Any) -> OutboxMessage:
    return OutboxMessage(
        id=row.id,
        message_id=row.message_id,
        channel=row.channel,
        kind=row.kind,
        customer_id=row.customer_id,
        target=row.target,
        sequence=row.sequence,
        payload=row.payload,
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
    )


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


# The statements of the unit of work and of the delivery loop, built once (as in
# ``bridge.store.ledger``): each execution then skips SQLAlchemy's statement construction and
# cache-key generation.
_NEXT_SEQUENCE = (
    t.customers.update()
    .where(t.customers.c.id == bindparam("b_cid"))
    .values(sequence=t.customers.c.sequence + 1)
    .returning(t.customers.c.sequence)
)
_SUPERSEDE = (
    t.outbox.update()
    .where(
        t.outbox.c.status == PENDING,
        t.outbox.c.channel == bindparam("b_channel"),
        t.outbox.c.kind == bindparam("b_kind"),
        t.outbox.c.target == bindparam("b_target"),
    )
    .values(status=SUPERSEDED)
)
_older = t.outbox.alias("older")
_DUE: Select[Any] = (
    select(t.outbox)
    .where(
        t.outbox.c.status == PENDING,
        t.outbox.c.channel == bindparam("b_channel"),
        t.outbox.c.next_attempt_at <= bindparam("b_now"),
        # only a customer's oldest pending message (the head of their queue)
        ~exists(
            select(_older.c.id).where(
                _older.c.channel == t.outbox.c.channel,
                _older.c.customer_id == t.outbox.c.customer_id,
                _older.c.status == PENDING,
                _older.c.id < t.outbox.c.id,
            )
        ),
    )
    .order_by(t.outbox.c.next_attempt_at, t.outbox.c.id)
    .limit(bindparam("b_limit"))
)
_MARK_RETRY = (
    t.outbox.update()
    .where(t.outbox.c.id == bindparam("b_id"))
    .values(
        next_attempt_at=bindparam("b_next_at"),
        attempts=t.outbox.c.attempts + 1,
        last_error=bindparam("b_error"),
    )
)
_MARK_DEAD = (
    t.outbox.update()
    .where(t.outbox.c.id == bindparam("b_id"))
    .values(status=DEAD, attempts=t.outbox.c.attempts + 1, last_error=bindparam("b_error"))
)


@cache
def _dialect_statements(name: str) -> dict[str, Any]:
    """The outbox INSERT … RETURNING (and its ``ON CONFLICT (dedup_key) DO NOTHING`` variant), built
    once per dialect."""
    dialect = postgresql if name == "postgresql" else sqlite
    insert = dialect.insert(t.outbox)
    return {
        "insert": insert.returning(t.outbox.c.id),
        "insert_once": insert.on_conflict_do_nothing(index_elements=["dedup_key"]).returning(t.outbox.c.id),
    }


def next_sequence(conn: Connection, customer_id: str) -> int:
    """The customer's next webhook snapshot number (the customer's row is locked by the caller)."""
    value: int = conn.execute(_NEXT_SEQUENCE, {"b_cid": customer_id}).scalar_one()
    return value


def enqueue(
    conn: Connection,
    *,
    channel: str,
    kind: str,
    customer_id: str,
    payload: dict[str, Any],
    now: datetime,
    target: str | None = None,
    sequence: int | None = None,
    dedup_key: str | None = None,
    supersede: bool = False,
) -> int | None:
    """Insert a pending message; returns its id (None if ``dedup_key`` was already used).

    With ``supersede`` the still-pending messages of the same channel, kind and target are marked
    ``superseded`` first: a newer write-back of one 1C object makes older ones pointless.
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown outbox channel {channel!r}")
    if supersede and target is not None:
        conn.execute(_SUPERSEDE, {"b_channel": channel, "b_kind": kind, "b_target": target})
    statements = _dialect_statements(conn.dialect.name)
    row = conn.execute(
        statements["insert"] if dedup_key is None else statements["insert_once"],
        {
            "message_id": new_message_id(),
            "channel": channel,
            "kind": kind,
            "customer_id": customer_id,
            "target": target,
            "sequence": sequence,
            "payload": payload,
            "status": PENDING,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
            "dedup_key": dedup_key,
        },
    ).first()
    return None if row is None else int(row[0])


def enqueue_many(conn: Connection, messages: Sequence[NewMessage], now: datetime) -> None:
    """:func:`enqueue` each of ``messages`` in order (ids ascending in list order), in two statements.

    The same end state as one :func:`enqueue` after another: first the still-pending messages that
    any of them supersedes are marked ``superseded`` (one ``UPDATE`` per (kind, target), seeking
    ``ix_outbox_pending_target``), then all are inserted (one ``executemany``); a message
    superseded by a later one of the same list is inserted ``superseded`` at once. No
    ``dedup_key`` here (use :func:`enqueue`). Both run on the driver inside the caller's
    transaction with the column types' own conversions (``schema.time_param``, SQLAlchemy's JSON
    binding): one unit of work per document pays for them, and Core's expanding ``IN`` compiled
    afresh for every size cost several times as much.
    """
    if not messages:
        return
    last: dict[tuple[str, str, str], int] = {}  # (channel, kind, target) -> index of the last one
    for i, m in enumerate(messages):
        if m.channel not in CHANNELS:
            raise ValueError(f"unknown outbox channel {m.channel!r}")
        if m.supersede and m.target is not None:
            last[(m.channel, m.kind, m.target)] = i
    sql = _driver_sql(conn.dialect.name == "postgresql")
    db = conn.connection.driver_connection
    assert db is not None  # a live connection inside the unit of work's transaction
    cursor = db.cursor()
    if last:
        cursor.executemany(sql.supersede, [(SUPERSEDED, PENDING, *key) for key in last])
    created = time_param(now, sql.pg)
    rows = []
    for i, m in enumerate(messages):
        final = last.get((m.channel, m.kind, m.target)) if m.target is not None else None
        rows.append(
            (
                new_message_id(),
                m.channel,
                m.kind,
                m.customer_id,
                m.target,
                m.sequence,
                sql.json(m.payload),
                PENDING if final is None or final <= i else SUPERSEDED,
                0,
                created,
                created,
            )
        )
    cursor.executemany(sql.insert, rows)


@dataclass(frozen=True)
class _DriverSql:
    pg: bool
    supersede: str
    insert: str
    json: Callable[[Any], Any]


@cache
def _driver_sql(pg: bool) -> _DriverSql:
    """:func:`enqueue_many`'s statements in the driver's paramstyle, and its JSON binding (what
    SQLAlchemy's ``JSON`` binds: ``json.dumps`` text on SQLite, psycopg's ``Json`` on PostgreSQL)."""
    mark = "%s" if pg else "?"
    supersede = (
        f"UPDATE outbox SET status = {mark} WHERE status = {mark} AND channel = {mark} "
        f"AND kind = {mark} AND target = {mark}"
    )
    columns = (
        "message_id, channel, kind, customer_id, target, sequence, payload, status, attempts, "
        "created_at, next_attempt_at"
    )
    insert = f"INSERT INTO outbox ({columns}) VALUES ({', '.join([mark] * 11)})"
    if pg:
        from psycopg.types.json import Json

        return _DriverSql(True, supersede, insert, Json)
    return _DriverSql(False, supersede, insert, json.dumps)


def due(conn: Connection, channel: str, now: datetime, limit: int = 100) -> list[OutboxMessage]:
    """Pending messages of ``channel`` due by ``now``, each the oldest pending of its customer.

    Only a customer's oldest pending message is ever due, so one customer's messages go out in
    order; a customer whose head message waits for a retry does not hold up anybody else.
    """
    return [_message(r) for r in conn.execute(_DUE, {"b_channel": channel, "b_now": now, "b_limit": limit})]


def mark_sent(conn: Connection, message_id: int, now: datetime) -> None:
    # On the driver (``bridge.store.hot``): it runs after every delivered message.
    db, sql = driver(conn)
    with errors(conn, "mark_sent"):
        db.execute(sql.s["mark_sent"], (bind_time(now, sql.pg), message_id))


def mark_retry(conn: Connection, message_id: int, next_at: datetime, error: str) -> None:
    conn.execute(_MARK_RETRY, {"b_id": message_id, "b_next_at": next_at, "b_error": error[:1000]})


def mark_dead(conn: Connection, message_id: int, error: str) -> None:
    conn.execute(_MARK_DEAD, {"b_id": message_id, "b_error": error[:1000]})


def retry(conn: Connection, now: datetime, message_id: str | None = None, *, all_dead: bool = False) -> int:
    """Put dead messages back in line (same ``message_id``); returns how many."""
    if message_id is None and not all_dead:
        raise ValueError("name a message or all_dead")
    cond = t.outbox.c.status == DEAD
    if message_id is not None:
        cond = and_(
            cond, (t.outbox.c.message_id == message_id) | (func.cast(t.outbox.c.id, String) == message_id)
        )
    result = conn.execute(
        t.outbox.update().where(cond).values(status=PENDING, next_attempt_at=now, created_at=now)
    )
    return int(result.rowcount or 0)


def prune_batch(conn: Connection, before: datetime, limit: int = 2000) -> int:
    """Delete up to ``limit`` finished messages older than ``before``; returns how many.

    Finished: ``sent`` before ``before``, or ``superseded`` (never sent) and queued before it.
    Pending and dead messages are never deleted. Nothing depends on a finished row: a webhook's
    ``sequence`` lives on the customer, and a notification is held to once by the ledger's events
    (``Book.emit``), which are kept; ``dedup_key`` only guards the insert of a message being made.
    """
    o = t.outbox.c
    old = ((o.status == SENT) & (o.sent_at < before)) | ((o.status == SUPERSEDED) & (o.created_at < before))
    ids = select(o.id).where(old).order_by(o.id).limit(limit).scalar_subquery()
    return int(conn.execute(t.outbox.delete().where(o.id.in_(ids))).rowcount or 0)


def listing(
    conn: Connection, statuses: tuple[str, ...] = (PENDING, DEAD), limit: int = 1000
) -> list[OutboxMessage]:
    query = select(t.outbox).where(t.outbox.c.status.in_(statuses)).order_by(t.outbox.c.id).limit(limit)
    return [_message(r) for r in conn.execute(query)]


def depth(conn: Connection) -> tuple[int, datetime | None]:
    """Pending messages and the creation time of the oldest (for metrics)."""
    row = conn.execute(
        select(func.count(t.outbox.c.id), func.min(t.outbox.c.created_at)).where(t.outbox.c.status == PENDING)
    ).one()
    oldest = row[1]
    if isinstance(oldest, str):  # SQLite aggregates bypass the column type
        oldest = t.UTCDateTime().process_result_value(oldest, conn.dialect)
    return int(row[0]), oldest
