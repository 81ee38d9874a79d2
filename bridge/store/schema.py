"""The state database's schema (SQLAlchemy 2 Core tables), shared by the repository and migrations.

Ledger tables (``entries``, ``allocations``, ``level_history``, ``events``) are insert-only: the
migration installs triggers that abort any UPDATE or DELETE on them, on SQLite and PostgreSQL
alike. Everything else is the bridge's working memory about documents and customers.

Decimals are stored exactly (``ExactDecimal``: NUMERIC on PostgreSQL, text on SQLite, which has
no exact decimal type); times are stored in UTC and always come back timezone-aware.
Must not import bridge.onec, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, overload

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    literal_column,
    select,
    text,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

naming = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=naming)


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal that round-trips exactly: NUMERIC(24, 6) on PostgreSQL, canonical text on SQLite."""

    impl = String(48)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(24, 6, asdecimal=True))
        return dialect.type_descriptor(String(48))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        return decimal_param(value, dialect.name == "postgresql")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        result: Decimal | None = decimal_value(value)
        return result


def canonical(value: Decimal) -> Decimal:
    """Drop the trailing zeros a NUMERIC column adds (``500.000000`` → ``500``)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes stored as UTC; naive values are refused (they would be ambiguous)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(String(32))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        return time_param(value, dialect.name == "postgresql")

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        result: datetime | None = time_value(value)
        return result


# The column types' conversions as plain functions: the ledger's hot path binds and reads through
# the driver directly (``bridge.store.ledger``) with these very functions, so what it stores is
# byte-identical to what the typed columns store.

_CANONICAL: dict[Any, Decimal] = {}  # stored form -> canonical Decimal (Decimals are immutable)


def decimal_param(value: Decimal | None, pg: bool) -> Any:
    """``ExactDecimal``'s bound value: the Decimal on PostgreSQL, ``format(value, "f")`` on SQLite."""
    if value is None:
        return None
    if not isinstance(value, Decimal):
        raise TypeError(f"ExactDecimal takes Decimal, not {type(value).__name__}")
    return value if pg else format(value, "f")


@overload
def decimal_value(value: None) -> None: ...
@overload
def decimal_value(value: str | int | Decimal) -> Decimal: ...
def decimal_value(value: Any) -> Decimal | None:
    """``ExactDecimal``'s result: the canonical Decimal of the stored text or NUMERIC (a row's value
    is ``Any``: the overloads then give ``Any``, so a NOT NULL column's value needs no check)."""
    if value is None:
        return None
    try:
        return _CANONICAL[value]
    except KeyError:
        pass
    result = canonical(Decimal(value))
    if len(_CANONICAL) >= 50_000:  # bounded: a few distinct amounts recur endlessly
        _CANONICAL.clear()
    _CANONICAL[value] = result
    return result


_TEXT_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def time_param(value: datetime | None, pg: bool) -> Any:
    """``UTCDateTime``'s bound value: the UTC datetime on PostgreSQL, its ``%Y-%m-%dT%H:%M:%S.%f``
    text on SQLite; naive values are refused (they would be ambiguous)."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r} cannot be stored: the time zone is unknown")
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    if pg:
        return utc
    # %Y-%m-%dT%H:%M:%S.%f with the year always four digits (isoformat pads it; strftime's %Y
    # wrote years before 1000 unpadded, which neither sorted as text nor read back).
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds")


@overload
def time_value(value: None) -> None: ...
@overload
def time_value(value: str | datetime) -> datetime: ...
def time_value(value: Any) -> datetime | None:
    """``UTCDateTime``'s result: an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == 26:  # %Y-%m-%dT%H:%M:%S.%f with a four-digit year, read in C
            try:
                return datetime.fromisoformat(value + "+00:00")
            except ValueError:
                pass
        year, dash, rest = value.partition("-")
        if dash and year.isdigit() and len(year) < 4:  # written unpadded before session 4: "999-…"
            return time_value(f"{int(year):04d}-{rest}")
        return datetime.strptime(value, _TEXT_FORMAT).replace(tzinfo=UTC)
    result: datetime = value
    return result.astimezone(UTC) if result.tzinfo else result.replace(tzinfo=UTC)


def money() -> ExactDecimal:
    return ExactDecimal()


customers = Table(
    "customers",
    metadata,
    Column("id", String(64), primary_key=True),  # 1C partner Ref_Key
    Column("name", Text, nullable=False, server_default=""),
    Column("phone", String(32)),  # E.164, for SMS
    Column("email", String(254)),
    Column("onec_version", String(128)),  # the partner's DataVersion last read or written
    Column("level_code", String(64)),
    Column("level_valid_until", UTCDateTime()),
    Column("level_since", UTCDateTime()),
    Column("level_promoted_by", String(64)),
    Column("level_previous", JSON),  # the state before the last promotion (nested)
    Column("sequence", Integer, nullable=False, server_default="0"),  # webhook snapshot counter
    Column("next_due_at", UTCDateTime(), index=True),  # when time alone next changes this book
    Column("tier_seen_at", UTCDateTime()),  # rolling volume window: the tier judged up to here
    Column("updated_at", UTCDateTime()),
)

