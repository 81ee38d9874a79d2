"""Human and JSON reports for the ``customer`` and ``quote`` commands."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from bridge.domain.accrual import BasketQuote
from bridge.domain.book import Book, Rules
from bridge.domain.money import money_str, points_str, ru_number
from bridge.domain.present import customer_view
from bridge.service.snapshot import iso, percent_str, snapshot_data


def _date(value: datetime | None, tz: tzinfo) -> str:
    return value.astimezone(tz).strftime("%d.%m.%Y") if value else "—"


def _lots(book: Book) -> list[Any]:
    return sorted(book.lots.values(), key=lambda lot: (lot.accrued_at, lot.id))


def customer_report(book: Book, rules: Rules, now: datetime, tz: tzinfo) -> str:
    v = customer_view(book, rules, now, tz)
    p = rules.bonus.point_precision if rules.bonus else 0
    out = [f"Customer {v.customer_id}  (as of {now.astimezone(tz):%d.%m.%Y %H:%M})"]
    out.append(f"  card          {v.card_number or '—'}" + (f" ({v.card_status})" if v.card_status else ""))
    if v.tier is not None:
        out.append("Bonus program")
        nxt = (
            f"; {ru_number(v.next_tier_missing, 2)} more to {v.next_tier.name}"
            if v.next_tier and v.next_tier_missing is not None
            else "; top tier"
        )
        out.append(f"  tier          {v.tier.name} ({v.tier.code}), volume {ru_number(v.volume, 2)}{nxt}")
        out.append(
            f"  points        total {points_str(v.total, p)}, available {points_str(v.available, p)}, "
            f"pending {points_str(v.pending, p)}"
            + (f" (next available {_date(v.next_available_at, tz)})" if v.next_available_at else "")
        )
        if v.debt:
            out.append(f"  debt          {points_str(v.debt, p)} (paid off first from the next accruals)")
        lots = _lots(book)
        if lots:
            out.append("  lots          accrued     available   expires     amount    left  order")
            for lot in lots:
                state = "expired" if lot.expires_at <= now else ""
                dates = (
                    f"{_date(lot.accrued_at, tz)}  {_date(lot.available_at, tz)}  {_date(lot.expires_at, tz)}"
                )
                figures = f"{points_str(lot.amount, p):>6}  {points_str(lot.remaining, p):>6}"
                out.append(f"                {dates}  {figures}  {lot.order_id} {state}".rstrip())
    if v.level is not None:
        out.append("Discount program")
        until = f", valid until {_date(v.valid_until, tz)}" if v.valid_until else ""
        out.append(f"  level         {v.level.name} ({percent_str(v.level.percent)} %){until}")
        nxt = (
            f"; {ru_number(v.next_level_missing, 2)} more to {v.next_level.name}"
            if v.next_level and v.next_level_missing is not None
            else "; top level"
        )
        out.append(f"  period sum    {ru_number(v.period_sum, 2)}{nxt}")
        if v.level_history_text:
            out.append("  history")
            out += [f"    {line}" for line in v.level_history_text.splitlines()]
    return "\n".join(out)


def customer_report_json(book: Book, rules: Rules, now: datetime, tz: tzinfo) -> dict[str, Any]:
    v = customer_view(book, rules, now, tz)
    p = rules.bonus.point_precision if rules.bonus else 0
    data = snapshot_data(v, tz, precision=p)
    data["as_of"] = iso(now, tz)
    if data["bonus"] is not None:
        data["bonus"]["debt"] = points_str(v.debt, p)
        data["bonus"]["lots"] = [
            {
                "order_id": lot.order_id,
                "accrued_at": iso(lot.accrued_at, tz),
                "available_at": iso(lot.available_at, tz),
                "expires_at": iso(lot.expires_at, tz),
                "amount": points_str(lot.amount, p),
                "remaining": points_str(lot.remaining, p),
            }
            for lot in _lots(book)
        ]
    if data["discount"] is not None:
        data["discount"]["history"] = [
            {
                "at": iso(h.at, tz),
                "old_level": h.old_code,
                "new_level": h.new_code,
                "period_sum": money_str(h.period_sum),
                "reason": h.reason.value,
                "order_id": h.order_id,
            }
            for h in reversed(book.level_history)
        ]
    return data


def quote_report(q: BasketQuote) -> str:
    out = ["tier                 points"]
    out += [f"{t.tier.name:<20} {points_str(t.points):>6}" for t in q.by_tier]
    out.append(f"guest: up to {points_str(q.up_to)} points")
    if q.customer_tier is not None and q.customer_points is not None:
        out.append(f"this customer ({q.customer_tier.name}): {points_str(q.customer_points)} points")
    return "\n".join(out)


def quote_report_json(q: BasketQuote) -> dict[str, Any]:
    return {
        "by_tier": [
            {"code": t.tier.code, "name": t.tier.name, "points": points_str(t.points)} for t in q.by_tier
        ],
        "guest_up_to": points_str(q.up_to),
        "customer": (
            {"tier": q.customer_tier.code, "points": points_str(q.customer_points)}
            if q.customer_tier is not None and q.customer_points is not None
            else None
        ),
    }
