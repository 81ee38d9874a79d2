"""``deliver_channel(workers=N)``: a batch's messages are sent by N threads at once (the 1C
write-backs with ``onec.write_workers``), and everything said of the one-thread loop still holds:
one customer's messages go out one at a time and in order, every outcome is written by the calling
thread in its own transaction, ``stop`` ends the pass without losing what was already sent."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

import pytest
import structlog
from sqlalchemy import Connection, Engine

from bridge.errors import FatalHTTPError, TransientError
from bridge.service.delivery import Bookkeeping, DeliveryStats, deliver_channel
from bridge.store import outbox, tracking
from tests.site.site_kit import T0


def _enqueue(engine: Engine, customers: int, per_customer: int) -> None:
    with engine.begin() as conn:
        for n in range(per_customer):
            for c in range(customers):
                outbox.enqueue(
                    conn,
                    channel="onec",
                    kind="order",
                    customer_id=f"c{c}",
                    target=f"o{c}-{n}",
                    payload={"n": n},
                    now=T0,
                )


def _statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {
            m.target or "": m.status for m in outbox.listing(conn, (outbox.PENDING, outbox.SENT, outbox.DEAD))
        }


class Recorder:
    """A ``send`` that takes a little while, as a 1C round trip does, and checks it is never called
    twice at once for one customer; it remembers each customer's sends in order."""

    def __init__(self, delay: float = 0.003) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight: set[str] = set()
        self.most_at_once = 0
        self.sent: dict[str, list[int]] = defaultdict(list)
        self.threads: set[str] = set()
        self.overlap: list[str] = []

    def __call__(self, msg: outbox.OutboxMessage) -> Bookkeeping | None:
        with self.lock:
            if msg.customer_id in self.in_flight:
                self.overlap.append(msg.customer_id)
            self.in_flight.add(msg.customer_id)
            self.most_at_once = max(self.most_at_once, len(self.in_flight))
            self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        with self.lock:
            self.in_flight.discard(msg.customer_id)
            self.sent[msg.customer_id].append(int(msg.payload["n"]))
        return None


@pytest.mark.parametrize("workers", [1, 4])
def test_every_message_goes_out_once_in_per_customer_order(engine: Engine, workers: int) -> None:
    _enqueue(engine, customers=12, per_customer=3)
    send = Recorder()
    stats = deliver_channel("onec", engine.begin, send, T0, max_age_hours=1, workers=workers)
    assert stats == DeliveryStats(sent=36, requests=36)
    assert set(_statuses(engine).values()) == {outbox.SENT}
    assert send.sent == {f"c{c}": [0, 1, 2] for c in range(12)}  # each once, in order
    assert send.overlap == []  # never two of one customer's messages at once
    if workers == 1:
        assert send.most_at_once == 1 and send.threads == {threading.current_thread().name}
    else:
        assert 1 < send.most_at_once <= workers
        assert all(name.startswith("deliver-onec") for name in send.threads)


def test_outcomes_are_written_by_the_calling_thread(engine: Engine) -> None:
    """A sent message's bookkeeping, a retry, a dead message: each in its own transaction of the
    calling thread (the worker threads never touch the database)."""
    _enqueue(engine, customers=6, per_customer=1)
    caller = threading.current_thread()
    written_by: set[threading.Thread] = set()

    def send(msg: outbox.OutboxMessage) -> Bookkeeping | None:
        assert threading.current_thread() is not caller
        if msg.customer_id == "c1":
            raise TransientError("1C is busy")
        if msg.customer_id == "c2":
            raise FatalHTTPError("HTTP 400 from 1C", status=400)

        def remember(conn: Connection) -> None:
            written_by.add(threading.current_thread())
            tracking.set_cursor(conn, f"seen:{msg.target}", "yes", T0)

        return remember

    stats = deliver_channel("onec", engine.begin, send, T0, max_age_hours=1, rng=random.Random(1), workers=3)
    assert stats == DeliveryStats(sent=4, retried=1, dead=1, requests=6)
    assert written_by == {caller}
    statuses = _statuses(engine)
    assert statuses["o1-0"] == outbox.PENDING and statuses["o2-0"] == outbox.DEAD
    with engine.connect() as conn:
        assert [tracking.get_cursor(conn, f"seen:o{c}-0") for c in range(6)] == [
            "yes", None, None, "yes", "yes", "yes",
        ]  # fmt: skip


