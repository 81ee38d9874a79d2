"""What the change sources and the cycle remember between cycles: cursors, tracked documents, the
DataVersions the bridge itself produced, customers' contacts, and quarantined documents; and
``StoreState``, the change sources' view of all that.

Must not import bridge.onec, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    String,
    bindparam,
    func,
    literal_column,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite

from bridge.store import schema as t
from bridge.store.hot import bind_time, driver, errors

# The statements run for every document or write-back, built once (as in ``bridge.store.ledger``):
# each execution then skips SQLAlchemy's statement construction and cache-key generation.
_CURSOR = select(t.cursors.c.value).where(t.cursors.c.name == bindparam("b_name"))
_CONTACTS = select(
    t.customers.c.name, t.customers.c.phone, t.customers.c.email, t.customers.c.onec_version
).where(t.customers.c.id == bindparam("b_id"))
_RELEASE = t.quarantine.delete().where(t.quarantine.c.doc_id == bindparam("b_id"))
_QUARANTINED_IDS = select(t.quarantine.c.doc_id)


@cache
def _dialect_statements(name: str) -> dict[str, Any]:
    """The cursor's ``ON CONFLICT`` upsert, built once per dialect."""
    dialect = postgresql if name == "postgresql" else sqlite
    cursor = dialect.insert(t.cursors)
    return {
        "cursor": cursor.on_conflict_do_update(
            index_elements=["name"],
            set_={"value": cursor.excluded.value, "updated_at": cursor.excluded.updated_at},
        ),
    }


def get_cursor(conn: Connection, name: str) -> str | None:
    return conn.execute(_CURSOR, {"b_name": name}).scalar()


def any_cursor(conn: Connection) -> bool:
    """Whether a change source ever committed a cursor (False on a fresh state database)."""
    return conn.execute(select(t.cursors.c.name).limit(1)).first() is not None


def set_cursor(conn: Connection, name: str, value: str, now: datetime) -> None:
    statement = _dialect_statements(conn.dialect.name)["cursor"]
    conn.execute(statement, {"name": name, "value": value, "updated_at": now})


_OPEN: Any = literal_column("'open'")


def _tracked(*columns: Any) -> Any:
    """The tracked orders' ``columns``: open, or closed or last changed since ``b_since``.

    A ``UNION ALL`` of two index-only seeks (migrations 0005, 0007): the open orders' partial index,
    and ``updated_at``, which is never earlier than ``close_time`` (see ``schema.orders``), so it
    also finds the orders closed since. A plain ``OR`` is planned as a scan of every order (always
    on SQLite once ``ANALYZE`` has seen that ``status`` has two values). An order may come twice
    (open and recently changed): the callers keep one.
    """
    o, since = t.orders.c, bindparam("b_since", type_=t.UTCDateTime())
    return union_all(
        select(*columns).where(o.status == _OPEN),  # the literal: a bound value misses the partial index
        select(*columns).where(o.updated_at >= since),
    )


# In document date order (then Ref_Key): the order changed ones are re-read and processed in, which
# must not depend on when the bridge last wrote them (a plain scan gave the table's own order).
_TRACKED_ORDERS = _tracked(
    t.orders.c.id, t.orders.c.version, type_coerce(t.orders.c.doc_date, String).label("doc_date")
).order_by(literal_column("doc_date"), literal_column("id"))
_TRACKED_SINCE = select(func.min(_tracked(t.orders.c.doc_date).subquery().c.doc_date))


def tracked_orders(conn: Connection, now: datetime, track_days: int) -> dict[str, str]:
    """Orders still worth re-checking: not closed, or closed (or last changed) within ``track_days``.

    Maps Ref_Key to the newest DataVersion the bridge knows — including the one its own write-back
    produced, so its own write never looks like a change — in document date order.
    """
    since = now - timedelta(days=track_days)
    return {row[0]: row[1] for row in conn.execute(_TRACKED_ORDERS, {"b_since": since})}


def tracked_returns(conn: Connection, now: datetime, track_days: int) -> dict[str, str]:
    since = now - timedelta(days=track_days)
    query = select(t.returns.c.id, t.returns.c.version).where(t.returns.c.updated_at >= since)
    return {row.id: row.version for row in conn.execute(query)}


