"""The engine over the real ledger on SQLite and PostgreSQL: SPEC examples, idempotency, guards."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from bridge.domain.cards import is_valid_ean13
from bridge.domain.model import OrderStatus
from bridge.service.engine import Engine as LoyaltyEngine
from bridge.store.ledger import LedgerStore
from tests.domain.factories import MSK, at, line, order, rules


def make(db_engine: Engine, **kw: object) -> LoyaltyEngine:
    return LoyaltyEngine(LedgerStore(db_engine), rules(**kw), MSK, card_prefix="2990")


def test_examples_1_and_2_through_the_database(db_engine: Engine) -> None:
    eng = make(db_engine, discount=False)
    eng.apply_order(order("a", "dmitry", [line(25000)]), at(2026, 1, 5))
    eng.apply_order(order("b", "dmitry", [line(5000, group="sale")]), at(2026, 1, 6))
    eng.tick(at(2026, 3, 1))
    v = eng.customer_view("dmitry", at(2026, 3, 1))
    assert (v.tier and v.tier.code, v.available) == ("gold", D(500))
    jacket = order("j", "dmitry", [line(14200, group="apparel")], redeem=500, status=OrderStatus.OPEN)
    eng.apply_order(jacket, at(2026, 3, 1, 10))
    eng.apply_order(replace(jacket, status=OrderStatus.CLOSED, version="v2"), at(2026, 3, 2, 15))
    ov = eng.order_view("j")
    assert ov is not None and (ov.points_spent, ov.points_earned) == (D(500), D(639))
    v = eng.customer_view("dmitry", at(2026, 3, 2, 15))
    assert (v.total, v.available, v.pending) == (D(639), D(0), D(639))
    second = order("s", "dmitry", [line(3000)], redeem=100, status=OrderStatus.OPEN, date=at(2026, 3, 3))
    eng.apply_order(second, at(2026, 3, 3, 11))
    ov2 = eng.order_view("s")
    assert ov2 is not None and ov2.points_spent == D(0) and ov2.message.startswith("Доступно 0 бонусов")


def test_examples_3_and_4_through_the_database(db_engine: Engine) -> None:
    eng = make(db_engine, discount=False)
    eng.apply_order(order("old", "c", [line(20000, group="sale")]), at(2026, 1, 10))
    bike = order("bike", "c", [line(20000)])
    eng.apply_order(bike, at(2026, 3, 1))
    v = eng.customer_view("c", at(2026, 3, 1))
    assert v.tier is not None and (v.tier.code, v.volume, v.total) == ("gold", D(40000), D(400))
    eng.tick(at(2026, 3, 16))
    eng.apply_order(order("sp", "c", [line(1000)], redeem=300, status=OrderStatus.OPEN), at(2026, 3, 16))
    eng.apply_order(replace(bike, status=OrderStatus.CANCELLED, version="v2"), at(2026, 3, 20))
    v = eng.customer_view("c", at(2026, 3, 20))
    assert v.tier is not None and (v.tier.code, v.volume, v.total, v.debt) == (
        "silver",
        D(20000),
        D(0),
        D(300),
    )


def test_example_5_levels_through_the_database(db_engine: Engine) -> None:
    eng = make(db_engine, bonus=False)
    eng.apply_order(order("o1", "z", [line(7000)], date=at(2025, 3, 15)), at(2025, 3, 15))
    eng.apply_order(order("o2", "z", [line(1000)], date=at(2025, 10, 10)), at(2025, 10, 10))
    feb1 = at(2026, 2, 1, 0, 0)
    eng.apply_order(order("o3", "z", [line(3000)], date=feb1), feb1)
    v = eng.customer_view("z", feb1)
    assert v.level is not None and (v.level.code, v.period_sum) == ("fan", D(11000))
    assert v.valid_until == at(2026, 7, 31, 0, 0)
    eng.tick(at(2026, 7, 31, 0, 0))
    v = eng.customer_view("z", at(2026, 7, 31, 0, 0))
    assert v.level is not None and (v.level.code, v.period_sum) == ("base", D(4000))
    lines = v.level_history_text.splitlines()
    assert len(lines) == 2 and lines[0].startswith("31.07.2026") and lines[1].startswith("01.02.2026")


def test_days_are_counted_on_the_wall_clock_across_dst_after_a_reload(db_engine: Engine) -> None:
    """In a zone with DST (Berlin) a term that ran from 12:00 ends at 12:00, and so does the next
    one, started from a term end read back from the database (stored in UTC). Likewise the expiry
    warning, counted back from an expiry read back."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")

    def b(y: int, m: int, d: int, hh: int = 12) -> datetime:
        return datetime(y, m, d, hh, tzinfo=berlin)

    eng = LoyaltyEngine(LedgerStore(db_engine), rules(), berlin, card_prefix="2990")
    eng.apply_order(order("o1", "z", [line(10000)], date=b(2026, 3, 1)), b(2026, 3, 1))  # promoted: fan
    assert eng.customer_view("z", b(2026, 3, 1)).valid_until == b(2026, 8, 28)  # 180 days, CET → CEST
    eng.tick(b(2026, 8, 28))  # the term ends; S still reaches fan: a new term from that moment
    view = eng.customer_view("z", b(2026, 8, 28))
    assert view.valid_until == b(2027, 2, 24)  # 12:00 CET, not 11:00 (180 UTC days from 10:00 UTC)

    # Points expiring 2027-04-01 12:00 CEST are announced 7 days before: 2027-03-25 12:00 CET.
    eng.apply_order(order("o2", "y", [line(1000)], date=b(2026, 4, 1)), b(2026, 4, 1))
    eng.tick(b(2026, 4, 15))  # available

    def of_y(applied: list) -> list[str]:  # type: ignore[type-arg]
        return [e.reason.value for a in applied if a.customer_id == "y" for e in a.events]

    assert of_y(eng.tick(b(2027, 3, 25, 11))) == []  # 11:00 CET: 7 UTC days before would be now
    assert of_y(eng.tick(b(2027, 3, 25, 12))) == ["points_expiring"]


