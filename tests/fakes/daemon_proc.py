"""Drive ``daemon_script.py`` in a real subprocess: start it, wait for a line, signal it, collect output.

Also a fake ``$NOTIFY_SOCKET``: a real AF_UNIX datagram socket bound in a short temporary directory
(socket paths are limited to ~107 bytes, pytest's tmp_path can be longer).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("daemon_script.py")


class DaemonProcess:
    """``daemon_script.py`` running with ``args``; stdout lines are read as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        environ["PYTHONUNBUFFERED"] = "1"
        environ.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ,
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        self._err_thread = threading.Thread(target=self._pump_stderr, daemon=True)
        self._err_thread.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.extend(self.proc.stderr)

    def wait_for(self, text: str, timeout: float = 10) -> None:
        """Read stdout until a line equal to ``text`` (AssertionError on timeout or exit)."""
        deadline = time.monotonic() + timeout
        while text not in self.lines:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout} s; got {self.lines}") from None
            if line is None:
                raise AssertionError(f"exited before {text!r}; got {self.lines}; stderr {self.stderr}")
            self.lines.append(line)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 10) -> int:
        """Wait for the exit; drain stdout; return the exit status."""
        rc = self.proc.wait(timeout=timeout)
        while (line := self._queue.get(timeout=timeout)) is not None:
            self.lines.append(line)
        self._err_thread.join(timeout)
        return rc

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class NotifySocket:
    """A bound datagram socket standing in for systemd's; ``messages()`` returns what arrived."""

    def __init__(self, abstract: bool = False) -> None:
        self._dir = tempfile.mkdtemp(prefix="sdn", dir="/tmp" if os.path.isdir("/tmp") else None)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"loyalty-bridge-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind(b"\0" + name.encode())
            self.address = "@" + name
        else:
            self.address = os.path.join(self._dir, "notify.sock")
            self.sock.bind(self.address)
        self.received: list[str] = []

    def messages(self, wait: float = 0.0) -> list[str]:
        """Everything received so far (waiting up to ``wait`` s for the first new one)."""
        self.sock.settimeout(wait if wait > 0 else 0.0001)
        try:
            while True:
                self.received.append(self.sock.recv(4096).decode())
                self.sock.settimeout(0.0001)
        except (TimeoutError, BlockingIOError):
            pass
        return list(self.received)

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)
