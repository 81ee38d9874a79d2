"""Delivering 1C write-backs from a thread while the cycle still processes documents
(``BackgroundDelivery``, ``outbox.due(upto=, holding=)``): only what was durable when a pass began
leaves, a customer's messages stay in order, a held kind (partner write-backs) and everything of
its customer behind it wait for the cycle's own pass, and the thread's failure reaches the cycle."""

from __future__ import annotations

import random
import threading
import time

import pytest
from sqlalchemy import Engine

from bridge.service.delivery import BackgroundDelivery, deliver_channel
from bridge.store import outbox
from tests.site.site_kit import T0


def _add(engine: Engine, customer: str, kind: str, target: str) -> int:
    with engine.begin() as conn:
        outbox.enqueue_many(
            conn, [outbox.NewMessage("onec", kind, customer, {}, target=target, supersede=True)], T0
        )
        return outbox.last_id(conn)


def _due(engine: Engine, **kwargs: object) -> list[str]:
    with engine.connect() as conn:
        return [m.target or "" for m in outbox.due(conn, "onec", T0, 100, **kwargs)]  # type: ignore[arg-type]


def test_due_up_to_an_id_and_holding_a_kind(engine: Engine) -> None:
    _add(engine, "c1", "order", "o1")
    _add(engine, "c1", "partner", "c1")
    _add(engine, "c2", "partner", "c2")
    last_c2 = _add(engine, "c2", "order", "o2")
    _add(engine, "c3", "order", "o3")
    assert _due(engine) == ["o1", "c2", "o3"]  # every customer's head
    assert _due(engine, holding=("partner",)) == ["o1", "o3"]  # c2's head is held: nothing of c2
    assert _due(engine, upto=last_c2, holding=("partner",)) == ["o1"]  # o3 came after the bound
    assert _due(engine, upto=0) == []
    # c2's next document supersedes the held partner write-back: its order is the head now.
    _add(engine, "c2", "partner", "c2")
    assert _due(engine, holding=("partner",)) == ["o1", "o2", "o3"]
    with engine.connect() as conn:
        assert outbox.last_id(conn) == last_c2 + 2


def test_last_id_of_an_empty_outbox_is_zero(engine: Engine) -> None:
    with engine.connect() as conn:
        assert outbox.last_id(conn) == 0


def _background(
    engine: Engine, send: object, durable: object = lambda: None, **kwargs: object
) -> BackgroundDelivery:
    return BackgroundDelivery(
        "onec",
        engine.begin,
        send,  # type: ignore[arg-type]
        T0,
        max_age_hours=1,
        durable=durable,  # type: ignore[arg-type]
        holding=("partner",),
        interval_s=0.005,
        **kwargs,  # type: ignore[arg-type]
    )


def test_it_sends_what_is_committed_meanwhile_durable_first_in_order_holding_partners(engine: Engine) -> None:
    durable_upto = [0]
    sent: list[tuple[int, str, str]] = []

    def durable() -> None:
        with engine.connect() as conn:
            durable_upto[0] = outbox.last_id(conn)

    def send(msg: outbox.OutboxMessage) -> None:
        assert msg.id <= durable_upto[0], "a message left before the state behind it was durable"
        sent.append((msg.id, msg.customer_id, msg.kind))

    background = _background(engine, send, durable).start()
    # The cycle's documents: each customer's order write-back, then their partner write-back.
    for n in range(40):
        customer = f"c{n % 7}"
        _add(engine, customer, "order", f"o{n}")
        _add(engine, customer, "partner", customer)
        time.sleep(0.002)
    ahead = background.finish()
    assert ahead.sent == len(sent) > 0 and ahead.dead == ahead.retried == 0
    assert all(kind == "order" for _, _, kind in sent), "a partner write-back went out before the cycle's end"
    # The cycle's own pass afterwards sends the rest: every order once, one partner per customer.
    rest = []
    deliver_channel(
        "onec",
        engine.begin,
        lambda m: rest.append((m.id, m.customer_id, m.kind)),  # type: ignore[func-returns-value]
        T0,
        max_age_hours=1,
        rng=random.Random(1),
    )
    everything = sent + rest
    assert sorted(k for _, _, k in everything).count("order") == 40
    assert sorted(c for c, k in ((c, k) for _, c, k in everything) if k == "partner") == sorted(
        f"c{i}" for i in range(7)
    )
    for customer in {c for _, c, _ in everything}:  # one customer's messages went out in id order
        ids = [i for i, c, _ in everything if c == customer]
        assert ids == sorted(ids)


def test_the_threads_failure_reaches_the_cycle(engine: Engine) -> None:
    _add(engine, "c1", "order", "o1")

    def send(msg: outbox.OutboxMessage) -> None:
        raise RuntimeError("database went away")

    background = _background(engine, send).start()
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="went away"):
        background.finish()
    with engine.connect() as conn:
        assert [m.status for m in outbox.listing(conn, (outbox.PENDING,))] == [outbox.PENDING]


def test_abandon_only_logs_the_threads_failure(engine: Engine) -> None:
    _add(engine, "c1", "order", "o1")
    background = _background(engine, lambda m: 1 / 0).start()
    time.sleep(0.1)
    background.abandon()  # the cycle's own error is the one it raises


def test_a_stop_request_ends_the_thread_before_the_next_send(engine: Engine) -> None:
    for n in range(5):
        _add(engine, f"c{n}", "order", f"o{n}")
    stop = threading.Event()
    sent: list[int] = []

    def send(msg: outbox.OutboxMessage) -> None:
        sent.append(msg.id)
        stop.set()

    background = _background(engine, send, stop=stop.is_set).start()
    time.sleep(0.1)
    assert background.finish().sent == 1 and len(sent) == 1


def test_nothing_new_committed_no_pass(engine: Engine) -> None:
    passes = []
    background = _background(engine, lambda m: None, lambda: passes.append(1)).start()
    time.sleep(0.05)
    assert passes == []  # an empty outbox: not even the log is synced
    _add(engine, "c1", "order", "o1")
    time.sleep(0.05)
    assert background.finish().sent == 1 and len(passes) == 1
