"""The daemon loop in-process: schedule, sd_notify promises, failures carried over, stop handling."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
import types
from collections.abc import Callable, Iterator

import pytest
import schedule
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from bridge.errors import ConfigError, ContractError, StateError, TransientError
from bridge.runtime.daemon import Daemon, run_once, status_line
from bridge.runtime.metrics import CycleStats, Metrics
from bridge.runtime.sdnotify import Notifier
from bridge.runtime.signals import StopRequested, StopToken
from tests.fakes.daemon_proc import NotifySocket

UTC = dt.UTC


class RecordingNotifier(Notifier):
    """A notifier that records every datagram and the thread that sent it (the fake systemd)."""

    def __init__(self, watchdog_usec: int | None = 40_000) -> None:
        env = {"WATCHDOG_USEC": str(watchdog_usec)} if watchdog_usec else {}
        super().__init__(address="/run/fake-notify", environ=env)
        self.sent: list[tuple[str, str]] = []

    def notify(self, *assignments: str) -> bool:
        self.sent.append(("\n".join(assignments), threading.current_thread().name))
        return True

    def texts(self) -> list[str]:
        return [text for text, _ in self.sent]


def stats(**kw: object) -> CycleStats:
    now = dt.datetime.now(UTC)
    return CycleStats(started_at=now, finished_at=now, **kw)  # type: ignore[arg-type]


def stopping_after(n: int, token: StopToken, body: Callable[[int], CycleStats] | None = None):
    calls: list[float] = []

    def cycle(t: StopToken) -> CycleStats:
        assert t is token
        calls.append(time.monotonic())
        try:
            return body(len(calls)) if body else stats(documents_processed=1)
        finally:
            if len(calls) >= n:
                token.request()

    return cycle, calls


@pytest.fixture
def token() -> Iterator[StopToken]:
    tok = StopToken()
    yield tok
    tok.close()


def test_ready_cycles_on_the_interval_status_and_stopping_on_a_real_socket(token: StopToken) -> None:
    systemd = NotifySocket()
    try:
        notifier = Notifier(environ={"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "100000"})
        cycle, calls = stopping_after(3, token)
        daemon = Daemon(cycle, interval_s=0.05, token=token, notifier=notifier)
        assert daemon.run() == 0
        messages = systemd.messages(wait=1)
    finally:
        systemd.close()
    assert len(calls) == 3
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(0.04 <= gap < 1 for gap in gaps), gaps
    assert messages[0] == "READY=1\nSTATUS=started; first cycle running"
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping"
    assert "WATCHDOG=1" in messages
    assert sum(m.startswith("STATUS=last cycle ") for m in messages) == 3


def test_watchdog_comes_only_from_the_loop_thread_also_during_a_long_cycle(token: StopToken) -> None:
    notifier = RecordingNotifier(watchdog_usec=40_000)  # ping every 10 ms at most
    from_thread: list[int] = []

    def body(n: int) -> CycleStats:
        start = len(notifier.sent)
        helper = threading.Thread(target=token.heartbeat, name="helper")
        helper.start()
        helper.join()
        for _ in range(10):  # a long cycle: units of work with a heartbeat each
            time.sleep(0.012)
            token.heartbeat()
        from_thread.append(sum(1 for t, _ in notifier.sent[start:] if t == "WATCHDOG=1"))
        return stats()

    cycle, _ = stopping_after(2, token, body)
    Daemon(cycle, interval_s=0.02, token=token, notifier=notifier).run()
    senders = {thread for text, thread in notifier.sent if text == "WATCHDOG=1"}
    assert senders == {threading.current_thread().name}
    assert all(count >= 5 for count in from_thread), from_thread


def test_a_failing_cycle_is_logged_with_context_and_the_next_tick_retries(token: StopToken) -> None:
    notifier = RecordingNotifier(watchdog_usec=None)
    metrics = Metrics(interval_s=0.02)

    def body(n: int) -> CycleStats:
        if n == 1:
            raise RuntimeError("a bug")
        if n == 2:
            raise TransientError("1C unreachable", url="http://1c/odata")
        if n == 3:
            raise ContractError(["Document_ЗаказКлиента has no field Статус (mapping: orders.status.field)"])
        return stats(documents_processed=2)

    cycle, calls = stopping_after(4, token, body)
    with capture_logs(processors=[merge_contextvars]) as logs:
        assert Daemon(cycle, interval_s=0.02, token=token, notifier=notifier, metrics=metrics).run() == 0
    assert len(calls) == 4
    failed = [e for e in logs if e["event"] == "cycle failed; retrying on the next tick"]
    assert [(e["cycle"], e["error_type"], e["log_level"]) for e in failed] == [
        (1, "RuntimeError", "error"),
        (2, "TransientError", "warning"),
        (3, "ContractError", "error"),  # 1C's OData lost a field: not fatal, it may come back
    ]
    assert failed[0].get("exc_info") is True and "exc_info" not in failed[1]  # no traceback per outage
    assert "exc_info" not in failed[2]  # nor for drift: the message says what to do
    assert failed[1]["details"] == "url=http://1c/odata"
    statuses = [t for t in notifier.texts() if t.startswith("STATUS=last cycle")]
    assert "failed: RuntimeError: a bug" in statuses[0]
    assert "failed (2 in a row): TransientError: 1C unreachable" in statuses[1]
    assert "failed (3 in a row): ContractError: 1C metadata does not match the mapping: " in statuses[2]
    assert statuses[3].endswith(": 2 documents, 0 failed")
    assert metrics.cycles.labels(result="failed")._value.get() == 3
    assert metrics.health()[0] is True


def test_config_error_ends_run_after_stopping(token: StopToken) -> None:
    notifier = RecordingNotifier(watchdog_usec=None)

    def cycle(t: StopToken) -> CycleStats:
        raise ConfigError(["onec.mapping: attribute 'Бонусы' not found; create it in 1C"])

    with pytest.raises(ConfigError), capture_logs() as logs:
        Daemon(cycle, interval_s=0.02, token=token, notifier=notifier).run()
    assert notifier.texts()[-1].startswith("STOPPING=1")
    assert any(e["event"] == "cycle failed; cannot go on" for e in logs)


def test_stop_requested_inside_the_cycle_ends_it_quietly(token: StopToken) -> None:
    done: list[int] = []

    def cycle(t: StopToken) -> CycleStats:
        for unit in range(5):
            t.check()
            done.append(unit)
            if unit == 1:
                t.request()  # as the first SIGTERM would, mid-unit
        return stats()

    notifier = RecordingNotifier(watchdog_usec=None)
    with capture_logs() as logs:
        assert Daemon(cycle, interval_s=0.02, token=token, notifier=notifier).run() == 0
    assert done == [0, 1]
    assert any(e["event"] == "cycle interrupted: stop requested" for e in logs)
    assert not any(t.startswith("STATUS=last cycle") for t in notifier.texts())


def test_a_stop_before_start_runs_no_cycle(token: StopToken) -> None:
    token.request()
    notifier = RecordingNotifier(watchdog_usec=None)
    calls: list[int] = []
    assert (
        Daemon(lambda t: calls.append(1) or stats(), interval_s=1, token=token, notifier=notifier).run() == 0
    )
    assert calls == []
    assert notifier.texts() == ["READY=1\nSTATUS=started; first cycle running", "STOPPING=1\nSTATUS=stopping"]


def test_the_next_poll_runs_on_time_when_the_wall_clock_goes_back(
    token: StopToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Shifted(dt.datetime):
        shift = dt.timedelta(0)

        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Shifted:  # type: ignore[override]
            return super().now(tz) + cls.shift

    monkeypatch.setattr(schedule, "datetime", types.SimpleNamespace(**{**vars(dt), "datetime": Shifted}))

    cycle, calls = stopping_after(3, token)
    daemon = Daemon(cycle, interval_s=0.05, token=token, notifier=RecordingNotifier(None))
    real_wait = token.wait

    def wait(timeout: float | None) -> bool:  # the job is scheduled; now NTP steps the clock back
        Shifted.shift = dt.timedelta(hours=-1)
        return real_wait(timeout)

    monkeypatch.setattr(token, "wait", wait)
    start = time.monotonic()
    watchdog = threading.Timer(5, token.request)  # without the guard the loop would wait an hour
    watchdog.start()
    try:
        assert daemon.run() == 0
    finally:
        watchdog.cancel()
    assert len(calls) == 3
    assert time.monotonic() - start < 3


def test_run_once_returns_the_stats_or_a_stopped_verdict(token: StopToken) -> None:
    with capture_logs() as logs:
        result = run_once(lambda t: stats(documents_processed=4), token)
    assert result.documents_processed == 4 and result.ok
    assert logs[-1]["event"] == "cycle done" and logs[-1]["documents"] == 4

    def stopped(t: StopToken) -> CycleStats:
        raise StopRequested("stop requested")

    result = run_once(stopped, token)
    assert not result.ok and result.error == "stopped before the end of the cycle"
    with pytest.raises(TransientError):
        run_once(lambda t: (_ for _ in ()).throw(TransientError("down")), token)


def test_status_line() -> None:
    at = dt.datetime(2026, 3, 1, 9, 0, 1, tzinfo=UTC)
    local = at.astimezone().strftime("%H:%M:%S")
    ok = CycleStats(
        started_at=at,
        finished_at=at,
        documents_processed=3,
        quarantined=1,
        deliveries_sent=2,
        outbox_depth={"webhook": 4, "sms": 1},
    )
    assert status_line(ok) == (
        f"last cycle {local}: 3 documents, 0 failed, 1 quarantined, 2 messages sent, 0 not, outbox 5 pending"
    )
    assert (
        status_line(CycleStats.failure(at, at, "boom"), 3) == f"last cycle {local} failed (3 in a row): boom"
    )


def test_interval_must_be_positive(token: StopToken) -> None:
    with pytest.raises(ValueError):
        Daemon(lambda t: stats(), interval_s=0, token=token)


def test_a_state_error_is_said_once_without_a_traceback_until_it_changes(token: StopToken) -> None:
    def body(n: int) -> CycleStats:
        if n <= 3:
            raise StateError("state database files not writable by user bridge: /var/lib/lb/state.db")
        if n == 4:
            raise StateError("state database files not writable by user bridge: /var/lib/lb/state.db.lock")
        return stats(documents_processed=1)

    cycle, _ = stopping_after(5, token, body)
    notifier = RecordingNotifier(watchdog_usec=None)
    with capture_logs(processors=[merge_contextvars]) as logs:
        assert Daemon(cycle, interval_s=0.01, token=token, notifier=notifier).run() == 0
    failed = [
        e for e in logs if e["event"] in ("cycle failed; retrying on the next tick", "cycle done with errors")
    ]
    assert [(e["cycle"], e["event"][:11], e["log_level"]) for e in failed] == [
        (1, "cycle faile", "error"),
        (1, "cycle done ", "warning"),
        (2, "cycle faile", "debug"),
        (2, "cycle done ", "debug"),
        (3, "cycle faile", "debug"),
        (3, "cycle done ", "debug"),
        (4, "cycle faile", "error"),  # another error: said again
        (4, "cycle done ", "warning"),
    ]
    assert not any("exc_info" in e for e in failed)
