"""The ledger's hot path on the DBAPI connection: same stored bytes, same books, same errors.

``bridge.store.ledger`` binds and reads the unit of work's values itself (no SQLAlchemy types in
between); these tests hold it to what the typed columns of ``bridge.store.schema`` would do.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, Connection, Engine, MetaData, Table, select
from sqlalchemy.exc import IntegrityError

from bridge.domain.apply import advance, apply_order, apply_return
from bridge.domain.book import Book
from bridge.domain.model import OrderStatus, ReturnDoc, ReturnLine
from bridge.service.engine import Engine as LoyaltyEngine
from bridge.store import schema as t
from bridge.store.ledger import LedgerStore
from tests.domain.factories import MSK, at, line, order, rules

R = rules()
WRITTEN = (
    t.customers,
    t.orders,
    t.returns,
    t.entries,
    t.allocations,
    t.level_history,
    t.events,
    t.processed,
    t.cards,
    t.counters,
)


def history_of_documents(apply: Any, ret: Any, tick: Any) -> None:
    """Orders, a redemption, a return, a cancellation, a move between partners and the clock."""
    bike = order("bike", "anna", [line(60000), line(900, group=None, product="p-ship", delivery=True)])
    apply(bike, at(2026, 1, 5))
    apply(order("coat", "anna", [line(14200, group="apparel")], date=at(2026, 1, 20)), at(2026, 1, 20))
    tick(at(2026, 2, 10))
    spend = order("sp", "anna", [line(3000)], redeem=300, status=OrderStatus.OPEN, date=at(2026, 2, 10))
    apply(spend, at(2026, 2, 10, 13))
    apply(replace(spend, status=OrderStatus.CLOSED, version="v2"), at(2026, 2, 11))
    back = ReturnDoc(
        "r1", "v1", at(2026, 2, 12), "anna", "bike", True, False, (ReturnLine("p-bike", D(1), D(20000)),)
    )
    ret(back, at(2026, 2, 12))
    apply(replace(bike, status=OrderStatus.CANCELLED, version="v2"), at(2026, 2, 13))
    moved = order("mv", "boris", [line(12000)], date=at(2026, 2, 14))
    apply(moved, at(2026, 2, 14))
    apply(replace(moved, customer_id="vera", version="v2"), at(2026, 2, 15))
    tick(at(2027, 3, 1))


def through_engine(engine: LoyaltyEngine) -> None:
    history_of_documents(
        lambda o, now: engine.apply_order(o, now),
        lambda r, now: engine.apply_return(r, now),
        engine.tick,
    )


def _raw(conn: Connection, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    """Every stored value as the database holds it (type and literal), rows in a fixed order."""
    if conn.dialect.name == "postgresql":
        exprs = [f'"{c}"::text' for c in columns]
    else:
        exprs = [f'typeof("{c}") || \':\' || quote("{c}")' for c in columns]
    order_by = ", ".join(str(i + 1) for i in range(len(columns)))
    return [
        tuple(r) for r in conn.exec_driver_sql(f"SELECT {', '.join(exprs)} FROM {table} ORDER BY {order_by}")
    ]


def test_stored_values_are_the_typed_columns_own(db_engine: Engine) -> None:
    """Each row the hot path wrote, read back through the typed table and written again through
    it into a bare copy of the table, is stored identically."""
    through_engine(LoyaltyEngine(LedgerStore(db_engine), R, MSK, card_prefix="2990"))
    with db_engine.begin() as conn:
        for table in WRITTEN:
            copy_name = f"copy_{table.name}"
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"CREATE TEMP TABLE {copy_name} (LIKE {table.name})")
            else:
                conn.exec_driver_sql(f"CREATE TEMP TABLE {copy_name} AS SELECT * FROM {table.name} WHERE 0")
            copy = Table(copy_name, MetaData(), *(Column(c.name, c.type) for c in table.columns))
            rows = [dict(r._mapping) for r in conn.execute(select(table))]
            assert rows or table is t.returns or table is t.counters, f"{table.name}: nothing written"
            if rows:
                conn.execute(copy.insert(), rows)
            columns = [c.name for c in table.columns]
            assert _raw(conn, table.name, columns) == _raw(conn, copy_name, columns), table.name


def test_a_rebuilt_book_equals_the_book_kept_in_memory(db_engine: Engine) -> None:
    engine = LoyaltyEngine(LedgerStore(db_engine), R, MSK)
    through_engine(engine)
    memory = {c: Book(c) for c in ("anna", "boris", "vera")}
    done: set[tuple[str, str]] = set()

    def committed() -> None:  # what ``save_book`` does once a unit of work is stored
        for book in memory.values():
            book.new_entries.clear()
            book.new_events.clear()
            book.new_history.clear()

    def apply(o: Any, now: Any) -> None:
        if (o.id, o.version) in done:
            return
        done.add((o.id, o.version))
        for cid, book in memory.items():  # a moved order is undone for its previous partner
            if o.id in book.orders and cid != o.customer_id:
                apply_order(book, R, replace(o, deleted=True), now, tz=MSK)
                memory[o.customer_id].orders[o.id] = book.orders.pop(o.id)  # one row per order
                committed()
        apply_order(memory[o.customer_id], R, o, now, tz=MSK)
        committed()

    def ret(r: Any, now: Any) -> None:
        apply_return(memory[r.customer_id], R, r, now, tz=MSK)
        committed()

    def tick(now: Any) -> None:
        for book in memory.values():
            advance(book, R, now)
            committed()

    history_of_documents(apply, ret, tick)
    for cid, expected in memory.items():
        got = engine.book(cid, tuple(expected.orders))
        assert got.lots == expected.lots, cid
        assert (got.debt, got.accrued, got.reserved) == (expected.debt, expected.accrued, expected.reserved)
        assert got.contributions == expected.contributions, cid
        assert (got.level, got.level_history) == (expected.level, expected.level_history), cid
        # Level keys carry times, which come back from the database in UTC: keys write them in UTC.
        assert got.sent_keys == expected.sent_keys, cid
        assert {k: (f.earned_tier, f.close_time, f.redeem_accepted) for k, f in got.orders.items()} == {
            k: (f.earned_tier, f.close_time, f.redeem_accepted) for k, f in expected.orders.items()
        }


def test_what_a_load_leaves_out(db_engine: Engine) -> None:
    engine = LoyaltyEngine(LedgerStore(db_engine), R, MSK)
    through_engine(engine)
    full = engine.book("anna")
    assert full.level_history and full.sent_keys
    with db_engine.connect() as conn:
        lean = engine.store.load_book(conn, "anna", history=False, keys=False)
    assert (lean.level_history, lean.sent_keys) == ([], set())
    assert (lean.lots, lean.debt, lean.level, lean.card) == (full.lots, full.debt, full.level, full.card)
    later = at(2027, 3, 1) + timedelta(days=1)
    from bridge.domain.present import customer_view

    assert engine.customer_view("anna", later) == customer_view(full, R, later, MSK)


def test_driver_errors_are_sqlalchemy_errors(db_engine: Engine) -> None:
    store = LedgerStore(db_engine)
    now = at(2026, 3, 1)
    with store.transaction() as conn:
        store.mark_processed(conn, "doc", "v1", "anna", now)
    with pytest.raises(IntegrityError), store.transaction() as conn:
        store.mark_processed(conn, "doc", "v1", "anna", now)
    with pytest.raises(ValueError, match="naive"), store.transaction() as conn:
        store.mark_processed(conn, "doc", "v2", "anna", now.replace(tzinfo=None))


def test_reads_run_inside_a_transaction(db_engine: Engine) -> None:
    """A read on a fresh connection begins the transaction SQLAlchemy would (BEGIN IMMEDIATE on
    SQLite), so its statements see one snapshot."""
    engine = LoyaltyEngine(LedgerStore(db_engine), R, MSK)
    engine.apply_order(order("o", "anna", [line(1000)]), at(2026, 3, 1))
    with db_engine.connect() as conn:
        assert not conn.in_transaction()
        book = engine.store.load_book(conn, "anna", ["o"])
        assert conn.in_transaction()
    assert book.orders["o"].order is not None and book.accrued["o"] == D(20)


@pytest.mark.parametrize(
    "value",
    [D(0), D("-0"), D("1E+3"), D("1000.000000"), D("12.50"), D("-0.000001"), D("123456789012345678.123456")],
)
def test_decimals_keep_their_stored_form(value: D) -> None:
    """The forms rows written before the driver path hold: ``format(d, "f")`` on SQLite, read back
    canonical (no trailing zeros)."""
    assert t.decimal_param(value, False) == format(value, "f")
    assert t.decimal_param(value, True) is value
    stored = format(value, "f")
    assert t.decimal_value(stored) == value and str(t.decimal_value(stored)) == str(t.canonical(D(stored)))
    with pytest.raises(TypeError):
        t.decimal_param(1.5, False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        at(2026, 3, 1, 12, 30),
        at(2026, 3, 1, 12, 30).replace(microsecond=5),
        datetime(999, 12, 31, 23, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin")),
    ],
)
def test_times_keep_their_stored_form(value: datetime) -> None:
    """UTC text ``%Y-%m-%dT%H:%M:%S.%f`` on SQLite with a four-digit year, aware UTC on read."""
    utc = value.astimezone(UTC)
    text = t.time_param(value, False)
    assert text == f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.%f")
    assert t.time_param(value, True) == utc
    back = t.time_value(text)
    assert back == utc and back is not None and back.tzinfo is UTC
    with pytest.raises(ValueError, match="naive"):
        t.time_param(value.replace(tzinfo=None), False)


def test_an_unpadded_year_written_before_is_read_back() -> None:
    """Before session 4 ``strftime`` wrote years before 1000 without padding (``999-…``)."""
    assert t.time_value("999-12-31T23:00:00.000000") == datetime(999, 12, 31, 23, tzinfo=UTC)
    assert t.time_value("5-01-02T03:04:05.000006") == datetime(5, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


@given(st.datetimes(timezones=st.just(UTC)), st.datetimes(timezones=st.just(UTC)))
def test_stored_times_sort_as_text_like_the_times(a: datetime, b: datetime) -> None:
    """Range queries on SQLite compare the stored text: it must order like the instants."""
    assert (t.time_param(a, False) < t.time_param(b, False)) is (a < b)
    assert t.time_value(t.time_param(a, False)) == a