def test_reapplying_a_version_changes_nothing(db_engine: Engine) -> None:
    eng = make(db_engine)
    o = order("x", "c", [line(20000)])
    first = eng.apply_order(o, at(2026, 3, 1))
    assert not first.duplicate and first.entries > 0
    with db_engine.connect() as conn:
        before = conn.execute(text("select count(*) from entries")).scalar()
    again = eng.apply_order(o, at(2026, 3, 2))
    assert again.duplicate
    # A new DataVersion with the same content (the bridge's own write-back) posts nothing either.
    own = eng.apply_order(replace(o, version="v-after-writeback"), at(2026, 3, 2))
    assert not own.duplicate and own.entries == 0 and own.events == ()
    with db_engine.connect() as conn:
        assert conn.execute(text("select count(*) from entries")).scalar() == before


def test_ledger_tables_refuse_update_and_delete(db_engine: Engine) -> None:
    eng = make(db_engine)
    o = order("x", "c", [line(20000)])
    eng.apply_order(o, at(2026, 3, 1))
    eng.apply_order(replace(o, status=OrderStatus.CANCELLED, version="v2"), at(2026, 3, 2))  # an allocation
    for sql in (
        "update entries set points = '0'",
        "delete from entries",
        "update allocations set points = '0'",
        "delete from allocations",
        "delete from events",
        "delete from level_history",
    ):
        with pytest.raises(DBAPIError, match="insert-only"), db_engine.begin() as conn:
            conn.execute(text(sql))