def test_a_failed_sends_bookkeeping_is_written_with_its_retry(engine: Engine) -> None:
    """What a failed write-back still produced (a card created before the patch failed) rides along
    with ``mark_retry``, in the calling thread."""
    _enqueue(engine, customers=3, per_customer=1)

    def send(msg: outbox.OutboxMessage) -> Bookkeeping | None:
        exc = TransientError("1C refused the second write")

        def remember(conn: Connection) -> None:
            tracking.set_cursor(conn, f"card:{msg.customer_id}", "created", T0)

        exc.bookkeeping = remember  # type: ignore[attr-defined]
        raise exc

    stats = deliver_channel("onec", engine.begin, send, T0, max_age_hours=1, rng=random.Random(1), workers=2)
    assert stats == DeliveryStats(retried=3, requests=3)
    with engine.connect() as conn:
        assert [tracking.get_cursor(conn, f"card:c{c}") for c in range(3)] == ["created"] * 3


def test_a_bug_in_a_worker_propagates_after_its_bookkeeping(engine: Engine) -> None:
    _enqueue(engine, customers=4, per_customer=1)

    def send(msg: outbox.OutboxMessage) -> Bookkeeping | None:
        if msg.customer_id == "c2":
            exc = KeyError("bug")

            def remember(conn: Connection) -> None:
                tracking.set_cursor(conn, "kept", "yes", T0)

            exc.bookkeeping = remember  # type: ignore[attr-defined]
            raise exc
        time.sleep(0.01)
        return None

    with pytest.raises(KeyError, match="bug"):
        deliver_channel("onec", engine.begin, send, T0, max_age_hours=1, workers=2)
    assert _statuses(engine)["o2-0"] == outbox.PENDING  # sent again next pass
    with engine.connect() as conn:
        assert tracking.get_cursor(conn, "kept") == "yes"
    assert not [t for t in threading.enumerate() if t.name.startswith("deliver-onec")]  # pool shut down


def test_stop_ends_the_pass_and_whatever_was_sent_is_marked(engine: Engine) -> None:
    _enqueue(engine, customers=20, per_customer=1)
    sent: list[str] = []
    lock = threading.Lock()

    def send(msg: outbox.OutboxMessage) -> Bookkeeping | None:
        time.sleep(0.002)
        with lock:
            sent.append(msg.target or "")
        return None

    def stop() -> bool:
        with lock:
            return len(sent) >= 5

    stats = deliver_channel("onec", engine.begin, send, T0, max_age_hours=1, stop=stop, workers=3)
    statuses = _statuses(engine)
    assert 5 <= stats.sent == len(sent) < 20  # the sends already under way when stop came finish
    assert sorted(t for t, s in statuses.items() if s == outbox.SENT) == sorted(sent)
    assert sum(s == outbox.PENDING for s in statuses.values()) == 20 - len(sent)


def test_the_callers_log_context_reaches_the_workers(engine: Engine) -> None:
    _enqueue(engine, customers=3, per_customer=1)
    seen: list[object] = []

    def send(msg: outbox.OutboxMessage) -> Bookkeeping | None:
        seen.append(structlog.contextvars.get_contextvars().get("cycle"))
        return None

    with structlog.contextvars.bound_contextvars(cycle="2026-03-01T10:00:00+03:00"):
        deliver_channel("onec", engine.begin, send, T0, max_age_hours=1, workers=3)
    assert seen == ["2026-03-01T10:00:00+03:00"] * 3


def test_workers_must_be_positive(engine: Engine) -> None:
    with pytest.raises(ValueError, match="workers"):
        deliver_channel("onec", engine.begin, lambda m: None, T0, max_age_hours=1, workers=0)


def test_never_more_than_workers_messages_sent_and_not_yet_recorded(engine: Engine) -> None:
    """What a crash would send again is bounded by ``workers``, however slow the writing of outcomes:
    a send waits for a slot, and a slot comes back only when an outcome is written."""
    _enqueue(engine, customers=30, per_customer=1)
    lock = threading.Lock()
    unrecorded = {"now": 0, "most": 0}

    def send(msg: outbox.OutboxMessage) -> Bookkeeping | None:
        with lock:
            unrecorded["now"] += 1
            unrecorded["most"] = max(unrecorded["most"], unrecorded["now"])

        def recorded(conn: Connection) -> None:
            time.sleep(0.004)  # the calling thread is slow to write outcomes; the sends are fast
            with lock:
                unrecorded["now"] -= 1

        return recorded

    stats = deliver_channel("onec", engine.begin, send, T0, max_age_hours=1, workers=3)
    assert stats.sent == 30
    assert unrecorded["most"] == 3
