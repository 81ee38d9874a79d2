"""The soak test's independent oracle: every customer's state recomputed from 1C alone.

**What it takes from the live run.** Only 1C's documents: before every cycle, the rows of the
orders and returns 1C's users changed since the previous cycle ended (``Journal.before_cycle``:
a ``DataVersion`` other than the one the row had when the cycle before finished, so the bridge's
own write-backs are not taken for changes), each exactly as the simulator holds it, and the
cycle's clock. Those rows carry what 1C shows after the bridge's level discounts on open orders
(1C's data, checked against SPEC §3 after every cycle by ``consistency``), and nothing else of
the bridge's. The config's rules and the product catalog complete the input.

**What it recomputes.** A fresh ``Book`` per customer, built by the pure rules of
``bridge.domain`` alone: at every cycle's moment, in time order, ``advance`` for every customer
the pure ``next_due`` makes due by then (what the bridge's ``customers.next_due_at`` schedules:
the bridge advances only those too; a due moment the bridge missed shows up in 1C's or the
site's figures, which ``consistency`` compares with the view at every cycle), then
``apply_order`` / ``apply_return`` for each changed document, translated from its 1C row by this
module's own reading (status, rows, groups by product folder, delivery, the redeem attribute;
not the bridge's ``bridge.onec.translate``). Close times, the tier an order earned
at, redemption decisions, promotions, term ends, expiries and debts all follow from that replay;
none is read from the ledger. ``differences`` then compares, customer by customer, the replayed
book with the one the bridge rebuilds from its database: lots (amounts, allocations, write-offs,
dates), debt, every order's accrual, reservation, what its reversals took from other lots, its
volume contribution and facts (close time, earned tier, redemption decision and message), the
level state and history, the customer's whole view (tier, volume, points, level, period sum,
next thresholds) and the events told to the customer (reason, order, points; the card's
events aside: cards are the engine's, not the rules').

Replaying every *version* of each document rather than each order's final state at its close
time is what the rules ask for: SPEC makes several outcomes depend on the path — the tier an
order earned at is kept through later reversals of earlier orders, a redemption is decided when
the order is first seen, a promotion's term runs from the cycle that saw it, points spent before
a reversal become debt — so a replay of final states alone would differ from a correct ledger.
The path-independent part of "final state" is checked by ``final_state_problems``: per order,
``tests.props.ledger_machine.expected_for`` on 1C's final row and returns, given the close time,
earned tier and redemption decision the bridge recorded (which the replay verifies in turn); per
customer, volume and period sum as sums over those final amounts.

Must not read the state database except through ``differences``' and ``final_state_problems``'
``live`` argument.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from bridge.domain.apply import advance, apply_order, apply_return, next_due
from bridge.domain.book import Book, Rules
from bridge.domain.ledger import Reason
from bridge.domain.model import ZERO, Order, OrderLine, OrderStatus, ReturnDoc, ReturnLine
from bridge.domain.present import customer_view
from bridge.simulator.operator import ORDERS, PRODUCTS
from bridge.simulator.store import SimStore
from tests.props.ledger_machine import expected_for
from tests.soak.shop import RETURNS, SALES

CARD_REASONS = {Reason.CARD_CREATED.value, Reason.CARD_ISSUED.value}


@dataclass
class Journal:
    """1C's changed documents before each cycle: ``cycles`` holds (the cycle's clock, [(set, row)])."""

    store: SimStore
    cycles: list[tuple[datetime, list[tuple[str, dict[str, Any]]]]] = field(default_factory=list)
    _seen: dict[str, str] = field(default_factory=dict)  # Ref_Key -> DataVersion after the last cycle

    def before_cycle(self, now: datetime) -> int:
        """Record what 1C's users changed since the last cycle; returns how many documents."""
        changed = [
            (entity_set, copy.deepcopy(row))
            for entity_set in (ORDERS, RETURNS)
            for row in self.store.snapshot(entity_set)
            if self._seen.get(row["Ref_Key"]) != row["DataVersion"]
        ]
        self.cycles.append((now, changed))
        return len(changed)

    def after_cycle(self) -> None:
        """Remember the versions the cycle left (the bridge's own write-backs included)."""
        for entity_set in (ORDERS, RETURNS):
            for row in self.store.snapshot(entity_set):
                self._seen[row["Ref_Key"]] = row["DataVersion"]