def test_cards_are_valid_ean13_unique_and_never_reused(db_engine: Engine) -> None:
    eng = make(db_engine)
    for i in range(5):
        eng.apply_order(order(f"o{i}", f"c{i}", [line(100)]), at(2026, 3, 1))
    with db_engine.connect() as conn:
        numbers = list(conn.execute(text("select number from cards order by serial")).scalars())
    assert len(set(numbers)) == 5 and all(is_valid_ean13(n) and n.startswith("2990") for n in numbers)
    assert numbers[0] == "2990000000019"
    # A card removed by hand does not free its serial: the counter only moves on.
    with db_engine.begin() as conn:
        conn.execute(text("delete from cards where number = :n"), {"n": numbers[-1]})
    eng.apply_order(order("o9", "c9", [line(100)]), at(2026, 3, 1))
    with db_engine.connect() as conn:
        newest = conn.execute(text("select number from cards where customer_id = 'c9'")).scalar()
    assert newest not in numbers
    assert eng.resolve_customer(numbers[0]) == "c0"


def test_order_moved_to_another_customer_moves_its_effects(db_engine: Engine) -> None:
    eng = make(db_engine)
    o = order("x", "alice", [line(20000)])
    eng.apply_order(o, at(2026, 3, 1))
    eng.apply_order(replace(o, customer_id="bob", version="v2"), at(2026, 3, 2))
    a, b = eng.customer_view("alice", at(2026, 3, 2)), eng.customer_view("bob", at(2026, 3, 2))
    assert (a.total, a.volume) == (D(0), D(0))
    assert (b.total, b.volume) == (D(400), D(20000))


def test_hold_end_and_expiry_are_driven_by_tick(db_engine: Engine) -> None:
    eng = make(db_engine, discount=False)
    eng.apply_order(order("x", "c", [line(20000)]), at(2026, 3, 1))
    assert eng.tick(at(2026, 3, 10)) == []  # nothing due yet
    avail = eng.tick(at(2026, 3, 15, 12))
    assert [e.reason.value for a in avail for e in a.events] == ["points_available"]
    warn = eng.tick(at(2027, 2, 23, 12))
    assert [e.reason.value for a in warn for e in a.events] == ["points_expiring"]
    gone = eng.tick(at(2027, 3, 1, 12))
    assert [e.reason.value for a in gone for e in a.events] == ["points_expired"]
    v = eng.customer_view("c", at(2027, 3, 1, 12))
    assert (v.total, v.available) == (D(0), D(0))
    assert eng.tick(at(2027, 3, 2)) == []


