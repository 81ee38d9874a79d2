"""Bad documents in a live cycle: each one is quarantined with the exact field and a reason naming
it, and every other document of the same cycle is applied as if the bad one were not there.

The translation rules themselves are unit-tested in tests/onec/test_translate.py
(``test_bad_data_names_document_and_field``); here the same data crosses real HTTP from the
simulator, through the scan, into the quarantine.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.simulator.schema import EMPTY_GUID
from tests.badinput.kit import (
    BIKE,
    GLOVES,
    ORDERS,
    at,
    earned,
    good_orders,
    number,
    outbox_rows,
    quarantined,
)
from tests.e2e.cycle_kit import World, world


def lines_with(w: World, order: str, **fields: Any) -> dict[str, Any]:
    row = w.store.get(ORDERS, order)
    assert row is not None
    return {"Товары": [{**row["Товары"][0], **fields}, *row["Товары"][1:]]}


# (case id, how to spoil a fresh order, the field named, text in the reason)
Spoil = Callable[[World, str], dict[str, Any]]
CASES: list[tuple[str, Spoil, str, str]] = [
    (
        "empty partner GUID, no card",
        lambda w, o: {"Партнер_Key": EMPTY_GUID},
        "Партнер_Key",
        "neither a partner nor a card",
    ),
    (
        "too many decimals",
        lambda w, o: lines_with(w, o, Сумма=Decimal("1200.005")),
        "Товары[1].Сумма",
        "more than 2 decimal",
    ),
    ("negative amount", lambda w, o: lines_with(w, o, Сумма=Decimal("-1200")), "Товары[1].Сумма", "negative"),
    (
        "fractional kopecks of quantity",
        lambda w, o: lines_with(w, o, Количество=Decimal("1.0005")),
        "Товары[1].Количество",
        "more than 3 decimal",
    ),
]


@pytest.mark.parametrize(("spoil", "field", "problem"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_new_order_is_quarantined_and_the_others_applied(
    tmp_path: Path, spoil: Spoil, field: str, problem: str
) -> None:
    with world(tmp_path, start=at(2)) as w:
        before = good_orders(w, 2)
        partner = w.op.partner("Плохой Документ", phone="+79035550000")
        bad = w.op.order(
            partner, [(GLOVES, 1, 1200)], date=at(2, 9, 30).replace(tzinfo=None), status="Закрыт"
        )
        w.store.patch(ORDERS, bad, spoil(w, bad), count=False)
        after = good_orders(w, 1, day=2)  # dated after the bad one: read later in the same pass
        result = w.once(at(2, 12))
        assert result.documents_failed == 1 and result.by_entity["order"] == 3
        q = quarantined(w)
        assert list(q) == [bad]
        assert q[bad]["field"] == field
        reason = q[bad]["reason"]
        assert reason.startswith(f"Заказ клиента № {number(w, bad)} ({bad}): {field}: ")
        assert problem in reason
        assert result.failures == [f"order {number(w, bad)}: {reason}"]
        for good in (*before, *after):
            assert earned(w, good) > 0
            assert w.order_attr(good, "Бонусы начислено") == earned(w, good)
        assert earned(w, bad) == 0 and w.order_attr(bad, "Бонусы начислено") is None


def test_a_huge_amount_is_refused_not_stored(tmp_path: Path) -> None:
    with world(tmp_path, start=at(2)) as w:
        goods = good_orders(w, 2)
        partner = w.op.partner("Огромная Сумма", phone="+79035550001")
        bad = w.op.order(
            partner, [(GLOVES, 1, 1200)], date=at(2, 9, 30).replace(tzinfo=None), status="Закрыт"
        )
        w.store.patch(ORDERS, bad, lines_with(w, bad, Сумма=Decimal("1E+30")), count=False)
        result = w.once(at(2, 12))
        assert [earned(w, g) > 0 for g in goods] == [True, True]
        q = quarantined(w)
        assert list(q) == [bad], result.failures
        assert q[bad]["field"] == "Товары[1].Сумма"
        assert "is too large for an amount: fix the document in 1C" in q[bad]["reason"]


def test_empty_date_after_processing_names_date(tmp_path: Path) -> None:
    """``0001-01-01`` can only reach a known order (the scan's date windows never contain it)."""
    with world(tmp_path, start=at(2)) as w:
        goods = good_orders(w, 2, closed=False)
        w.once(at(2, 12))
        w.store.patch(ORDERS, goods[0], {"Date": "0001-01-01T00:00:00"}, count=False)
        w.op.close(goods[1])
        result = w.once(at(2, 13))
        q = quarantined(w)
        assert list(q) == [goods[0]]
        assert q[goods[0]]["field"] == "Date" and "is empty (0001-01-01)" in q[goods[0]]["reason"]
        assert result.documents_failed == 1
        assert earned(w, goods[1]) > 0  # the other order of the cycle was closed and accrued


def test_an_applied_order_edited_into_a_bad_one_is_quarantined_once_not_every_cycle(tmp_path: Path) -> None:
    # Its last applied version is tracked, but the quarantined version wins: the failure is read
    # (and logged, and counted in `once`'s exit status) once, then again only when 1C changes it.
    with world(tmp_path, start=at(2)) as w:
        [order] = good_orders(w, 1)
        w.once(at(2, 12))
        row = w.store.get(ORDERS, order)
        assert row is not None
        w.store.patch(ORDERS, order, {"Товары": [{**row["Товары"][0], "Сумма": Decimal(-5)}]})
        assert w.once(at(2, 13)).documents_failed == 1
        quiet = [w.once(at(2, 13, minute)) for minute in range(1, 4)]
        assert [r.documents_failed for r in quiet] == [0, 0, 0]
        assert quarantined(w)[order]["failures"] == 1
        # An idle cycle's requests: the order's version is checked, the order itself not re-read.
        assert {r.requests_to_1c for r in quiet} == {w.once(at(2, 13, 5)).requests_to_1c}
        w.store.patch(ORDERS, order, {"Товары": row["Товары"]})  # fixed in 1C: a new version
        result = w.once(at(2, 14))
        assert (result.documents_failed, quarantined(w)) == (0, {})
        assert earned(w, order) > 0


def quarantine_then_fix(w: World) -> str:
    partner = w.op.partner("Исправленный Заказ", phone="+79035550002")
    bad = w.op.order(partner, [(BIKE, 1, 20000)], date=at(2, 9).replace(tzinfo=None), status="Закрыт")
    w.store.patch(ORDERS, bad, {"Партнер_Key": EMPTY_GUID}, count=False)
    w.once(at(2, 12))
    assert list(quarantined(w)) == [bad]
    w.store.patch(ORDERS, bad, {"Партнер_Key": partner}, count=False)  # the user fixes it in 1C
    return bad


def test_a_fixed_document_is_picked_up_by_the_nightly_sweep(tmp_path: Path) -> None:
    with world(tmp_path, start=at(2)) as w:
        bad = quarantine_then_fix(w)
        w.once(at(3, 4))  # past poll.reconcile_at (03:30)
        assert quarantined(w) == {}
        assert earned(w, bad) == Decimal(400)


def test_a_fixed_document_is_picked_up_by_the_next_cycle(tmp_path: Path) -> None:
    with world(tmp_path, start=at(2)) as w:
        bad = quarantine_then_fix(w)
        w.once(at(2, 13))
        assert quarantined(w) == {}
        assert earned(w, bad) == Decimal(400)


def test_a_customer_whose_time_rules_refuse_is_reported_not_quarantined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken invariant in what time alone causes (simulated for one customer) is a failure of the
    cycle, named, and held (tried again next cycle), not a quarantine; the other customer's points
    still become available, and ``once`` says which kind of failure each line is."""
    from bridge.cli import failure_lines
    from bridge.domain import apply as rules_apply

    with world(tmp_path, start=at(2)) as w:
        first, second = good_orders(w, 2)
        assert w.once(at(2, 12)).failures == []
        broken = w.store.get(ORDERS, first)["Партнер_Key"]  # type: ignore[index]
        real = rules_apply.advance

        def advance(book: Any, rules: Any, now: Any, **kw: Any) -> None:
            if book.customer_id == broken:
                raise ValueError("reservation exceeds the lots")
            real(book, rules, now, **kw)

        monkeypatch.setattr(rules_apply, "advance", advance)
        result = w.once(at(17, 12))  # the 14-day hold is over
        reason = f"customer {broken} (what time alone causes): the loyalty rules cannot apply it: "
        assert result.failures == result.held == [reason + "reservation exceeds the lots"]
        assert failure_lines(result) == [
            f"failed, tried again next cycle: {reason}reservation exceeds the lots"
        ]
        assert not quarantined(w)
        assert available_events(w, second) == 1 and available_events(w, first) == 0
        monkeypatch.setattr(rules_apply, "advance", real)
        assert w.once(at(17, 13)).failures == []
        assert available_events(w, first) == 1


def available_events(w: World, order: str) -> int:
    """``points_available`` events of the order's customer."""
    from sqlalchemy import func, select

    from bridge.store import schema as t

    customer = w.store.get(ORDERS, order)["Партнер_Key"]  # type: ignore[index]
    with w.cycle.engine.store.engine.connect() as conn:
        query = select(func.count()).where(
            t.events.c.customer_id == customer, t.events.c.reason == "points_available"
        )
        return int(conn.execute(query).scalar_one())


def test_the_daemons_gauges_count_what_waits_for_a_person(tmp_path: Path) -> None:
    # `run` feeds /metrics from these counts after every cycle: quarantined documents and dead
    # messages stay until someone acts, so an alert watches them (README: metrics).
    from datetime import UTC, datetime

    from bridge.service.runner import stats_of
    from bridge.store import outbox

    with world(tmp_path, start=at(2)) as w:
        good_orders(w, 1)
        partner = w.op.partner("Плохой Документ")
        bad = w.op.order(
            partner, [(GLOVES, 1, 1200)], date=at(2, 9, 30).replace(tzinfo=None), status="Закрыт"
        )
        w.store.patch(ORDERS, bad, {"Партнер_Key": EMPTY_GUID}, count=False)
        result = w.once(at(2, 12))
        stats = stats_of(w.cycle, result, datetime.now(UTC))
        assert (stats.quarantined_now, dict(stats.outbox_dead)) == (1, {})
        [first] = outbox_rows(w, "webhook")[:1]
        with w.cycle.engine.store.transaction() as conn:
            outbox.mark_dead(conn, first.id, "410 Gone")
        stats = stats_of(w.cycle, result, datetime.now(UTC))
        assert (stats.quarantined_now, dict(stats.outbox_dead)) == (1, {"webhook": 1})
