"""sd_notify against a real AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from bridge.runtime.logging import get_logger
from bridge.runtime.sdnotify import Notifier, watchdog_interval
from tests.fakes.daemon_proc import DaemonProcess, NotifySocket


@pytest.fixture
def systemd() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier(environ={"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.status("x") is False


def test_exact_messages_on_a_path_socket(systemd: NotifySocket) -> None:
    notifier = Notifier(environ={"NOTIFY_SOCKET": systemd.address})
    assert notifier.enabled
    assert notifier.ready()
    assert notifier.watchdog()
    assert notifier.status("last cycle 12:00:01: 3 documents,\n0 failed")
    assert notifier.ready(status="up")
    assert notifier.stopping()
    notifier.close()
    assert systemd.messages(wait=1) == [
        "READY=1",
        "WATCHDOG=1",
        "STATUS=last cycle 12:00:01: 3 documents, 0 failed",  # a newline would start a new assignment
        "READY=1\nSTATUS=up",
        "STOPPING=1",
    ]


def test_abstract_socket_address() -> None:
    systemd = NotifySocket(abstract=True)
    try:
        assert systemd.address.startswith("@")
        notifier = Notifier(environ={"NOTIFY_SOCKET": systemd.address})
        assert notifier.watchdog()
        assert systemd.messages(wait=1) == ["WATCHDOG=1"]
    finally:
        systemd.close()


def test_a_relative_or_odd_address_is_ignored() -> None:
    assert not Notifier(environ={"NOTIFY_SOCKET": "relative.sock"}).enabled
    assert not Notifier(environ={"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    assert not Notifier(environ={"NOTIFY_SOCKET": "  "}).enabled


def test_a_send_that_fails_is_ignored_and_warned_about_once() -> None:
    with capture_logs() as logs:
        notifier = Notifier(address="/nonexistent-dir/notify.sock", log=get_logger())
        assert notifier.enabled
        assert notifier.ready() is False
        assert notifier.watchdog() is False
    assert [entry["event"] for entry in logs] == ["sd_notify failed"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_the_real_daemon_process_notifies_ready_watchdog_status_stopping(systemd: NotifySocket) -> None:
    proc = DaemonProcess(
        "--units", "1", "--unit-s", "0.01", "--interval", "0.1",
        env={"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"},
    )  # fmt: skip
    try:
        proc.wait_for("cycle 3 done")
        proc.signal(signal.SIGTERM)
        assert proc.finish() == 0, proc.stderr
    finally:
        proc.kill()
    messages = systemd.messages(wait=1)
    assert messages[0] == "READY=1\nSTATUS=started; first cycle running"
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping"
    assert "WATCHDOG=1" in messages
    statuses = [m for m in messages if m.startswith("STATUS=last cycle ")]
    assert len(statuses) >= 3
    assert statuses[0].endswith(": 1 documents, 0 failed")
