"""What a cycle reports (``CycleStats``), the Prometheus metrics made of it, and the loopback endpoint.

Owns ``CycleStats`` (the cycle returns one), ``Metrics`` (on its own ``CollectorRegistry``, never the
process-global one, so tests and a second instance do not collide) and ``MetricsServer``: a stdlib
``ThreadingHTTPServer`` in a daemon thread serving ``/metrics`` (text exposition) and ``/healthz``
(200 while the last successful cycle is recent -- within 3 x ``poll.interval_s`` + 60 s -- else 503).

The endpoint only binds a loopback address (127.0.0.0/8, ::1, ``localhost``): anything else raises
``ConfigError`` naming ``http.listen`` unless the caller passes ``allow_public=True``. It has no
authentication; put a reverse proxy in front if another host must scrape it. The server thread only
reads metric values; it never touches the cycle or systemd's watchdog.

Must not import anything of the bridge but ``bridge.errors`` and ``bridge.runtime.config_rules``
(``is_loopback``, shared with the config's check of ``http.listen``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bridge.errors import ConfigError
from bridge.runtime.config_rules import is_loopback

__all__ = ["CycleStats", "Metrics", "MetricsServer", "is_loopback"]

HealthProbe = Callable[[], tuple[bool, dict[str, Any]]]
_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))


@dataclass(frozen=True)
class CycleStats:
    """What one cycle did. Times are the wall clock (aware), never the rules' ``--now``.

    ``outbox_depth`` and ``outbox_oldest_age_s`` are keyed by channel (``webhook``, ``sms``,
    ``email``); an age is None when the channel has nothing pending.
    """

    started_at: datetime
    finished_at: datetime
    documents_processed: int = 0
    documents_failed: int = 0
    quarantined: int = 0
    writes_to_1c: int = 0
    deliveries_sent: int = 0
    deliveries_failed: int = 0
    requests_to_1c: int = 0
    outbox_depth: Mapping[str, int] = field(default_factory=dict)
    outbox_oldest_age_s: Mapping[str, float | None] = field(default_factory=dict)
    outbox_dead: Mapping[str, int] = field(default_factory=dict)  # by channel, now
    quarantined_now: int | None = None  # documents in quarantine after the cycle; None: not counted
    ok: bool = True
    error: str | None = None

    @property
    def duration_s(self) -> float:
        return max((self.finished_at - self.started_at).total_seconds(), 0.0)

    @classmethod
    def failure(cls, started_at: datetime, finished_at: datetime, error: str) -> CycleStats:
        """The stats of a cycle that raised instead of returning (counts unknown, so zero)."""
        return cls(started_at=started_at, finished_at=finished_at, ok=False, error=error)


class Metrics:
    """The bridge's Prometheus metrics and the health verdict, fed by ``observe`` after each cycle.

    Args:
        interval_s: ``poll.interval_s``; a success older than 3 x this + 60 s is stale.
        registry: where to register (default: a fresh ``CollectorRegistry``).
        clock: wall clock in Unix seconds (tests pass a fake).
    """

    def __init__(
        self,
        interval_s: float,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.max_age_s = 3 * float(interval_s) + 60
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_success: float | None = None
        self._last_error: str | None = None
        self._cycle_since: float | None = None
        self._cycles = 0
        self._failures_in_row = 0
        self._channels: set[str] = set()
        r, ns = self.registry, "loyalty_bridge"
        self.cycle_duration = Histogram(
            "cycle_duration_seconds", "Duration of one cycle.", namespace=ns, buckets=_BUCKETS, registry=r
        )
        self.cycles = Counter(
            "cycles", "Cycles run, by result (ok|failed).", ["result"], namespace=ns, registry=r
        )
        self.documents = Counter(
            "documents",
            "1C documents, by kind (processed|failed|quarantined).",
            ["kind"],
            namespace=ns,
            registry=r,
        )
        self.requests_to_1c = Counter("onec_requests", "Requests sent to 1C.", namespace=ns, registry=r)
        self.writes_to_1c = Counter("onec_writes", "Writes to 1C objects.", namespace=ns, registry=r)
        self.deliveries = Counter(
            "deliveries",
            "Outbox delivery attempts, by result (sent|failed).",
            ["result"],
            namespace=ns,
            registry=r,
        )
        self.outbox_depth = Gauge(
            "outbox_depth",
            "Messages pending in the outbox, by channel.",
            ["channel"],
            namespace=ns,
            registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest pending outbox message, by channel (0 when none).",
            ["channel"],
            namespace=ns,
            registry=r,
        )
        self.outbox_dead = Gauge(
            "outbox_dead",
            "Dead messages in the outbox (given up on; `outbox retry` re-sends them), by channel.",
            ["channel"],
            namespace=ns,
            registry=r,
        )
        self.quarantined = Gauge(
            "quarantined_documents",
            "Documents in quarantine now (`loyalty-bridge quarantine` lists them with the reason).",
            namespace=ns,
            registry=r,
        )
        self.last_success = Gauge(
            "last_success_timestamp_seconds",
            "When the last successful cycle finished (Unix time).",
            namespace=ns,
            registry=r,
        )
        self.last_cycle = Gauge(
            "last_cycle_timestamp_seconds",
            "When the last cycle finished (Unix time).",
            namespace=ns,
            registry=r,
        )
        self.up = Gauge("up", "1 while the daemon runs.", namespace=ns, registry=r)
        self.up.set(1)
        self.healthy = Gauge("healthy", "1 while /healthz answers 200.", namespace=ns, registry=r)
        self.healthy.set_function(lambda: 1.0 if self.health()[0] else 0.0)

    def cycle_started(self) -> None:
        """Note that a cycle is running (shown by /healthz while a long backfill runs)."""
        with self._lock:
            self._cycle_since = self._clock()

    def observe(self, stats: CycleStats) -> None:
        """Record one finished cycle."""
        self.cycle_duration.observe(stats.duration_s)
        self.cycles.labels(result="ok" if stats.ok else "failed").inc()
        for kind, count in (
            ("processed", stats.documents_processed),
            ("failed", stats.documents_failed),
            ("quarantined", stats.quarantined),
        ):
            self.documents.labels(kind=kind).inc(max(count, 0))
        self.requests_to_1c.inc(max(stats.requests_to_1c, 0))
        self.writes_to_1c.inc(max(stats.writes_to_1c, 0))
        self.deliveries.labels(result="sent").inc(max(stats.deliveries_sent, 0))
        self.deliveries.labels(result="failed").inc(max(stats.deliveries_failed, 0))
        channels = set(stats.outbox_depth) | set(stats.outbox_oldest_age_s) | set(stats.outbox_dead)
        for channel in channels | self._channels:  # a channel gone from the report is empty, not stale
            self.outbox_depth.labels(channel=channel).set(stats.outbox_depth.get(channel, 0))
            age = stats.outbox_oldest_age_s.get(channel)
            self.outbox_oldest_age.labels(channel=channel).set(age if age is not None else 0)
            if stats.ok:  # a failed cycle's stats count nothing: the last known figure stays
                self.outbox_dead.labels(channel=channel).set(stats.outbox_dead.get(channel, 0))
        if stats.quarantined_now is not None:
            self.quarantined.set(stats.quarantined_now)
        finished = stats.finished_at.timestamp()
        self.last_cycle.set(finished)
        with self._lock:
            self._channels |= channels
            self._cycles += 1
            self._cycle_since = None
            if stats.ok:
                self._last_success = finished
                self._failures_in_row = 0
                self._last_error = None
            else:
                self._failures_in_row += 1
                self._last_error = stats.error
        if stats.ok:
            self.last_success.set(finished)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``(healthy, details)`` for /healthz.

        Healthy while the last successful cycle finished within ``max_age_s``; before the first one,
        healthy ("starting") only until ``max_age_s`` after start-up.
        """
        now = self._clock()
        with self._lock:
            last, error, since = self._last_success, self._last_error, self._cycle_since
            cycles, in_row = self._cycles, self._failures_in_row
        age = None if last is None else max(now - last, 0.0)
        if age is not None:
            ok, status = age <= self.max_age_s, ("ok" if age <= self.max_age_s else "stale")
        else:
            ok = now - self._started <= self.max_age_s
            status = "starting" if ok else "stale"
        details: dict[str, Any] = {
            "status": status,
            "last_success": None if last is None else datetime.fromtimestamp(last, UTC).isoformat(),
            "age_s": None if age is None else round(age, 3),
            "max_age_s": self.max_age_s,
            "cycles": cycles,
            "failures_in_row": in_row,
            "last_error": error,
            "cycle_running_s": None if since is None else round(max(now - since, 0.0), 3),
        }
        return ok, details

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``/metrics`` and ``/healthz`` on a loopback address, served from a daemon thread.

    Args:
        address: ``(host, port)`` from ``http.listen`` (port 0 picks a free one; see ``address``).
        metrics: what ``/metrics`` exposes.
        health: the probe behind ``/healthz`` (default ``metrics.health``).
        allow_public: bind a non-loopback address anyway (there is no authentication).
        log: a structlog logger for start-up and request errors (optional).

    Raises:
        ConfigError: the address is not loopback and ``allow_public`` is false, or it cannot be bound.
    """

    def __init__(
        self,
        address: tuple[str, int],
        metrics: Metrics,
        health: HealthProbe | None = None,
        *,
        allow_public: bool = False,
        log: Any = None,
    ) -> None:
        host, port = address[0].strip("[]"), address[1]
        if not allow_public and not is_loopback(host):
            raise ConfigError(
                [
                    f"http.listen: {host} is not a loopback address and the endpoint has no authentication; "
                    'listen on 127.0.0.1 (e.g. "127.0.0.1:9108") and scrape through a reverse proxy'
                ],
                key="http.listen",
            )
        self._metrics = metrics
        self._health = health if health is not None else metrics.health
        self._log = log
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), self._handler_class())
        except OSError as exc:
            raise ConfigError(
                [f"http.listen: cannot listen on {host}:{port} ({exc.strerror}); pick a free port"],
                key="http.listen",
            ) from None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> MetricsServer:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="metrics-http",
                daemon=True,
            )
            self._thread.start()
            if self._log is not None:
                host, port = self.address
                self._log.info("metrics endpoint listening", url=f"http://{host}:{port}/metrics")
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a client that connects and says nothing must not hold a thread forever
            server_version = "loyalty-bridge"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, outer._metrics.render(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/health"):
                    try:
                        ok, details = outer._health()
                    except Exception as exc:  # a broken probe is unhealthy, not a dead endpoint
                        ok, details = False, {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
                    body = json.dumps(details, ensure_ascii=False).encode("utf-8")
                    self._send(200 if ok else 503, body, "application/json; charset=utf-8")
                else:
                    self._send(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                if outer._log is not None:
                    outer._log.debug("metrics request", request=format % args)

        return Handler
