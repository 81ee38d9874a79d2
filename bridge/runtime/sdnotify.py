"""A tiny sd_notify client: tells systemd (``Type=notify``) we are ready, alive, stopping, and how we are.

Owns ``Notifier`` and ``watchdog_interval``. The protocol is one datagram of ``KEY=value`` lines sent
to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket).
Without the variable (a terminal, a test, another supervisor) every call is a no-op. A failed send is
logged once and otherwise ignored: the daemon must never die because systemd stopped listening.

Must not import anything of the bridge.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

__all__ = ["Notifier", "watchdog_interval"]


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """How often to send ``WATCHDOG=1``: half of ``$WATCHDOG_USEC`` in seconds, as sd_watchdog_enabled
    advises; None when the watchdog is off or meant for another process (``$WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "").strip()
    pid = env.get("WATCHDOG_PID", "").strip()
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


class Notifier:
    """Sends sd_notify datagrams; a no-op when ``$NOTIFY_SOCKET`` is unset.

    Args:
        address: the socket (path or ``@abstract``); default ``$NOTIFY_SOCKET``.
        environ: where to read ``NOTIFY_SOCKET`` / ``WATCHDOG_USEC`` (default ``os.environ``).
        log: a structlog logger for the one warning about a failed send (optional).
    """

    def __init__(
        self, address: str | None = None, *, environ: Mapping[str, str] | None = None, log: Any = None
    ) -> None:
        env = os.environ if environ is None else environ
        raw = address if address is not None else env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = _socket_address(raw)
        self._watchdog = watchdog_interval(env)
        self._log = log
        self._warned = False
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec``), None without a watchdog."""
        return self._watchdog if self.enabled else None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram. Returns True if it was sent."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            if not self._warned and self._log is not None:
                self._log.warning("sd_notify failed", error=str(exc), address=str(self._address))
            self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is over (systemd stops waiting and runs what depends on us)."""
        return self.notify("READY=1", *_status(status))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the main loop is alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: we are shutting down on purpose."""
        return self.notify("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        """``STATUS=...``: the one line ``systemctl status`` shows."""
        return self.notify(*_status(text))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(raw: str) -> str | bytes | None:
    raw = raw.strip()
    if not raw:
        return None
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()  # Linux abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # vsock and other forms are not ours to speak


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return ("STATUS=" + " ".join(text.split()),)  # one line: a newline would start a new assignment