def tracked_since(conn: Connection, now: datetime, track_days: int) -> datetime | None:
    """The earliest document date among the tracked orders."""
    since = now - timedelta(days=track_days)
    earliest: datetime | None = conn.execute(_TRACKED_SINCE, {"b_since": since}).scalar()
    return earliest


def tracked_cards(conn: Connection) -> dict[str, str]:
    """Cards created in 1C but not yet handed out: 1C Ref_Key -> DataVersion last read."""
    query = select(t.cards.c.onec_id, t.cards.c.onec_version).where(
        t.cards.c.status == "virtual", t.cards.c.onec_id.is_not(None)
    )
    return {row.onec_id: row.onec_version or "" for row in conn.execute(query)}


def versions(conn: Connection, entity: str, keys: Collection[str]) -> dict[str, str]:
    """The DataVersion last applied (or written) for those of ``keys`` the bridge knows."""
    wanted = list(keys)
    if not wanted:
        return {}
    table, key, version = {
        "order": (t.orders, t.orders.c.id, t.orders.c.version),
        "return": (t.returns, t.returns.c.id, t.returns.c.version),
        "customer": (t.customers, t.customers.c.id, t.customers.c.onec_version),
        "card": (t.cards, t.cards.c.onec_id, t.cards.c.onec_version),
    }.get(entity, (None, None, None))
    if table is None or key is None or version is None:
        return {}
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for row in conn.execute(select(key, version).where(key.in_(chunk))):
            if row[1]:
                found[row[0]] = row[1]
    return found


def set_card_version(conn: Connection, onec_id: str, version: str) -> None:
    db, sql = driver(conn)
    with errors(conn, "set_card_version"):
        db.execute(sql.s["own_card_version"], (version, onec_id))


# The bookkeeping after each write-back runs on the driver (``bridge.store.hot``): through Core,
# its two statements cost more than the rest of the transaction.
_OWN_VERSION = {"orders": "own_order_version", "partners": "own_partner_version", "cards": "own_card_version"}


def record_own_version(conn: Connection, obj: str, key: str, version: str, now: datetime) -> None:
    """Remember a DataVersion the bridge's own write produced, so reading it back changes nothing."""
    if not version or obj not in _OWN_VERSION:
        return
    db, sql = driver(conn)
    with errors(conn, "record_own_version"):
        if obj == "orders":
            db.execute(sql.s["own_processed"], (key, version, bind_time(now, sql.pg)))
        db.execute(sql.s[_OWN_VERSION[obj]], (version, key))


def set_card_onec_id(conn: Connection, number: str, onec_id: str) -> None:
    db, sql = driver(conn)
    with errors(conn, "set_card_onec_id"):
        db.execute(sql.s["card_onec_id"], (onec_id, number))


def set_contacts(
    conn: Connection, customer_id: str, *, name: str, phone: str | None, email: str | None, version: str
) -> None:
    db, sql = driver(conn)
    with errors(conn, "set_contacts"):
        db.execute(sql.s["set_contacts"], (name, phone, email, version, customer_id))


def contacts(conn: Connection, customer_id: str) -> dict[str, Any]:
    row = conn.execute(_CONTACTS, {"b_id": customer_id}).first()
    if row is None:
        return {"name": "", "phone": None, "email": None, "onec_version": None}
    return dict(row._mapping)


def customer_known(conn: Connection, customer_id: str) -> tuple[str | None, bool]:
    """The partner's DataVersion the bridge last read (None when never read) and whether the
    customer has a card, in one round trip (what the cycle asks before every order)."""
    db, sql = driver(conn)
    with errors(conn, "customer_known"):
        version, has_card = db.execute(sql.s["customer_known"], (customer_id, customer_id)).fetchone()
    return version, bool(has_card)


def quarantine(
    engine: Engine,
    *,
    doc_id: str,
    version: str,
    kind: str,
    number: str,
    reason: str,
    field: str | None,
    now: datetime,
) -> None:
    """Set a document aside with its reason (own transaction: nothing else of it is committed)."""
    with engine.begin() as conn:
        old = conn.execute(select(t.quarantine.c.failures).where(t.quarantine.c.doc_id == doc_id)).scalar()
        values = {"version": version, "kind": kind, "number": number, "reason": reason[:2000], "field": field}
        if old is None:
            conn.execute(
                t.quarantine.insert().values(
                    doc_id=doc_id, first_failed_at=now, last_failed_at=now, failures=1, **values
                )
            )
        else:
            conn.execute(
                t.quarantine.update()
                .where(t.quarantine.c.doc_id == doc_id)
                .values(last_failed_at=now, failures=old + 1, **values)
            )