orders = Table(
    "orders",
    metadata,
    Column("id", String(64), primary_key=True),  # 1C Ref_Key
    Column("customer_id", String(64), nullable=False),
    Column("number", String(64), nullable=False, server_default=""),
    Column("doc_date", UTCDateTime(), nullable=False),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("close_time", UTCDateTime()),
    Column("earned_tier", String(64)),
    Column("redeem_decided", Boolean, nullable=False, server_default="0"),
    Column("redeem_requested", money(), nullable=False, server_default="0"),
    Column("redeem_accepted", money(), nullable=False, server_default="0"),
    Column("message", Text, nullable=False, server_default=""),
    Column("version", String(128), nullable=False, server_default=""),  # last DataVersion applied
    Column("status", String(16), nullable=False, server_default="open"),
    Column("snapshot", JSON, nullable=False),  # the last version seen, as plain JSON
    # When the bridge last wrote the row, or the close time if that lies ahead (a document dated
    # ahead, imported as history): never earlier than ``close_time``, so "closed or changed within
    # the tracking period" is one seek on it (migration 0007).
    Column("updated_at", UTCDateTime(), nullable=False),
    # What ``tracking.tracked_orders`` / ``tracked_since`` seek, one index per branch of their
    # UNION ALL, each covering what they read; the open orders' index also answers every query of
    # a customer's orders (all of them ask for the open ones). Migrations 0005, 0007.
    Index(
        "ix_orders_open",
        "customer_id",
        "doc_date",
        "id",
        "version",
        "status",  # SQLite 3.40 reads a column its WHERE names from the table, even one the index implies
        sqlite_where=text("status = 'open'"),
        postgresql_where=text("status = 'open'"),
    ),
    Index("ix_orders_updated_at", "updated_at", "doc_date", "id", "version"),
)

# A customer's open orders in document order, through the partial index above: the status is
# written as a literal, as the index's condition is (a bound value would miss the index).
OPEN_ORDERS_OF = (
    select(orders.c.id)
    .where(orders.c.customer_id == bindparam("b_id"), orders.c.status == literal_column("'open'"))
    .order_by(orders.c.doc_date, orders.c.id)
)


returns = Table(
    "returns",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("order_id", String(64), index=True),
    Column("customer_id", String(64), index=True),
    Column("version", String(128), nullable=False),
    Column("snapshot", JSON, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

entries = Table(
    "entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("order_id", String(64)),
    Column("lot_id", String(64)),
    Column("points", money(), nullable=False),
    Column("money", money(), nullable=False),
    Column("debt_delta", money(), nullable=False),
    Column("effective_at", UTCDateTime(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("accrued_at", UTCDateTime()),
    Column("available_at", UTCDateTime()),
    Column("expires_at", UTCDateTime()),
    Column("cause", String(200), nullable=False, server_default=""),
    Index("ix_entries_customer", "customer_id", "id"),  # the only way entries are read: by customer
)

allocations = Table(
    "allocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", Integer, ForeignKey("entries.id"), nullable=False, index=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("lot_id", String(64), nullable=False),
    Column("points", money(), nullable=False),  # > 0 taken from the lot, < 0 returned to it
)

level_history = Table(
    "level_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("old_code", String(64), nullable=False),
    Column("new_code", String(64), nullable=False),
    Column("period_sum", money(), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("order_id", String(64)),
    Column("recorded_at", UTCDateTime(), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", String(64), nullable=False),
    Column("key", String(200), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("order_id", String(64)),
    Column("points", money()),
    Column("when_at", UTCDateTime()),
    Column("detail", JSON, nullable=False),
    Column("history", Boolean, nullable=False, server_default="0"),
    UniqueConstraint("customer_id", "key", name="uq_events_customer_key"),
)

processed = Table(
    "processed",
    metadata,
    Column("doc_id", String(64), primary_key=True),
    Column("version", String(128), primary_key=True),
    Column("customer_id", String(64)),
    Column("processed_at", UTCDateTime(), nullable=False),
    sqlite_with_rowid=False,  # one B-tree (the key's), one page per insert fewer (migration 0008)
)

cards = Table(
    "cards",
    metadata,
    Column("number", String(32), primary_key=True),
    Column("serial", Integer, unique=True),  # NULL for numbers 1C already had
    Column("customer_id", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False, server_default="virtual"),
    Column("onec_id", String(64), index=True),
    Column("onec_version", String(128)),  # the 1C card's DataVersion last read
    Column("created_at", UTCDateTime(), nullable=False),
    Column("issued_at", UTCDateTime()),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)

cursors = Table(
    "cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

INSERT_ONLY = ("entries", "allocations", "level_history", "events")

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False, unique=True),  # webhook-id; same on every retry
    Column("channel", String(16), nullable=False),  # onec | webhook | sms | email
    Column("kind", String(32), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("target", String(64)),  # order / partner / card the message is about
    Column("sequence", Integer),  # webhook: per-customer snapshot number
    Column("payload", JSON, nullable=False),
    Column("status", String(12), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("last_error", Text, nullable=False, server_default=""),
    Column("dedup_key", String(200), unique=True),  # a notification is sent at most once
    Index("ix_outbox_due", "status", "channel", "next_attempt_at"),
    Index("ix_outbox_customer", "channel", "customer_id", "id"),
    Index("ix_outbox_pending_head", "status", "channel", "customer_id", "id"),  # a customer's head
    Index("ix_outbox_pending_target", "status", "channel", "target"),  # superseding a write-back
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("doc_id", String(64), primary_key=True),
    Column("version", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("number", String(64), nullable=False, server_default=""),
    Column("reason", Text, nullable=False),
    Column("field", String(128)),
    Column("first_failed_at", UTCDateTime(), nullable=False),
    Column("last_failed_at", UTCDateTime(), nullable=False),
    Column("failures", Integer, nullable=False, server_default="1"),
)
