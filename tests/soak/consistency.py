"""What must hold across 1C, the site and the ledger after every cycle of the soak test.

``cycle_problems`` lists, one line each naming the moment, the customer or order and the field,
every difference between:

* a partner's loyalty attributes in 1C and the bridge's own view of the customer
  (``Engine.customer_view``, the very view the composer writes back);
* a tracked order's loyalty attributes in 1C and the bridge's ``order_view``;
* an open order's goods rows in 1C and the level discount SPEC §3 gives them (automatic percent
  ``max(0, level − manual)``, the whole discount the larger percent of the gross rounded once, the
  site's points still off the first row, the document total the sum of the rows);
* the site's latest snapshot of a customer and the snapshot the bridge would send now
  (``bridge.service.snapshot``) — but for the volume, the period sum and the amounts missing to
  the next tier and level, which README documents as "as of the snapshot's timestamp" (they fall
  by time alone unannounced): those must equal the view at the snapshot's moment, and no purchase
  of the customer may have changed since; the site's sequences per customer (1..n in arrival
  order) and its webhook-ids (acted on once, every call signed right);
* the cycle and the outbox: no document failed or quarantined, no message pending or dead (1C and
  the site are up), no finished message older than ``state.keep_sent_days`` and a day;
* every customer's balances (``tests.props.ledger_machine.book_problems``).

Reads the simulator's rows in place (``SimStore.row``: no copies) and the ledger through the
bridge's engine; changes nothing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select

from bridge.domain.book import Book
from bridge.domain.present import customer_view, order_view
from bridge.domain.views import CustomerView, OrderView
from bridge.service.cycle import CycleResult
from bridge.service.snapshot import snapshot_data
from bridge.simulator.operator import ORDERS, PARTNERS
from bridge.store import schema as t
from tests.e2e.cycle_kit import World
from tests.props.ledger_machine import book_problems

CENT = Decimal("0.01")
#: The partner's loyalty attributes (``mappings/ut11.yaml``) and how to read each off a view.
PARTNER_FIELDS: tuple[tuple[str, str], ...] = (
    ("Статус бонусной карты", "string"),
    ("Бонусы всего", "number"),
    ("Бонусы доступно", "number"),
    ("Объем покупок", "number"),
    ("Уровень клиента", "string"),
    ("Скидка уровня, %", "number"),
    ("Уровень действует до", "date"),
    ("Сумма покупок за период", "number"),
    ("До следующего уровня", "number"),
    ("История уровней", "string"),
)
#: Snapshot figures documented as "as of the snapshot's timestamp" (README, "The period sum").
AS_OF = (("bonus", "volume"), ("bonus", "next_tier"), ("discount", "period_sum"), ("discount", "next_level"))
ORDER_FIELDS: tuple[tuple[str, str], ...] = (
    ("Бонусы списано", "number"),
    ("Бонусы начислено", "number"),
    ("Бонусы доступны с", "date"),
    ("Выдать дисконтную карту", "boolean"),
    ("Лояльность: сообщение", "string"),
)


def partner_wanted(view: CustomerView) -> dict[str, Any]:
    """What 1C's partner attributes must show for ``view`` (SPEC §2, §3; ONEC.md's table)."""
    return {
        "Статус бонусной карты": view.tier.name if view.tier else "",
        "Бонусы всего": view.total,
        "Бонусы доступно": max(view.available, Decimal(0)),
        "Объем покупок": view.volume,
        "Уровень клиента": view.level.name if view.level else "",
        "Скидка уровня, %": view.level.percent if view.level else Decimal(0),
        "Уровень действует до": view.valid_until,
        "Сумма покупок за период": view.period_sum,
        "До следующего уровня": view.next_level_missing or Decimal(0),
        "История уровней": view.level_history_text,
    }


class Inspector:
    """Checks one installation (``World``) after each cycle; ``points(order)`` are the points the
    site took off the order's first row (the shop's record, for the discount check)."""

    def __init__(self, w: World, points: Callable[[str], Decimal]) -> None:
        self.w = w
        self.engine = w.cycle.engine
        self.rules = self.engine.rules
        self.tz: tzinfo = w.config.tz
        self.points = points
        self.keep_days = w.config.state.keep_sent_days
        store = w.store
        self.props = {
            str(r["Description"]): str(r["Ref_Key"])
            for r in store.snapshot(_PROPERTIES)
            if r.get("Description")
        }
        self.services = {
            str(r["Ref_Key"])
            for r in store.snapshot("Catalog_Номенклатура")
            if r.get("ТипНоменклатуры") == "Услуга"
        }
        self.checked = self.orders = self.discounted = 0  # cycles, orders, open orders at a level
        self.in_debt: set[str] = set()  # customers seen owing points (the report)
        self.refused: set[str] = set()  # orders seen with a loyalty message (a refused redemption)

    def cycle_problems(self, result: CycleResult, now: datetime, label: str) -> list[str]:
        """Every inconsistency after the cycle at ``now`` (``label`` names it in each line)."""
        self.checked += 1
        problems = [f"cycle failed a document: {f}" for f in result.failures]
        problems += self._outbox(now)
        orders_of, moved = self._orders_by_customer()
        for customer in sorted(orders_of):
            problems += self._customer(customer, orders_of[customer], now, moved)
        problems += self._site_sequences()
        return [f"{label}: {p}" for p in problems]

    # --- the state database -----------------------------------------------------------------------

    def _orders_by_customer(self) -> tuple[dict[str, list[str]], dict[str, datetime]]:
        """Each customer's orders, and when a unit of work last changed their purchases."""
        found: dict[str, list[str]] = defaultdict(list)
        e = t.entries.c
        with self.engine.store.engine.connect() as conn:
            for oid, cid in conn.execute(
                select(t.orders.c.id, t.orders.c.customer_id).order_by(t.orders.c.id)
            ):
                found[cid].append(oid)
            last = func.max(e.recorded_at, type_=t.UTCDateTime())
            query = select(e.customer_id, last).where(e.kind == "volume").group_by(e.customer_id)
            moved: dict[str, datetime] = {cid: at for cid, at in conn.execute(query)}
        return found, moved

    def _outbox(self, now: datetime) -> list[str]:
        problems = []
        o = t.outbox.c
        with self.engine.store.engine.connect() as conn:
            statuses = {
                status: n for status, n in conn.execute(select(o.status, func.count()).group_by(o.status))
            }
            quarantined = conn.execute(select(t.quarantine.c.doc_id, t.quarantine.c.reason)).all()
            if self.keep_days is not None:
                # Pruned once a day: nothing finished may be older than the retention and a day.
                before = now - timedelta(days=self.keep_days + 1)
                stale = conn.execute(
                    select(func.count()).where(
                        ((o.status == "sent") & (o.sent_at < before))
                        | ((o.status == "superseded") & (o.created_at < before))
                    )
                ).scalar_one()
                if stale:
                    problems.append(f"outbox: {stale} finished message(s) older than {before:%Y-%m-%d %H:%M}")
        for status in ("pending", "dead"):
            if statuses.get(status):
                problems.append(f"outbox: {statuses[status]} message(s) {status} after the cycle")
        problems += [f"quarantined {doc}: {reason}" for doc, reason in quarantined]
        return problems

    # --- one customer -------------------------------------------------------------------------------

    def _customer(
        self, customer: str, order_ids: list[str], now: datetime, moved: dict[str, datetime]
    ) -> list[str]:
        view = self.engine.customer_view(customer, now)
        book = self.engine.book(customer, tuple(order_ids))
        problems = [f"customer {customer}: ledger: {p}" for p in book_problems(book, now)]
        if book.debt > 0:
            self.in_debt.add(customer)
        if view.pending != view.total - view.available or min(view.available, view.pending) < 0:
            problems.append(f"customer {customer}: view {view.total} = {view.available} + {view.pending}?")
        partner = self.w.store.row(PARTNERS, customer)
        if partner is None:
            return [*problems, f"customer {customer}: no such partner in 1C"]
        have = self._attributes(partner)
        for (name, kind), want in zip(PARTNER_FIELDS, partner_wanted(view).values(), strict=True):
            if not self._same(kind, want, have.get(name)):
                problems.append(f"customer {customer}: 1C «{name}» = {have.get(name)!r}, bridge: {want!r}")
        problems += self._snapshot(customer, view, book, moved.get(customer))
        percent = view.level.percent if view.level else Decimal(0)
        for oid in order_ids:
            problems += self._order(oid, order_view(book, oid), percent)
        return problems

    def _snapshot(self, customer: str, view: CustomerView, book: Book, moved: datetime | None) -> list[str]:
        """The site's latest snapshot against the bridge's view. Volume, period sum and the amounts
        missing to the next tier and level are as of the snapshot's ``timestamp`` (README: they
        fall by time alone without a snapshot): those are compared with the view at that moment,
        and the purchases they sum must not have changed since (``moved``: the last change)."""
        latest = self.w.site.latest(customer) if self.w.site else None
        if latest is None:
            return [f"customer {customer}: the site has no snapshot"]
        sent = self._sent_at(customer, latest["sequence"])
        precision = self.rules.bonus.point_precision if self.rules.bonus else 0
        now_data = snapshot_data(view, self.tz, precision=precision)
        then = snapshot_data(customer_view(book, self.rules, sent, self.tz), self.tz, precision=precision)
        for program, name in AS_OF:
            if now_data.get(program) is not None and then.get(program) is not None:
                now_data[program][name] = then[program][name]
        got = {k: v for k, v in latest.items() if k not in ("sequence", "reasons")}
        about = f"(snapshot #{latest['sequence']} of {sent:%Y-%m-%d %H:%M}, {latest['reasons']})"
        problems = [
            f"customer {customer}: site snapshot {path} = {a!r}, bridge: {b!r} {about}"
            for path, a, b in _differences(got, now_data)
        ]
        if moved is not None and moved > sent:
            problems.append(
                f"customer {customer}: purchases changed at {moved.astimezone(self.tz):%Y-%m-%d %H:%M} "
                f"(volume {then['bonus'] and then['bonus']['volume']} -> {view.volume}, period sum "
                f"{then['discount'] and then['discount']['period_sum']} -> {view.period_sum}), the site "
                f"was not told {about}"
            )
        return problems

    def _sent_at(self, customer: str, sequence: int) -> datetime:
        """The cycle time the snapshot with ``sequence`` was made at (its body's ``timestamp``)."""
        assert self.w.site is not None
        for d in reversed(self.w.site.effective):
            if d.customer_id == customer and d.sequence == sequence:
                return datetime.fromisoformat(d.json["timestamp"])
        raise AssertionError(f"customer {customer}: snapshot #{sequence} is not among the site's")

    # --- one order ------------------------------------------------------------------------------------

    def _order(self, oid: str, view: OrderView, percent: Decimal) -> list[str]:
        row = self.w.store.row(ORDERS, oid)
        if row is None:
            return [f"order {oid}: gone from 1C"]
        number = row.get("Number")
        have = self._attributes(row)
        wanted = (view.points_spent, view.points_earned, view.available_from, view.issue_card, view.message)
        problems = [
            f"order {number} ({oid}): 1C «{name}» = {have.get(name)!r}, bridge: {want!r}"
            for (name, kind), want in zip(ORDER_FIELDS, wanted, strict=True)
            if not self._same(kind, want, have.get(name))
        ]
        goods = [line for line in row["Товары"] if str(line["Номенклатура_Key"]) not in self.services]
        cancelled = bool(goods) and all(line["Отменено"] for line in goods)
        self.orders += 1
        if view.message:
            self.refused.add(oid)
        if row["Статус"] != "Закрыт" and not row["DeletionMark"] and not cancelled:
            self.discounted += percent > 0
            problems += [f"order {number} ({oid}): {p}" for p in self._discount(row, percent)]
        return problems

    def _discount(self, row: dict[str, Any], percent: Decimal) -> list[str]:
        """SPEC §3 on an open order's goods rows at the customer's level ``percent``."""
        problems = []
        for i, line in enumerate(row["Товары"]):
            if line["Отменено"] or str(line["Номенклатура_Key"]) in self.services:
                continue
            gross = _money(line["Количество"] * line["Цена"])
            manual, manual_amount = line["ПроцентРучнойСкидки"], line["СуммаРучнойСкидки"]
            points = self.points(str(row["Ref_Key"])) if i == 0 else Decimal(0)
            auto = max(Decimal(0), percent - manual)
            auto_amount = Decimal(0)
            if percent > manual:
                room = gross - manual_amount - points
                auto_amount = min(room, _money(gross * percent / 100) - manual_amount)
            want = (auto, auto_amount, gross - manual_amount - auto_amount - points)
            got = (line["ПроцентАвтоматическойСкидки"], line["СуммаАвтоматическойСкидки"], line["Сумма"])
            if got != want:
                problems.append(
                    f"row {line['LineNumber']} at level {percent} %: (auto %, auto amount, amount) = "
                    f"{got}, SPEC §3: {want}"
                )
        total = sum((line["Сумма"] for line in row["Товары"] if not line["Отменено"]), Decimal(0))
        if row["СуммаДокумента"] != total:
            problems.append(f"СуммаДокумента {row['СуммаДокумента']} ≠ Σ rows {total}")
        return problems

    # --- the site -------------------------------------------------------------------------------------

    def _site_sequences(self) -> list[str]:
        site = self.w.site
        assert site is not None
        problems = []
        ok = Counter(d.webhook_id for d in site.deliveries if d.ok)
        problems += [f"webhook-id {w} acted on {n} times" for w, n in ok.items() if n > 1]
        problems += [
            f"webhook-id {d.webhook_id} failed verification" for d in site.deliveries if not d.verified
        ]
        sequences: dict[str, list[int]] = defaultdict(list)
        for d in site.effective:
            sequences[str(d.customer_id)].append(d.sequence or 0)
        for customer, seq in sequences.items():
            if seq != list(range(1, len(seq) + 1)):
                problems.append(
                    f"customer {customer}: the site's sequences are {_runs(seq)}, not 1..{len(seq)}"
                )
        return problems

    # --- reading 1C -----------------------------------------------------------------------------------

    def _attributes(self, row: Mapping[str, Any]) -> dict[str, Any]:
        by_key = {r["Свойство_Key"]: r["Значение"] for r in row.get("ДополнительныеРеквизиты") or ()}
        return {name: by_key.get(key) for name, key in self.props.items()}

    def _same(self, kind: str, want: Any, got: Any) -> bool:
        """1C's value against the bridge's (an absent attribute is the type's empty value)."""
        if kind == "number":
            return Decimal(str(got if got not in (None, "") else 0)) == Decimal(want or 0)
        if kind == "boolean":
            return bool(got) == bool(want)
        if kind == "date":
            if want is None:
                return got in (None, "")
            return isinstance(got, datetime) and got == want.astimezone(self.tz).replace(
                tzinfo=None, microsecond=0
            )
        return (got or "") == (want or "")


_PROPERTIES = "ChartOfCharacteristicTypes_ДополнительныеРеквизитыИСведения"


def _money(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def _differences(got: Any, want: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, got, want) for every leaf where two JSON-like values differ."""
    if isinstance(got, dict) and isinstance(want, dict):
        found = []
        for key in sorted(set(got) | set(want)):
            found += _differences(got.get(key), want.get(key), f"{path}.{key}" if path else key)
        return found
    return [] if got == want else [(path, got, want)]


def _runs(seq: list[int]) -> str:
    return ", ".join(map(str, seq[:12])) + (" …" if len(seq) > 12 else "")