def release_quarantine(conn: Connection, doc_id: str) -> None:
    conn.execute(_RELEASE, {"b_id": doc_id})


def quarantined_ids(conn: Connection) -> set[str]:
    """Every quarantined document (of any kind)."""
    return set(conn.execute(_QUARANTINED_IDS).scalars())


def open_order_ids(conn: Connection, customer_id: str) -> list[str]:
    """The customer's orders the bridge last saw open (being assembled), in document order."""
    return list(conn.execute(t.OPEN_ORDERS_OF, {"b_id": customer_id}).scalars())


def quarantined_versions(conn: Connection, kind: str) -> dict[str, str]:
    """Quarantined documents of ``kind`` -> the version that failed (re-checked every cycle, so a
    fix in 1C is picked up by the next cycle, not only by the nightly sweep)."""
    query = select(t.quarantine.c.doc_id, t.quarantine.c.version).where(t.quarantine.c.kind == kind)
    return {row.doc_id: row.version for row in conn.execute(query)}


def quarantined(conn: Connection) -> list[dict[str, Any]]:
    return [
        dict(r._mapping) for r in conn.execute(select(t.quarantine).order_by(t.quarantine.c.last_failed_at))
    ]


#: The kinds a ``scan`` source re-checks by version every cycle (``StoreState.tracked``).
RECHECKED_KINDS = ("order", "return")


def requeue_quarantined(conn: Connection, wanted: Collection[str] | None) -> tuple[list[str], list[str]]:
    """Make quarantined documents be read again by the next ``scan`` cycle: their stored version
    is blanked, which a re-check never matches (a document that still fails is quarantined again,
    with its version). ``wanted``: ``Ref_Key``s or document numbers; None for all.

    Returns (requeued, not_rechecked): the rows' keys, split by whether their kind is re-checked
    every cycle (orders, returns); the others (customers, cards) are re-read when 1C changes them.
    """
    rows = conn.execute(select(t.quarantine.c.doc_id, t.quarantine.c.number, t.quarantine.c.kind)).all()
    chosen = [r for r in rows if wanted is None or r.doc_id in wanted or (r.number and r.number in wanted)]
    requeued = [r.doc_id for r in chosen if r.kind in RECHECKED_KINDS]
    if requeued:
        conn.execute(t.quarantine.update().where(t.quarantine.c.doc_id.in_(requeued)).values(version=""))
    return requeued, [r.doc_id for r in chosen if r.kind not in RECHECKED_KINDS]


class StoreState:
    """The change sources' view of the state database (``bridge.onec.sources.TrackingState``)."""

    def __init__(self, db: Engine, track_days: int) -> None:
        self.db = db
        self.track_days = track_days

    def cursor(self, name: str) -> str | None:
        with self.db.connect() as conn:
            return get_cursor(conn, name)

    def tracked(self, entity: str, now: datetime) -> dict[str, str]:
        with self.db.connect() as conn:
            # A quarantined version wins over the one last applied: an applied document edited into
            # one the bridge cannot apply is read again when 1C changes it, not every cycle (which
            # would log the same failure every minute); ``quarantine retry`` blanks it.
            if entity == "order":
                found = tracked_orders(conn, now, self.track_days)
                found.update(quarantined_versions(conn, "order"))
                return found
            if entity == "return":
                found = tracked_returns(conn, now, self.track_days)
                found.update(quarantined_versions(conn, "return"))
                return found
            if entity == "card":
                return tracked_cards(conn)
        return {}

    def tracked_since(self, entity: str, now: datetime) -> datetime | None:
        if entity != "order":
            return None
        with self.db.connect() as conn:
            return tracked_since(conn, now, self.track_days)

    def versions(self, entity: str, keys: Collection[str]) -> dict[str, str]:
        with self.db.connect() as conn:
            return versions(conn, entity, keys)