class Reading:
    """This module's own reading of 1C's rows into the domain's documents."""

    def __init__(self, store: SimStore, rules: Rules, delivery_products: Iterable[str], tz: tzinfo) -> None:
        self.tz = tz
        rows = {str(r["Ref_Key"]): r for r in store.snapshot(PRODUCTS)}
        groups = rules.bonus.groups if rules.bonus else {}
        delivery = set(delivery_products)
        self.group: dict[str, str | None] = {}
        self.delivery: dict[str, bool] = {}
        for key, row in rows.items():
            if row.get("IsFolder"):
                continue
            self.delivery[key] = row.get("ТипНоменклатуры") == "Услуга" or row.get("Description") in delivery
            parent, group = row.get("Parent_Key"), None
            while parent in rows and group is None:  # the nearest folder up that has a coefficient
                folder = rows[str(parent)]
                group = folder["Description"] if folder["Description"] in groups else None
                parent = folder.get("Parent_Key")
            self.group[key] = group
        self.redeem = store.property_key("Бонусы к списанию")
        self.sales = {str(r["Ref_Key"]): str(r["ЗаказКлиента"]) for r in store.snapshot(SALES)}

    def order(self, row: Mapping[str, Any]) -> Order:
        lines = tuple(
            OrderLine(
                line_no=int(r["LineNumber"]),
                product_id=str(r["Номенклатура_Key"]),
                quantity=Decimal(str(r["Количество"])),
                amount=Decimal(str(r["Сумма"])),
                price=Decimal(str(r["Цена"])),
                group=self.group[str(r["Номенклатура_Key"])],
                delivery=self.delivery[str(r["Номенклатура_Key"])],
                manual_discount_percent=Decimal(str(r["ПроцентРучнойСкидки"])),
                manual_discount_amount=Decimal(str(r["СуммаРучнойСкидки"])),
                auto_discount_percent=Decimal(str(r["ПроцентАвтоматическойСкидки"])),
                auto_discount_amount=Decimal(str(r["СуммаАвтоматическойСкидки"])),
                cancelled=bool(r["Отменено"]),
            )
            for r in row["Товары"]
        )
        goods = [line for line in lines if not line.delivery]
        if goods and all(line.cancelled for line in goods):
            status = OrderStatus.CANCELLED
        else:
            status = OrderStatus.CLOSED if row["Статус"] == "Закрыт" else OrderStatus.OPEN
        redeem = next(
            (r["Значение"] for r in row["ДополнительныеРеквизиты"] if r["Свойство_Key"] == self.redeem), 0
        )
        return Order(
            id=str(row["Ref_Key"]),
            version=str(row["DataVersion"]),
            number=str(row["Number"]),
            date=row["Date"].replace(tzinfo=self.tz),
            customer_id=str(row["Партнер_Key"]),
            status=status,
            posted=bool(row["Posted"]),
            deleted=bool(row["DeletionMark"]),
            lines=lines,
            redeem_requested=Decimal(str(redeem)),
            document_total=Decimal(str(row["СуммаДокумента"])),
        )

    def return_doc(self, row: Mapping[str, Any]) -> ReturnDoc:
        return ReturnDoc(
            id=str(row["Ref_Key"]),
            version=str(row["DataVersion"]),
            date=row["Date"].replace(tzinfo=self.tz),
            customer_id=str(row["Партнер_Key"]),
            order_id=self.sales[str(row["ДокументРеализации"])],
            posted=bool(row["Posted"]),
            deleted=bool(row["DeletionMark"]),
            lines=tuple(
                ReturnLine(
                    str(r["Номенклатура_Key"]), Decimal(str(r["Количество"])), Decimal(str(r["Сумма"]))
                )
                for r in row["Товары"]
            ),
        )


