"""What the change sources and the cycle remember between cycles: cursors, tracked documents, the
DataVersions the bridge itself produced, customers' contacts, and quarantined documents.

Must not import bridge.onec, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, or_, select

from bridge.store import schema as t
from bridge.store.ledger import upsert


def get_cursor(conn: Connection, name: str) -> str | None:
    return conn.execute(select(t.cursors.c.value).where(t.cursors.c.name == name)).scalar()


def set_cursor(conn: Connection, name: str, value: str, now: datetime) -> None:
    upsert(conn, t.cursors, {"name": name, "value": value, "updated_at": now}, ["name"])


def tracked_orders(conn: Connection, now: datetime, track_days: int) -> dict[str, str]:
    """Orders still worth re-checking: not closed, or closed (or last changed) within ``track_days``.

    Maps Ref_Key to the newest DataVersion the bridge knows — including the one its own write-back
    produced, so its own write never looks like a change.
    """
    since = now - timedelta(days=track_days)
    query = select(t.orders.c.id, t.orders.c.version).where(
        or_(t.orders.c.status == "open", t.orders.c.close_time >= since, t.orders.c.updated_at >= since)
    )
    return {row.id: row.version for row in conn.execute(query)}


def tracked_returns(conn: Connection, now: datetime, track_days: int) -> dict[str, str]:
    since = now - timedelta(days=track_days)
    query = select(t.returns.c.id, t.returns.c.version).where(t.returns.c.updated_at >= since)
    return {row.id: row.version for row in conn.execute(query)}


def tracked_since(conn: Connection, now: datetime, track_days: int) -> datetime | None:
    """The earliest document date among the tracked orders."""
    since = now - timedelta(days=track_days)
    return conn.execute(
        select(func.min(t.orders.c.doc_date)).where(
            or_(t.orders.c.status == "open", t.orders.c.close_time >= since, t.orders.c.updated_at >= since)
        )
    ).scalar()


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
    conn.execute(t.cards.update().where(t.cards.c.onec_id == onec_id).values(onec_version=version))


def record_own_version(conn: Connection, obj: str, key: str, version: str, now: datetime) -> None:
    """Remember a DataVersion the bridge's own write produced, so reading it back changes nothing."""
    if not version:
        return
    if obj == "orders":
        upsert(
            conn,
            t.processed,
            {"doc_id": key, "version": version, "customer_id": None, "processed_at": now},
            ["doc_id", "version"],
        )
        conn.execute(t.orders.update().where(t.orders.c.id == key).values(version=version))
    elif obj == "partners":
        conn.execute(t.customers.update().where(t.customers.c.id == key).values(onec_version=version))
    elif obj == "cards":
        set_card_version(conn, key, version)


def set_card_onec_id(conn: Connection, number: str, onec_id: str) -> None:
    conn.execute(t.cards.update().where(t.cards.c.number == number).values(onec_id=onec_id))


def set_contacts(
    conn: Connection, customer_id: str, *, name: str, phone: str | None, email: str | None, version: str
) -> None:
    conn.execute(
        t.customers.update()
        .where(t.customers.c.id == customer_id)
        .values(name=name, phone=phone, email=email, onec_version=version)
    )


def contacts(conn: Connection, customer_id: str) -> dict[str, Any]:
    row = conn.execute(
        select(
            t.customers.c.name, t.customers.c.phone, t.customers.c.email, t.customers.c.onec_version
        ).where(t.customers.c.id == customer_id)
    ).first()
    if row is None:
        return {"name": "", "phone": None, "email": None, "onec_version": None}
    return dict(row._mapping)


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
    conn.execute(t.quarantine.delete().where(t.quarantine.c.doc_id == doc_id))


def open_order_ids(conn: Connection, customer_id: str) -> list[str]:
    """The customer's orders the bridge last saw open (being assembled)."""
    query = select(t.orders.c.id).where(t.orders.c.customer_id == customer_id, t.orders.c.status == "open")
    return list(conn.execute(query).scalars())


def quarantined_versions(conn: Connection, kind: str) -> dict[str, str]:
    """Quarantined documents of ``kind`` -> the version that failed (re-checked every cycle, so a
    fix in 1C is picked up by the next cycle, not only by the nightly sweep)."""
    query = select(t.quarantine.c.doc_id, t.quarantine.c.version).where(t.quarantine.c.kind == kind)
    return {row.doc_id: row.version for row in conn.execute(query)}


def quarantined(conn: Connection) -> list[dict[str, Any]]:
    return [
        dict(r._mapping) for r in conn.execute(select(t.quarantine).order_by(t.quarantine.c.last_failed_at))
    ]
