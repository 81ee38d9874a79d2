"""A Hypothesis state machine that plays 1C against the ledger and checks its invariants.

1C is modelled as a set of orders and returns whose versions change at random: orders open,
close, reopen, are cancelled, deleted, un-posted, edited, ask for points; returns arrive; time
jumps; and document versions already applied are applied again. After every step:

* available ≥ 0, available ≤ total, debt ≥ 0, for every customer;
* no lot has more allocated than it holds (remaining ≥ 0), nor a negative allocation total;
* no live point while a debt is open (every point that comes back pays the debt first);
* re-applying any document version already applied changes nothing;
* the ledger equals a fresh evaluation of the final 1C state: every order's accrual, reservation
  and volume contribution are recomputed here, independently, from the order as 1C now holds it
  (plus the decisions the bridge recorded: close time, earned tier, accepted redemption);
* the entries are only ever appended: every entry seen before is still there, unchanged;
* every write-off of a lot and every level history entry has its one event.

``Driver`` adapts the machine to the pure in-memory book or to the real database engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bridge.domain.book import Book
from bridge.domain.lots import available_at, total_at
from bridge.domain.model import ZERO, Order, OrderStatus, ReturnDoc, ReturnLine
from tests.domain.factories import at, bonus_rules, line, order

CUSTOMERS = ("anna", "boris", "vera")
PRODUCTS = (("p-bike", "bikes"), ("p-jacket", "apparel"), ("p-sale", "sale"), ("p-ship", None))
RATES = {t.code: t.rate for t in bonus_rules().tiers}
COEF = {"bikes": Decimal("1.0"), "apparel": Decimal("1.5"), "sale": Decimal(0)}


class Driver:
    """What the machine needs from a ledger implementation."""

    def apply_order(self, order: Order, now: datetime) -> int:  # number of entries posted
        raise NotImplementedError

    def apply_return(self, ret: ReturnDoc, now: datetime) -> int:
        raise NotImplementedError

    def tick(self, now: datetime) -> None:
        raise NotImplementedError

    def book(self, customer_id: str, order_ids: tuple[str, ...]) -> Book:
        raise NotImplementedError

    def entry_rows(self) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def expected_for(
    order: Order,
    returns: list[ReturnDoc],
    earned_tier: str | None,
    accepted: Decimal,
    *,
    rates: Mapping[str, Decimal] = RATES,
    coef: Mapping[str, Decimal] = COEF,
) -> tuple[Decimal, Decimal, Decimal]:
    """Independent fresh evaluation of one order: (reserved, volume contribution, accrual).

    ``rates`` (tier code -> rate) and ``coef`` (margin group -> coefficient, 1 for any other) are
    the machine's own unless a caller with other rules names them (``tests/soak``). Lines are
    taken as net of the redeemed points (``lines_net_of_points``)."""
    reserved = ZERO if order.voided else accepted
    if not order.counts:
        return reserved, ZERO, ZERO
    amounts: list[list[Any]] = [
        [ln.product_id, ln.amount, ln.group] for ln in order.lines if not ln.delivery and not ln.cancelled
    ]
    for ret in returns:
        if not (ret.posted and not ret.deleted):
            continue
        for rl in ret.lines:
            left = rl.amount
            for row in amounts:
                if row[0] == rl.product_id and left > 0 and row[1] > 0:
                    cut = min(left, row[1])
                    row[1] -= cut
                    left -= cut
    volume = sum((row[1] for row in amounts), ZERO)
    assert earned_tier is not None, f"order {order.id} counts but has no earned tier"
    raw = sum((row[1] * rates[earned_tier] * coef.get(row[2], Decimal(1)) for row in amounts), ZERO)
    return reserved, max(ZERO, volume), raw.quantize(Decimal(1), rounding=ROUND_FLOOR)


def book_problems(book: Book, now: datetime) -> list[str]:
    """What is wrong with a customer's balances at ``now`` (empty: nothing): available ≥ 0 and
    ≤ total, debt ≥ 0, no lot over-allocated or over-expired, no live point while a debt is open."""
    lots = list(book.lots.values())
    total, available = total_at(lots, now), available_at(lots, now)
    problems = []
    if not ZERO <= available <= total:
        problems.append(f"available {available} not within 0..total {total}")
    if book.debt < ZERO:
        problems.append(f"negative debt {book.debt}")
    for lot in lots:
        if not ZERO <= lot.allocated <= lot.amount:
            problems.append(f"lot {lot.id}: allocated {lot.allocated} not within 0..{lot.amount}")
        if not ZERO <= lot.expired <= lot.amount:
            problems.append(f"lot {lot.id}: expired {lot.expired} not within 0..{lot.amount}")
    # Debt is paid from every point that comes back (accruals, released reservations) before the
    # customer can spend it: no live point while a debt is open.
    if book.debt != ZERO and total != ZERO:
        problems.append(f"debt {book.debt} open while {total} points are live")
    return problems


class LedgerMachine(RuleBasedStateMachine):
    """Subclasses set ``make_driver``."""

    def make_driver(self) -> Driver:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.driver = self.make_driver()
        self.now = at(2026, 1, 1, 9)
        self.orders: dict[str, Order] = {}
        self.returns: dict[str, ReturnDoc] = {}
        self.applied: list[Order | ReturnDoc] = []
        self.seen_entries: list[tuple[Any, ...]] = []
        self.n = 0

    def teardown(self) -> None:
        self.driver.close()

    def _version(self) -> str:
        self.n += 1
        return f"v{self.n}"

    def _apply(self, o: Order) -> None:
        self.orders[o.id] = o
        self.driver.apply_order(o, self.now)
        self.applied.append(o)

    # --- 1C's users at work ---------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self.seen_entries = []

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        items=st.lists(
            st.tuples(st.sampled_from(PRODUCTS), st.integers(min_value=0, max_value=60000)),
            min_size=1,
            max_size=3,
        ),
        closed=st.booleans(),
        redeem=st.sampled_from([0, 0, 50, 300, 1000]),
    )
    def new_order(self, customer: str, items: list[Any], closed: bool, redeem: int) -> None:
        oid = f"o{len(self.orders) + 1}"
        lines = [
            line(
                amount,
                group=group,
                product=pid,
                line_no=i + 1,
                delivery=group is None,
            )
            for i, ((pid, group), amount) in enumerate(items)
        ]
        status = OrderStatus.CLOSED if closed else OrderStatus.OPEN
        self._apply(
            replace(
                order(oid, customer, lines, status=status, redeem=redeem, date=self.now),
                version=self._version(),
            )
        )

    @precondition(lambda self: self.orders)
    @rule(
        data=st.data(),
        change=st.sampled_from(
            ["close", "reopen", "cancel", "delete", "undelete", "unpost", "post", "redeem", "edit"]
        ),
    )
    def change_order(self, data: st.DataObject, change: str) -> None:
        o = self.orders[data.draw(st.sampled_from(sorted(self.orders)))]
        if change == "close":
            o = replace(o, status=OrderStatus.CLOSED)
        elif change == "reopen":
            o = replace(o, status=OrderStatus.OPEN)
        elif change == "cancel":
            o = replace(o, status=OrderStatus.CANCELLED)
        elif change == "delete":
            o = replace(o, deleted=True)
        elif change == "undelete":
            o = replace(o, deleted=False)
        elif change == "unpost":
            o = replace(o, posted=False)
        elif change == "post":
            o = replace(o, posted=True)
        elif change == "redeem":
            o = replace(o, redeem_requested=Decimal(data.draw(st.sampled_from([0, 10, 100, 400, 5000]))))
        else:
            new_amount = Decimal(data.draw(st.integers(min_value=0, max_value=60000)))
            o = replace(o, lines=(replace(o.lines[0], amount=new_amount), *o.lines[1:]))
        self._apply(replace(o, version=self._version()))

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), part=st.integers(min_value=1, max_value=30000), effective=st.booleans())
    def customer_return(self, data: st.DataObject, part: int, effective: bool) -> None:
        o = self.orders[data.draw(st.sampled_from(sorted(self.orders)))]
        rid = data.draw(st.sampled_from([f"r-{o.id}-1", f"r-{o.id}-2"]))
        product = o.lines[0].product_id
        ret = ReturnDoc(
            id=rid,
            version=self._version(),
            date=self.now,
            customer_id=o.customer_id,
            order_id=o.id,
            posted=effective,
            deleted=False,
            lines=(ReturnLine(product, Decimal(1), Decimal(part)),),
        )
        self.returns[rid] = ret
        self.driver.apply_return(ret, self.now)
        self.applied.append(ret)

    @rule(days=st.sampled_from([0, 1, 3, 13, 14, 15, 30, 200, 358, 366, 400]))
    def time_passes(self, days: int) -> None:
        self.now = self.now + timedelta(days=days, minutes=7)
        self.driver.tick(self.now)

    @precondition(lambda self: self.applied)
    @rule(data=st.data())
    def duplicate_application(self, data: st.DataObject) -> None:
        doc = data.draw(st.sampled_from(self.applied))
        before = self.driver.entry_rows()
        if isinstance(doc, Order):
            posted = self.driver.apply_order(doc, self.now)
        else:
            posted = self.driver.apply_return(doc, self.now)
        assert posted == 0, f"re-applying {doc.id}@{doc.version} posted {posted} entries"
        assert self.driver.entry_rows() == before

    # --- invariants -------------------------------------------------------------------------------

    def _books(self) -> dict[str, Book]:
        ids_by_customer: dict[str, list[str]] = {}
        for o in self.orders.values():
            ids_by_customer.setdefault(o.customer_id or "", []).append(o.id)
        return {c: self.driver.book(c, tuple(ids_by_customer.get(c, []))) for c in CUSTOMERS}

    @invariant()
    def balances_are_sane(self) -> None:
        for customer, book in self._books().items():
            problems = book_problems(book, self.now)
            assert not problems, (customer, problems)

    @invariant()
    def ledger_equals_fresh_evaluation_of_1c(self) -> None:
        for customer, book in self._books().items():
            for oid, facts in book.orders.items():
                o = self.orders[oid]
                rets = [r for r in self.returns.values() if r.order_id == oid]
                reserved, volume, accrued = expected_for(o, rets, facts.earned_tier, facts.redeem_accepted)
                contribution = book.contributions.get(oid)
                got = (
                    book.reserved_on(oid),
                    contribution.amount if contribution else ZERO,
                    book.accrued.get(oid, ZERO),
                )
                assert got == (reserved, volume, accrued), (
                    customer,
                    oid,
                    o,
                    got,
                    (reserved, volume, accrued),
                )

    @invariant()
    def every_write_off_and_level_change_is_announced_once(self) -> None:
        """One event per write-off of a lot (points given back after expiry are written off, and
        announced, again) and one per level history entry: none swallowed by another's key."""
        for customer, book in self._books().items():
            expired = sum(1 for k in book.sent_keys if k.startswith("expired:"))
            assert expired == sum(lot.write_offs for lot in book.lots.values()), (customer, book.lots)
            level = sum(1 for k in book.sent_keys if k.startswith("level:"))
            assert level == len(book.level_history), (customer, book.level_history)

    @invariant()
    def entries_are_append_only(self) -> None:
        rows = self.driver.entry_rows()
        assert rows[: len(self.seen_entries)] == self.seen_entries
        self.seen_entries = rows
