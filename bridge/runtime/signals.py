"""Two-stage shutdown: the ``StopToken`` a cycle checks between units of work, and the signal handlers.

First SIGTERM/SIGINT: the handler sets the token's flag and wakes ``StopToken.wait`` -- nothing else
(no logging, no I/O beyond one byte into a self-pipe, no locks), so it is safe at any bytecode. The
daemon finishes the unit of work in hand, sends ``STOPPING=1`` and returns 0.

Second signal: ``os._exit(128 + signum)`` at once (143 for SIGTERM, 130 for SIGINT), after one line on
stderr. Chosen over raising ``SystemExit`` because an exception raised at an arbitrary bytecode can be
swallowed by a broad ``except BaseException`` or stall in a ``finally`` that talks to a dead peer, and
"at once" must mean at once. Nothing is lost: a unit of work commits its ledger, outbox and cursor in
one transaction, so an interrupted one is rolled back by the database and redone by the next start;
a webhook cut mid-flight is re-sent with the same ``webhook-id``.

``StopToken.wait`` sleeps on a socket pair rather than ``threading.Event``: setting an Event from a
signal handler takes the Event's lock, which the interrupted main thread may itself be holding.

Must not import anything of the bridge.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

__all__ = ["StopRequested", "StopToken", "install"]

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class StopRequested(BaseException):
    """Raised by ``StopToken.check`` once a stop is requested.

    A ``BaseException`` on purpose, like ``KeyboardInterrupt``: a cycle's ``except Exception`` around
    one document must not swallow it, while ``with`` blocks still roll their transactions back.
    """


class StopToken:
    """A flag the signal handler sets, an interruptible sleep, and the watchdog heartbeat hook.

    Thread-safe; ``request`` may be called from a signal handler, another thread or a test.
    """

    def __init__(self) -> None:
        self._requested = False
        self.signum: int | None = None
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._heartbeat: Callable[[], None] | None = None

    @property
    def requested(self) -> bool:
        """True once a stop was requested (first signal, or ``request()``)."""
        return self._requested

    def request(self, signum: int | None = None) -> None:
        """Ask the daemon to stop after the unit of work in hand. Async-signal-safe."""
        if self.signum is None:
            self.signum = signum
        self._requested = True
        try:
            self._writer.send(b"\0")
        except OSError:  # buffer full (already woken many times) or closed: the flag is what counts
            pass

    def wait(self, timeout: float | None) -> bool:
        """Sleep up to ``timeout`` seconds (None: until stopped); return early when a stop is requested.

        Returns:
            True if a stop is requested (the caller should wind down), False if the time ran out.
        """
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while not self._requested:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                ready, _, _ = select.select([self._reader], [], [], left)
            except (OSError, ValueError):  # closed: fall back to a plain, short sleep
                time.sleep(min(left if left is not None else 0.1, 0.1))
                continue
            if ready:
                self._drain()
        return self._requested

    def check(self) -> None:
        """Call between units of work: pings the watchdog (if the daemon set a hook), then raises
        ``StopRequested`` if a stop was requested.

        Raises:
            StopRequested: a stop was requested; the unit in hand is finished, do not start another.
        """
        self.heartbeat()
        if self._requested:
            raise StopRequested(f"stop requested (signal {self.signum})" if self.signum else "stop requested")

    def heartbeat(self) -> None:
        """Tell the daemon the cycle is alive (``WATCHDOG=1`` when due). Cheap; call it often."""
        hook = self._heartbeat
        if hook is not None:
            hook()

    def set_heartbeat(self, hook: Callable[[], None] | None) -> None:
        """Install the function ``heartbeat``/``check`` call (the daemon does this)."""
        self._heartbeat = hook

    def close(self) -> None:
        """Release the wake-up sockets (the flag keeps working)."""
        self._reader.close()
        self._writer.close()

    def _drain(self) -> None:
        try:
            while self._reader.recv(512):
                pass
        except OSError:
            pass


def install(token: StopToken, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> Callable[[], None]:
    """Install the two-stage handlers for ``signals``; must be called from the main thread.

    Args:
        token: set on the first signal.
        signals: which signals stop the daemon (default SIGTERM and SIGINT).

    Returns:
        ``uninstall()``: puts the previous handlers back (call it when the daemon returns).
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("signal handlers can only be installed from the main thread")
    previous: dict[int, Handler] = {}
    received: list[int] = []  # signals seen by this installation (a plain append is signal-safe)

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) > 1:
            try:
                os.write(2, f"signal {signum} again: exiting at once\n".encode())
            finally:
                os._exit(128 + signum)
        token.request(signum)

    for signum in signals:
        previous[signum] = signal.signal(signum, handler)

    def uninstall() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
        previous.clear()

    return uninstall
