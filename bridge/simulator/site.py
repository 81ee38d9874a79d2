"""``SiteReceiver``: a store website's webhook endpoint on loopback, as a careful site would write it.

Verifies every call per Standard Webhooks — with the ``standardwebhooks`` package when installed
(the very library site developers use), else with the few lines of its algorithm below — answers
401 to a bad signature, treats ``webhook-id`` as the idempotency key, and keeps per customer the
snapshot with the highest ``sequence`` (an older one arriving late is acknowledged and dropped).
Records every call. Fault modes: ``down`` (503), ``status`` (any code for N calls),
``retry_after`` (a ``Retry-After`` header on errors), ``delay`` (a slow site), ``reset``.

Used by the ``demo`` command and the end-to-end tests. Must not import anything of the bridge
outside ``bridge.simulator`` (it checks the bridge, so it cannot share its code).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["Delivery", "SiteReceiver"]

TOLERANCE_S = 300  # Standard Webhooks: reject timestamps more than 5 minutes off


@dataclass(frozen=True, slots=True)
class Delivery:
    """One call the site received, whatever it answered."""

    webhook_id: str
    timestamp: int | None  # the webhook-timestamp header
    signature: str
    body: bytes  # the raw bytes, exactly as received
    json: Any  # the parsed body (None when it was not JSON)
    verified: bool
    status: int  # what the site answered
    attempt: int  # 1 for the first call with this webhook-id, 2 for the next...
    received_at: float  # real Unix time
    content_type: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def customer_id(self) -> str | None:
        try:
            return str(self.json["data"]["customer"]["id"])
        except (TypeError, KeyError):
            return None

    @property
    def sequence(self) -> int | None:
        try:
            return int(self.json["data"]["sequence"])
        except (TypeError, KeyError, ValueError):
            return None


def _key(secret: str) -> bytes:
    text = secret.strip().removeprefix("whsec_")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""


def _own_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    header = headers.get("webhook-signature", "")
    if not (msg_id and stamp.isdigit() and header):
        return False
    if abs(time.time() - int(stamp)) > TOLERANCE_S:
        return False
    digest = hmac.new(_key(secret), f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    for item in header.split():
        version, _, value = item.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode("ascii", "replace"), expected):
            return True
    return False


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    try:
        from standardwebhooks.webhooks import Webhook
    except ImportError:
        return _own_verify(secret, headers, body)
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except Exception:  # a bad signature or a malformed header: not verified
        return False
    return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    receiver: SiteReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout test) is not an error of the site


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes; without this Nagle + delayed ACK add ~40 ms a call
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, reply = self.server.receiver._handle(headers, body)
        try:
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        self.send_error(405)


class SiteReceiver:
    """The store's website, receiving ``customer.updated`` webhooks on ``http://host:port/loyalty/webhook``.

    Args:
        secret: the shared ``whsec_`` secret the site verifies with.
        host: loopback by default.
        port: 0 picks a free port.
    """

    def __init__(self, secret: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.secret = secret
        self.host = host
        self._port = port
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._deliveries: list[Delivery] = []
        self._attempts: dict[str, int] = {}
        self._done: dict[str, Delivery] = {}
        self._latest: dict[str, dict[str, Any]] = {}
        self._dropped: list[Delivery] = []
        self._down_count = 0
        self._down_until: Callable[[], bool] | None = None
        self._statuses: list[int] = []
        self._retry_after: str | None = None
        self._delay = 0.0
        self._working = 0
        self.most_at_once = 0  # the most calls it was answering at one time (concurrent senders)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> SiteReceiver:
        if self._server is None:
            self._server = _Server((self.host, self._port), _Handler)
            self._server.receiver = self
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="site", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SiteReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the site receiver is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/loyalty/webhook"

    # --- faults ----------------------------------------------------------------------------------

    def down(self, until: Callable[[], bool] | int | None = None) -> None:
        """Answer 503 to every call: for ``until`` calls (an int), until ``until()`` is true, or
        until :meth:`up` / :meth:`reset` (``None``)."""
        with self._lock:
            if isinstance(until, int):
                self._down_count, self._down_until = until, None
            else:
                self._down_count = 0
                self._down_until = until if until is not None else (lambda: False)

    def up(self) -> None:
        with self._lock:
            self._down_count, self._down_until = 0, None

    def status(self, code: int, count: int = 1) -> None:
        """Answer ``code`` to the next ``count`` calls (before any ``down`` mode applies)."""
        with self._lock:
            self._statuses.extend([code] * count)

    def retry_after(self, seconds: int | str | None) -> None:
        """Send ``Retry-After: seconds`` with every error answer (``None`` stops it)."""
        with self._lock:
            self._retry_after = None if seconds is None else str(seconds)

    def delay(self, seconds: float) -> None:
        """Wait this long before answering each call (a slow site; the bridge times out)."""
        with self._lock:
            self._delay = float(seconds)

    def reset(self) -> None:
        """Clear every fault mode (records are kept; :meth:`clear` forgets them)."""
        with self._lock:
            self._down_count = 0
            self._down_until = None
            self._statuses = []
            self._retry_after = None
            self._delay = 0.0

    def clear(self) -> None:
        """Forget every delivery and snapshot received so far."""
        with self._lock:
            self._deliveries.clear()
            self._attempts.clear()
            self._done.clear()
            self._latest.clear()
            self._dropped.clear()

    # --- what the site saw -----------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        """Every call, in arrival order."""
        with self._lock:
            return list(self._deliveries)

    @property
    def effective(self) -> list[Delivery]:
        """The first successful call per ``webhook-id``, in arrival order (what the site acted on)."""
        with self._lock:
            return list(self._done.values())

    @property
    def dropped(self) -> list[Delivery]:
        """Successful calls whose ``sequence`` was not newer than the customer's latest (ignored)."""
        with self._lock:
            return list(self._dropped)

    def attempts(self, webhook_id: str) -> int:
        with self._lock:
            return self._attempts.get(webhook_id, 0)

    def latest(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's newest snapshot (the body's ``data``), as the site would have stored it."""
        with self._lock:
            return self._latest.get(customer_id)

    # --- the endpoint ----------------------------------------------------------------------------

    def _fault_status(self) -> int | None:
        if self._statuses:
            return self._statuses.pop(0)
        if self._down_until is not None:
            if not self._down_until():
                return 503
            self._down_until = None
        if self._down_count:
            self._down_count -= 1
            return 503
        return None

    def _handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            delay = self._delay
            self._working += 1
            self.most_at_once = max(self.most_at_once, self._working)
        try:
            if delay:
                time.sleep(delay)
            return self._answer(headers, body)
        finally:
            with self._lock:
                self._working -= 1

    def _answer(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        verified = _verify(self.secret, headers, body)
        try:
            parsed = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            parsed = None
        webhook_id = headers.get("webhook-id", "")
        stamp = headers.get("webhook-timestamp", "")
        with self._lock:
            attempt = self._attempts.get(webhook_id, 0) + 1
            self._attempts[webhook_id] = attempt
            status = self._fault_status()
            extra: dict[str, str] = {}
            if status is None:
                status = 200 if verified else 401
                if verified and parsed is None:
                    status = 400
            if status >= 400 and self._retry_after is not None:
                extra["Retry-After"] = self._retry_after
            delivery = Delivery(
                webhook_id=webhook_id,
                timestamp=int(stamp) if stamp.isdigit() else None,
                signature=headers.get("webhook-signature", ""),
                body=body,
                json=parsed,
                verified=verified,
                status=status,
                attempt=attempt,
                received_at=time.time(),
                content_type=headers.get("content-type", ""),
            )
            self._deliveries.append(delivery)
            if delivery.ok and webhook_id not in self._done:
                self._done[webhook_id] = delivery
                self._store(delivery)
        reply = {"ok": delivery.ok} if delivery.ok else {"error": status}
        return status, extra, json.dumps(reply).encode()

    def _store(self, delivery: Delivery) -> None:
        customer, sequence = delivery.customer_id, delivery.sequence
        if customer is None or sequence is None:
            return
        current = self._latest.get(customer)
        if current is not None and int(current["sequence"]) >= sequence:
            self._dropped.append(delivery)
            return
        self._latest[customer] = delivery.json["data"]