def test_a_customer_whose_rules_break_does_not_stop_the_tick_for_others(
    db_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken invariant for one customer (simulated: ``advance`` raises for them) is reported
    with the customer's name; the others' points still become available; the broken one stays due."""
    from bridge.domain import apply as rules_apply

    eng = make(db_engine, discount=False)
    for customer in ("anna", "boris", "clara"):
        eng.apply_order(order(f"o-{customer}", customer, [line(20000)]), at(2026, 3, 1))
    real = rules_apply.advance

    def advance(book, rules, now, **kw):  # type: ignore[no-untyped-def]
        if book.customer_id == "boris":
            raise ValueError("reservation exceeds the lots")
        return real(book, rules, now, **kw)

    monkeypatch.setattr(rules_apply, "advance", advance)
    failures: list[str] = []
    done = eng.tick(at(2026, 3, 15, 12), failures)
    assert sorted(a.customer_id for a in done) == ["anna", "clara"]
    assert failures == [
        "customer boris (what time alone causes): the loyalty rules cannot apply it: "
        "reservation exceeds the lots"
    ]
    assert [e.reason.value for a in done for e in a.events] == ["points_available"] * 2
    monkeypatch.setattr(rules_apply, "advance", real)
    [again] = eng.tick(at(2026, 3, 15, 13))  # boris is still due (nothing of his was stored): retried
    assert again.customer_id == "boris" and [e.reason.value for e in again.events] == ["points_available"]


@pytest.mark.postgres
def test_two_writers_never_spend_the_same_point(pg_url: str) -> None:
    """Two orders of one customer each ask for all 400 points at the same moment: one wins."""
    from bridge.store.db import make_engine, upgrade

    engine = make_engine(pg_url)
    upgrade(engine)
    eng = make(engine, discount=False)
    eng.apply_order(order("earn", "c", [line(20000)]), at(2026, 3, 1))
    eng.tick(at(2026, 3, 16))
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def spend(oid: str) -> None:
        try:
            barrier.wait()
            eng.apply_order(
                order(oid, "c", [line(1000)], redeem=400, status=OrderStatus.OPEN), at(2026, 3, 16)
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=spend, args=(f"spend{i}",)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    views = [eng.order_view(f"spend{i}") for i in range(2)]
    spent = sorted(v.points_spent for v in views if v is not None)
    assert spent == [D(0), D(400)]
    assert eng.customer_view("c", at(2026, 3, 16)).total == D(0)
    engine.dispose()


def test_customers_due_at_the_same_moment_come_in_id_order(db_engine: Engine) -> None:
    """Ties in ``next_due_at`` (a whole batch closed in one cycle) come back in a fixed order on
    every database, not in the heap's or the index's insertion order."""
    eng = make(db_engine, discount=False)
    for customer in ("c-9", "c-1", "c-5", "c-3"):  # inserted out of order, all due at once
        eng.apply_order(order(f"o-{customer}", customer, [line(20000)]), at(2026, 3, 1))
    with eng.store.transaction() as conn:
        assert eng.store.due_customers(conn, at(2026, 3, 15, 12)) == ["c-1", "c-3", "c-5", "c-9"]


def test_the_history_tick_of_a_backfill_visits_every_imported_customer_due_or_not(db_engine: Engine) -> None:
    """A lot whose hold ended before the import makes nobody due (its moment is past): the
    end-of-backfill tick still records it as history, so no live «points available» about the past
    follows months later. An order that left the volume window before the import changes nothing
    to announce: the import judged the tier up to its moment (``tier_seen_at``), so the customer
    starts from the lowered tier, and no «tier changed» about the past follows either."""
    eng = make(db_engine, discount=False, volume_window_days=365)
    imported = at(2026, 5, 1)
    eng.apply_order(
        order("old", "c", [line(40000, group="sale")], date=at(2025, 2, 28)), imported, history=True
    )
    eng.apply_order(order("o", "c", [line(20000)], date=at(2026, 3, 1)), imported, history=True)
    done = eng.tick(imported, customers={"c"}, history=True)
    assert [(e.reason.value, e.key.split(":")[0]) for a in done for e in a.events] == [
        ("points_available", "available"),
    ]
    with db_engine.connect() as conn:
        live = conn.execute(
            text(
                "SELECT reason FROM events "
                "WHERE reason IN ('points_available', 'tier_changed') AND NOT history"
            )
        ).fetchall()
    assert live == []
    later = [e.reason.value for a in eng.tick(at(2026, 8, 28)) for e in a.events]
    assert "points_available" not in later and "tier_changed" not in later


def test_tier_seen_at_is_kept_with_the_book(db_engine: Engine) -> None:
    """The moment up to which a rolling window's fall was judged is stored with the customer in
    the same transaction as the unit's entries, and a tick moves it (migration 0009)."""
    eng = make(db_engine, discount=False, volume_window_days=365)
    eng.apply_order(order("o", "c", [line(40000, group="sale")]), at(2025, 3, 1))
    assert eng.book("c").tier_seen_at == at(2025, 3, 1)
    leaves = at(2025, 3, 1) + timedelta(days=365)
    done = eng.tick(leaves)
    assert [e.reason.value for a in done for e in a.events].count("tier_changed") == 1
    assert eng.book("c").tier_seen_at == leaves
    assert [e.reason.value for a in eng.tick(leaves + timedelta(days=1)) for e in a.events] == []