@dataclass
class Replayed:
    """The oracle's books and the events each customer was told about (reason, order, points)."""

    books: dict[str, Book]
    events: dict[str, Counter[tuple[str, str | None, Decimal | None]]]


def replay(journal: Journal, reading: Reading, rules: Rules) -> Replayed:
    """The journal through the pure rules, from nothing (see the module docstring)."""
    books: dict[str, Book] = {}
    events: dict[str, Counter[tuple[str, str | None, Decimal | None]]] = {}
    owner: dict[str, str] = {}  # order -> customer

    due: dict[str, datetime | None] = {}  # customer -> when time alone next changes the book

    def keep(book: Book, now: datetime) -> None:
        told = events.setdefault(book.customer_id, Counter())
        told.update(_event(e.reason.value, e.order_id, e.points) for e in book.new_events)
        book.new_entries.clear()
        book.new_events.clear()
        book.new_history.clear()
        due[book.customer_id] = next_due(book, rules, now)

    for now, docs in journal.cycles:
        for customer, book in books.items():
            when = due.get(customer)
            if when is not None and when <= now:
                advance(book, rules, now)
                keep(book, now)
        for entity_set, row in docs:
            if entity_set == ORDERS:
                order = reading.order(row)
                assert order.customer_id is not None
                owner[order.id] = order.customer_id
                book = books.setdefault(order.customer_id, Book(order.customer_id))
                apply_order(book, rules, order, now, tz=reading.tz)
            else:
                ret = reading.return_doc(row)
                holder = owner.get(ret.order_id or "") or ret.customer_id
                assert holder is not None
                book = books.setdefault(holder, Book(holder))
                apply_return(book, rules, ret, now, tz=reading.tz)
            keep(book, now)
    return Replayed(books, events)


def _event(
    reason: str, order_id: str | None, points: Decimal | None
) -> tuple[str, str | None, Decimal | None]:
    return reason, order_id, points.normalize() if points is not None else None


def portrait(book: Book, rules: Rules, now: datetime, tz: tzinfo) -> dict[str, Any]:
    """A book as plain comparable data (Decimals compare by value, times by instant)."""
    view = asdict(customer_view(book, rules, now, tz))
    for name in ("card_number", "card_status", "at"):
        view.pop(name)
    level = book.level
    return {
        "debt": book.debt,
        "lots": {
            lot.id: {
                "amount": lot.amount,
                "allocated": lot.allocated,
                "expired": lot.expired,
                "unexpired": lot.unexpired,
                "write_offs": lot.write_offs,
                "accrued_at": lot.accrued_at,
                "available_at": lot.available_at,
                "expires_at": lot.expires_at,
            }
            for lot in book.lots.values()
        },
        "accrued": {k: v for k, v in book.accrued.items() if v},
        "reserved": {k: v for k, v in book.reserved.items() if v},
        "taken": {k: v for k, v in book.taken.items() if v},
        "contributions": {k: (c.closed_at, c.amount) for k, c in book.contributions.items() if c.amount},
        "facts": {
            oid: {
                "close_time": f.close_time,
                "earned_tier": f.earned_tier,
                "redeem_decided": f.redeem_decided,
                "redeem_requested": f.redeem_requested,
                "redeem_accepted": f.redeem_accepted,
                "message": f.message,
            }
            for oid, f in book.orders.items()
        },
        "level": (level.level_code, level.valid_until, level.since, level.promoted_by) if level else None,
        "history": [
            (h.at, h.old_code, h.new_code, h.period_sum, h.reason.value, h.order_id)
            for h in book.level_history
        ],
        "view": view,
    }


