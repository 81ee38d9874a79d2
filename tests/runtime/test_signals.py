"""Two-stage shutdown: the StopToken in-process, and SIGTERM/SIGINT sent to a real subprocess."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from bridge.runtime.signals import StopRequested, StopToken, install
from tests.fakes.daemon_proc import DaemonProcess


def test_wait_runs_out_when_nobody_stops() -> None:
    token = StopToken()
    start = time.monotonic()
    assert token.wait(0.05) is False
    assert 0.04 <= time.monotonic() - start < 1
    assert not token.requested


def test_wait_returns_early_when_a_stop_is_requested_from_another_thread() -> None:
    token = StopToken()
    threading.Timer(0.05, token.request).start()
    start = time.monotonic()
    assert token.wait(10) is True
    assert time.monotonic() - start < 2
    assert token.wait(10) is True  # stays set: a later sleep does not sleep
    assert token.wait(None) is True


def test_check_pings_the_heartbeat_then_raises_once_stopped() -> None:
    token = StopToken()
    beats: list[int] = []
    token.set_heartbeat(lambda: beats.append(1))
    token.check()
    token.heartbeat()
    assert beats == [1, 1]
    token.request(signal.SIGTERM)
    with pytest.raises(StopRequested, match="signal 15"):
        token.check()
    assert not isinstance(StopRequested(), Exception)  # an `except Exception` cannot swallow it


def test_first_signal_sets_the_flag_and_wakes_the_sleep_and_uninstall_restores() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    token = StopToken()
    uninstall = install(token)
    try:
        assert signal.getsignal(signal.SIGTERM) is not previous
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
        start = time.monotonic()
        assert token.wait(10) is True
        assert time.monotonic() - start < 2
        assert token.signum == signal.SIGTERM
    finally:
        uninstall()
    assert signal.getsignal(signal.SIGTERM) is previous
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_install_only_from_the_main_thread() -> None:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            install(StopToken())
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    assert errors and "main thread" in str(errors[0])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_cycle_finishes_the_unit_in_hand_and_exits_0(signum: int) -> None:
    proc = DaemonProcess("--units", "3", "--unit-s", "0.4", "--interval", "60")
    try:
        proc.wait_for("unit 1.1 start")
        proc.signal(signum)
        rc = proc.finish()
    finally:
        proc.kill()
    assert rc == 0, proc.stderr
    assert proc.lines == ["unit 1.1 start", "unit 1.1 stop-seen", "unit 1.1 done", "exit 0"]
    assert '"event": "cycle interrupted: stop requested"' in proc.stderr
    assert '"event": "daemon stopped"' in proc.stderr


def test_a_second_signal_exits_at_once() -> None:
    proc = DaemonProcess("--units", "3", "--unit-s", "30", "--interval", "60")
    try:
        proc.wait_for("unit 1.1 start")
        proc.signal(signal.SIGTERM)
        proc.wait_for("unit 1.1 stop-seen")  # the first one was handled: the flag is up
        start = time.monotonic()
        proc.signal(signal.SIGTERM)
        rc = proc.finish(timeout=5)
    finally:
        proc.kill()
    assert time.monotonic() - start < 3
    assert rc == 128 + signal.SIGTERM
    assert "unit 1.1 done" not in proc.lines
    assert "exiting at once" in proc.stderr


def test_signal_between_cycles_wakes_the_sleep_at_once() -> None:
    proc = DaemonProcess("--units", "1", "--unit-s", "0.01", "--interval", "3600")
    try:
        proc.wait_for("cycle 1 done")
        start = time.monotonic()
        proc.signal(signal.SIGTERM)
        rc = proc.finish()
    finally:
        proc.kill()
    assert rc == 0
    assert time.monotonic() - start < 3
    assert proc.lines[-1] == "exit 0"
