"""`state.keep_sent_days`: delivered outbox messages are deleted after that many days, once a day,
and nothing the site or a customer sees changes because of it (real cycles against the simulator)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, update

from bridge.store import outbox
from bridge.store import schema as t
from bridge.store.db import make_engine
from tests.e2e.cycle_kit import MSK, World, world

BIKE = "Велосипед городской Forward Dortmund 28 2.0"


def at(m: int, d: int, h: int = 12) -> datetime:
    return datetime(2026, m, d, h, tzinfo=MSK)


def rows(w: World, before: datetime | None = None) -> dict[str, int]:
    """The outbox's rows by status (queued before ``before``, if given)."""
    engine = make_engine(w.config.state.url)
    query = select(t.outbox.c.status, func.count()).group_by(t.outbox.c.status)
    if before is not None:
        query = query.where(t.outbox.c.created_at < before)
    try:
        with engine.connect() as conn:
            counted = conn.execute(query)
            return {status: int(n) for status, n in counted}
    finally:
        engine.dispose()


def age_everything_sent(w: World, sent_at: datetime) -> None:
    engine = make_engine(w.config.state.url)
    try:
        with engine.begin() as conn:
            conn.execute(update(t.outbox).where(t.outbox.c.status == outbox.SENT).values(sent_at=sent_at))
    finally:
        engine.dispose()


def test_sent_messages_go_after_keep_sent_days_and_the_site_sees_no_difference(tmp_path: Path) -> None:
    with world(tmp_path, start=at(3, 1), discount=None, **{"state.keep_sent_days": 30}) as w:
        assert w.site is not None
        anna = w.op.partner("Анна Смирнова")
        w.op.order(anna, [(BIKE, 1, 20000)], date=at(3, 1, 10), status="Закрыт")
        first = w.once(at(3, 1))
        assert first.pruned == 0
        march = rows(w)
        assert set(march) == {outbox.SENT} and march[outbox.SENT] >= 3  # order, partner, card, webhook

        # A month and more later: a new order; everything sent in March is older than 30 days.
        w.op.order(anna, [(BIKE, 1, 10000)], date=at(4, 20, 10), status="Закрыт")
        april = w.once(at(4, 20))
        assert april.pruned == march[outbox.SENT]
        assert rows(w)[outbox.SENT] == sum(d.sent for d in april.deliveries.values())
        assert rows(w, before=at(4, 1)) == {}  # (an April write-back superseded in April stays)

        # The site's sequence goes on (it lives on the customer, not on the deleted rows) and the
        # last snapshot is right: 400 + 200 points, none of them sent twice.
        sequences = [d.sequence for d in w.site.effective if d.customer_id == anna]
        assert sequences == list(range(1, len(sequences) + 1))
        latest = w.site.latest(anna)
        assert latest is not None and latest["bonus"]["total"] == "600"
        assert len({d.webhook_id for d in w.site.effective}) == len(w.site.effective)


def test_pruning_runs_once_a_day_and_keeps_pending_and_dead_messages(tmp_path: Path) -> None:
    with world(tmp_path, start=at(3, 1), discount=None, **{"state.keep_sent_days": 30}) as w:
        assert w.site is not None
        anna = w.op.partner("Анна Смирнова")
        w.op.order(anna, [(BIKE, 1, 20000)], date=at(3, 1, 10), status="Закрыт")
        w.once(at(3, 1))
        sent = rows(w)[outbox.SENT]
        # The first cycle of the process pruned (nothing was old); the next day's cycle prunes
        # again, but an hour later nothing is looked at even though the rows are old by then.
        age_everything_sent(w, at(1, 1))
        assert w.once(at(3, 1, 13)).pruned == 0
        w.site.down()
        w.op.order(anna, [(BIKE, 1, 5000)], date=at(3, 1, 14), status="Закрыт")
        w.once(at(3, 1, 15))  # its webhook waits for the site
        pending = rows(w).get(outbox.PENDING, 0)
        assert pending >= 1
        assert w.once(at(3, 2, 12)).pruned == sent  # a day after the first cycle
        assert rows(w).get(outbox.PENDING, 0) == pending  # pending messages are never pruned
        w.site.up()
        w.once(at(3, 2, 13))
        assert rows(w).get(outbox.PENDING, 0) == 0


def test_null_keeps_every_message(tmp_path: Path) -> None:
    with world(tmp_path, start=at(3, 1), discount=None, **{"state.keep_sent_days": None}) as w:
        anna = w.op.partner("Анна Смирнова")
        w.op.order(anna, [(BIKE, 1, 20000)], date=at(3, 1, 10), status="Закрыт")
        w.once(at(3, 1))
        sent = rows(w)[outbox.SENT]
        age_everything_sent(w, at(1, 1))
        assert w.once(at(12, 1)).pruned == 0
        assert rows(w)[outbox.SENT] >= sent
