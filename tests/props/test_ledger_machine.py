"""Stateful property tests of the ledger, on the pure book and on SQLite and PostgreSQL.

The default run keeps a representative slice; ``--run-slow`` (or HYPOTHESIS_PROFILE=deep) runs
thousands of histories.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from sqlalchemy import text

from bridge.domain.apply import advance, apply_order, apply_return
from bridge.domain.book import Book
from bridge.domain.model import Order, ReturnDoc
from bridge.service.engine import Engine
from bridge.store.db import make_engine, upgrade
from bridge.store.ledger import LedgerStore
from tests.conftest import PG_URL, pg_unavailable_reason
from tests.domain.factories import MSK, rules
from tests.props.ledger_machine import CUSTOMERS, Driver, LedgerMachine

DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
R = rules(discount=True)


def machine_settings(default: int, deep: int) -> settings:
    return settings(
        max_examples=deep if DEEP else default,
        stateful_step_count=40 if DEEP else 25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


class MemoryDriver(Driver):
    """The pure domain with the same skip-if-applied rule the engine has."""

    def __init__(self) -> None:
        self.books = {c: Book(c) for c in CUSTOMERS}
        self.done: set[tuple[str, str]] = set()
        self.rows: list[tuple[Any, ...]] = []

    def _keep(self, book: Book) -> int:
        n = len(book.new_entries)
        self.rows += [
            (e.kind, e.customer_id, e.order_id, e.points, e.money, e.debt_delta) for e in book.new_entries
        ]
        book.new_entries.clear()
        book.new_events.clear()
        book.new_history.clear()
        return n

    def apply_order(self, order: Order, now: datetime) -> int:
        if (order.id, order.version) in self.done:
            return 0
        self.done.add((order.id, order.version))
        book = self.books[order.customer_id or ""]
        apply_order(book, R, order, now, tz=MSK)
        return self._keep(book)

    def apply_return(self, ret: ReturnDoc, now: datetime) -> int:
        if (ret.id, ret.version) in self.done:
            return 0
        self.done.add((ret.id, ret.version))
        book = self.books[ret.customer_id or ""]
        apply_return(book, R, ret, now, tz=MSK)
        return self._keep(book)

    def tick(self, now: datetime) -> None:
        for book in self.books.values():
            advance(book, R, now)
            self._keep(book)

    def book(self, customer_id: str, order_ids: tuple[str, ...]) -> Book:
        return self.books[customer_id]

    def entry_rows(self) -> list[tuple[Any, ...]]:
        return list(self.rows)


class DbDriver(Driver):
    def __init__(self, url: str, cleanup: Any = None) -> None:
        self.engine = make_engine(url)
        upgrade(self.engine)
        self.loyalty = Engine(LedgerStore(self.engine), R, MSK, card_prefix="2990")
        self.cleanup = cleanup

    def apply_order(self, order: Order, now: datetime) -> int:
        return self.loyalty.apply_order(order, now).entries

    def apply_return(self, ret: ReturnDoc, now: datetime) -> int:
        return self.loyalty.apply_return(ret, now).entries

    def tick(self, now: datetime) -> None:
        self.loyalty.tick(now)

    def book(self, customer_id: str, order_ids: tuple[str, ...]) -> Book:
        return self.loyalty.book(customer_id, order_ids)

    def entry_rows(self) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("select * from entries order by id"))]

    def close(self) -> None:
        self.engine.dispose()
        if self.cleanup:
            self.cleanup()


class MemoryMachine(LedgerMachine):
    def make_driver(self) -> Driver:
        return MemoryDriver()


class SqliteMachine(LedgerMachine):
    def make_driver(self) -> Driver:
        tmp = tempfile.TemporaryDirectory()
        return DbDriver(f"sqlite:///{tmp.name}/state.db", tmp.cleanup)


class PostgresMachine(LedgerMachine):
    def make_driver(self) -> Driver:
        import uuid

        from sqlalchemy import create_engine

        schema = f"h_{uuid.uuid4().hex[:12]}"
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))

        def drop() -> None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()

        sep = "&" if "?" in PG_URL else "?"
        return DbDriver(f"{PG_URL}{sep}options=-csearch_path%3D{schema}", drop)


def test_ledger_machine_in_memory() -> None:
    MemoryMachine.TestCase.settings = machine_settings(default=150, deep=20000)
    MemoryMachine.TestCase().runTest()


def test_ledger_machine_on_sqlite() -> None:
    SqliteMachine.TestCase.settings = machine_settings(default=20, deep=2000)
    SqliteMachine.TestCase().runTest()


@pytest.mark.postgres
def test_ledger_machine_on_postgresql() -> None:
    reason = pg_unavailable_reason()
    if reason:
        pytest.skip(reason)
    PostgresMachine.TestCase.settings = machine_settings(default=10, deep=1000)
    PostgresMachine.TestCase().runTest()


def test_machine_catches_a_broken_ledger() -> None:
    """The invariants are not vacuous: a ledger that forgets clawbacks is caught."""

    class Forgetful(MemoryDriver):
        def apply_order(self, order: Order, now: datetime) -> int:
            return super().apply_order(replace(order, deleted=False) if order.deleted else order, now)

    class Broken(LedgerMachine):
        def make_driver(self) -> Driver:
            return Forgetful()

    Broken.TestCase.settings = settings(
        max_examples=300,
        stateful_step_count=20,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
    )
    with pytest.raises(AssertionError):
        Broken.TestCase().runTest()