def differences(
    replayed: Replayed,
    live: Callable[[str], tuple[Book, Counter[tuple[str, str | None, Decimal | None]]]],
    live_customers: Iterable[str],
    rules: Rules,
    now: datetime,
    tz: tzinfo,
) -> list[str]:
    """Every difference between the replay and the live ledger, one line each. ``live(customer)``
    gives the bridge's book (with every order's facts) and the events it recorded."""
    problems = []
    customers = sorted(set(replayed.books) | set(live_customers))
    for customer in customers:
        mine = replayed.books.get(customer)
        if mine is None:
            problems.append(f"customer {customer}: in the ledger, but 1C's documents name no order of theirs")
            continue
        book, told = live(customer)
        want, got = portrait(mine, rules, now, tz), portrait(book, rules, now, tz)
        for part in want:
            if want[part] != got[part]:
                problems.append(f"customer {customer}: {part}: {_explain(got[part], want[part])}")
        theirs = Counter(e for e in told.elements() if e[0] not in CARD_REASONS)
        if theirs != replayed.events.get(customer, Counter()):
            extra = theirs - replayed.events.get(customer, Counter())
            missing = replayed.events.get(customer, Counter()) - theirs
            problems.append(
                f"customer {customer}: events: the bridge told {dict(extra)} beyond the replay, "
                f"and not {dict(missing)}"
            )
    return problems


def _explain(got: Any, want: Any) -> str:
    """The bridge's value against the replay's, narrowed to the keys that differ."""
    if isinstance(got, dict) and isinstance(want, dict):
        keys = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        shown = {k: (got.get(k, "—"), want.get(k, "—")) for k in keys[:4]}
        more = f" (+{len(keys) - 4} more)" if len(keys) > 4 else ""
        return f"(bridge, replay) by key: {shown}{more}"
    return f"bridge {got!r}, replay {want!r}"


def final_state_problems(
    store: SimStore,
    reading: Reading,
    live: Callable[[str], Book],
    live_customers: Iterable[str],
    rules: Rules,
    now: datetime,
) -> list[str]:
    """SPEC's figures from each order's final state in 1C (see the module docstring)."""
    assert rules.bonus is not None and rules.discount is not None
    bonus, discount = rules.bonus, rules.discount
    rates = {tier.code: tier.rate for tier in bonus.tiers}
    returns: dict[str, list[ReturnDoc]] = {}
    for row in store.snapshot(RETURNS):
        ret = reading.return_doc(row)
        returns.setdefault(ret.order_id or "", []).append(ret)
    problems = []
    for customer in sorted(live_customers):
        book = live(customer)
        volume = period = ZERO
        for oid, facts in book.orders.items():
            final = store.row(ORDERS, oid)
            assert final is not None
            order = reading.order(final)
            expected = expected_for(
                order,
                returns.get(oid, []),
                facts.earned_tier,
                facts.redeem_accepted,
                rates=rates,
                coef=bonus.groups,
            )
            contribution = book.contributions.get(oid)
            got = (
                book.reserved_on(oid),
                contribution.amount if contribution else ZERO,
                book.accrued.get(oid, ZERO),
            )
            if got != expected:
                problems.append(
                    f"order {order.number} ({oid}) of {customer}: (reserved, volume, accrued) = {got}, "
                    f"its final state in 1C gives {expected}"
                )
            if expected[1] and facts.close_time is not None:
                volume += _within(facts.close_time, now, bonus.volume_window_days, expected[1])
                period += _within(facts.close_time, now, discount.period_days, expected[1])
        view = customer_view(book, rules, now, reading.tz)
        if (view.volume, view.period_sum) != (volume, period):
            problems.append(
                f"customer {customer}: (volume, period sum) = {(view.volume, view.period_sum)}, "
                f"the final states give {(volume, period)}"
            )
        tier = max((t for t in bonus.tiers if t.threshold <= volume), key=lambda t: t.threshold)
        if view.tier is None or view.tier.code != tier.code:
            problems.append(f"customer {customer}: tier {view.tier}, volume {volume} gives {tier.code}")
    return problems


def _within(closed: datetime, now: datetime, days: int | None, amount: Decimal) -> Decimal:
    """``amount`` if an order closed at ``closed`` is in the window ``(now − days, now]``."""
    if closed > now or (days is not None and closed <= now - timedelta(days=days)):
        return ZERO
    return amount
