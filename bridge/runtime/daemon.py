"""The daemon loop of ``loyalty-bridge run``: a cycle now, then every ``poll.interval_s``, until stopped.

Owns ``Daemon`` (the loop), ``run_once`` (one cycle for ``once``) and ``serve`` (the whole service
wired: signal handlers, sd_notify, metrics endpoint, loop). The cycle itself is injected -- a
``Callable[[StopToken], CycleStats]`` -- so this module knows nothing of 1C, the site or the store.

Promises to systemd (``Type=notify``):
- ``READY=1`` once the loop starts (before the first cycle, which may be a long backfill);
- ``WATCHDOG=1`` only from the thread running the loop: between cycles, while sleeping, and during a
  cycle whenever it calls ``token.heartbeat()`` / ``token.check()`` -- never from a helper thread,
  so a hung loop is noticed and restarted;
- ``STATUS=`` one line after every cycle (``last cycle 12:00:01: 3 documents, 0 failed, ...``);
- ``STOPPING=1`` on the way out, whatever the way.

A cycle may return ``Standby`` stats: another instance holds the leader lock and this one did no
work (``docs/readme/instances.md``); the loop, ``READY=1`` and the watchdog go on as usual and
``STATUS=`` says who leads.

A cycle that raises is logged with its context and retried on the next tick: 1C, the site or the
database being down never ends ``run``. A ``StateError`` (e.g. state files the service user cannot
write) is logged at error once, without a traceback, then at debug while it stays the same. Only
the exception types in ``fatal`` (default ``ConfigError``: nothing will work until a person edits
the config, exit 78) end it, re-raised to the CLI. A ``StopRequested`` from ``token.check()``
ends the cycle quietly and then the loop.

Scheduling uses ``schedule`` with a private ``Scheduler`` (``Daemon.scheduler``, where a nightly job
can be added). The next poll is ``interval_s`` after the previous cycle ended, so slow cycles never
pile up; a monotonic guard runs it on time even if the wall clock jumps back (NTP, DST).

Must not import ``bridge.service`` or any adapter (onec, site, notify, store): the cycle comes in.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import schedule

from bridge.errors import BridgeError, ConfigError, ContractError, StateError, TransientError, describe
from bridge.runtime.logging import bound_contextvars, get_logger
from bridge.runtime.metrics import CycleStats, Metrics, MetricsServer
from bridge.runtime.sdnotify import Notifier
from bridge.runtime.signals import StopRequested, StopToken, install

__all__ = ["Cycle", "Daemon", "Standby", "run_once", "serve", "status_line"]

Cycle = Callable[[StopToken], CycleStats]


@dataclass(frozen=True)
class Standby(CycleStats):
    """A tick of a standby instance: another one (``holder``: ``pid=… host=…``) does the work."""

    holder: str | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """Runs ``cycle`` now and then every ``interval_s`` seconds until ``token`` is set.

    Args:
        cycle: one full cycle; gets the token, returns ``CycleStats``.
        interval_s: ``poll.interval_s``: pause between the end of one cycle and the start of the next.
        token: the stop flag (``signals.install(token)`` connects it to SIGTERM/SIGINT).
        notifier: sd_notify client (default: from ``$NOTIFY_SOCKET``; a no-op without it).
        metrics: fed with every cycle's stats (optional).
        log: structlog logger (default ``get_logger(component="daemon")``).
        clock: monotonic seconds, for the watchdog and the schedule guard.
        wall: the wall clock, for stats of cycles that raised.
        fatal: exception types that end ``run`` (re-raised) instead of being retried.
    """

    def __init__(
        self,
        cycle: Cycle,
        *,
        interval_s: float,
        token: StopToken,
        notifier: Notifier | None = None,
        metrics: Metrics | None = None,
        log: Any = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utcnow,
        fatal: tuple[type[BaseException], ...] = (ConfigError,),
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self._cycle = cycle
        self._interval = float(interval_s)
        self._token = token
        self._notifier = notifier if notifier is not None else Notifier(log=log)
        self._metrics = metrics
        self._log = log if log is not None else get_logger(component="daemon")
        self._clock = clock
        self._wall = wall
        self._fatal = fatal
        self.scheduler = schedule.Scheduler()
        self.cycles = 0
        self.failures_in_row = 0
        self.last_stats: CycleStats | None = None
        self._state_error: str | None = None  # the state database's error last logged (said once)
        self._loop_thread: threading.Thread | None = None
        watchdog = self._notifier.watchdog_interval
        # Ping twice per interval (a quarter of WatchdogSec) so an irregular caller still makes it.
        self._ping_every = None if watchdog is None else watchdog / 2
        self._last_ping = -math.inf
        self._last_end = clock()
        token.set_heartbeat(self.heartbeat)

    def heartbeat(self) -> None:
        """Send ``WATCHDOG=1`` if one is due. Only from the loop's own thread; elsewhere a no-op."""
        if self._ping_every is None or threading.current_thread() is not self._loop_thread:
            return
        now = self._clock()
        if now - self._last_ping >= self._ping_every:
            self._last_ping = now
            self._notifier.watchdog()

    def run(self) -> int:
        """Loop until the token is set; returns 0 (a clean stop).

        Raises:
            Whatever ``fatal`` lists, after ``STOPPING=1``.
        """
        self._loop_thread = threading.current_thread()
        self._notifier.ready(status="started; first cycle running")
        self._log.info("daemon started", interval_s=self._interval, watchdog_every_s=self._ping_every)
        try:
            self.heartbeat()
            if not self._token.requested:
                self._run_cycle()
            # schedule's hint says int, but it builds a timedelta: fractional seconds work (tests).
            job = self.scheduler.every(self._interval).seconds.do(self._run_cycle)  # type: ignore[arg-type]
            while not self._token.requested:
                self.heartbeat()
                if self._token.wait(self._sleep_time()):
                    break
                self.heartbeat()
                if self._clock() - self._last_end >= self._interval and not job.should_run:
                    # The wall clock went back (NTP step, DST): schedule would wait; run on time.
                    job.run()
                self.scheduler.run_pending()
        finally:
            self._notifier.stopping(status="stopping")
            self._loop_thread = None
        self._log.info("daemon stopped", cycles=self.cycles, signal=self._token.signum)
        return 0

    def _sleep_time(self) -> float:
        idle = self.scheduler.idle_seconds
        due = self._last_end + self._interval - self._clock()
        wait = min(idle if idle is not None else due, due)
        if self._ping_every is not None:
            wait = min(wait, self._ping_every)
        return max(wait, 0.0)

    def _run_cycle(self) -> None:
        if self._token.requested:
            return
        self.cycles += 1
        n = self.cycles
        log = self._log.bind(cycle=n)
        started, started_mono = self._wall(), self._clock()
        if self._metrics is not None:
            self._metrics.cycle_started()
        self.heartbeat()
        stats: CycleStats | None
        repeated = False
        with bound_contextvars(cycle=n):
            try:
                stats = self._cycle(self._token) or CycleStats(started_at=started, finished_at=self._wall())
            except StopRequested:
                log.info("cycle interrupted: stop requested", duration_s=self._since(started_mono))
                stats = None
            except self._fatal as exc:
                log.error("cycle failed; cannot go on", **_error_fields(exc))
                raise
            except Exception as exc:
                if isinstance(exc, TransientError):  # an outage: expected, no traceback every minute
                    log.warning("cycle failed; retrying on the next tick", **_error_fields(exc))
                elif isinstance(exc, StateError):  # e.g. files the service user cannot write: the
                    # message names them and the fix; said once, not every tick until someone acts
                    repeated = str(exc) == self._state_error
                    (log.debug if repeated else log.error)(
                        "cycle failed; retrying on the next tick", **_error_fields(exc)
                    )
                    self._state_error = str(exc)
                elif isinstance(exc, ContractError):  # 1C lost what the mapping names: the error says
                    log.error("cycle failed; retrying on the next tick", **_error_fields(exc))
                else:
                    log.error("cycle failed; retrying on the next tick", exc_info=True, **_error_fields(exc))
                stats = CycleStats.failure(started, self._wall(), f"{type(exc).__name__}: {exc}")
        if stats is not None and stats.ok:
            self._state_error = None
        self._last_end = self._clock()
        if stats is not None:
            try:
                self._record(stats, log, quiet=repeated)
            except Exception:  # bookkeeping must not end a daemon that polls fine
                log.error("recording the cycle's stats failed", exc_info=True)
        if self._token.requested:
            log.info("stop requested; finishing", signal=self._token.signum)
        self.heartbeat()

    def _record(self, stats: CycleStats, log: Any, *, quiet: bool = False) -> None:
        self.last_stats = stats
        self.failures_in_row = 0 if stats.ok else self.failures_in_row + 1
        if self._metrics is not None:
            self._metrics.observe(stats)
        self._notifier.status(status_line(stats, self.failures_in_row))
        busy = stats.documents_processed or stats.documents_failed or stats.deliveries_sent
        summary = _summary(stats)
        if not stats.ok:
            (log.debug if quiet else log.warning)("cycle done with errors", **summary)
        elif busy or stats.deliveries_failed or stats.quarantined:
            log.info("cycle done", **summary)
        else:  # an idle poll every minute for months: keep journald quiet
            log.debug("cycle done", **summary)

    def _since(self, start: float) -> float:
        return round(self._clock() - start, 3)


def _error_fields(exc: BaseException) -> dict[str, Any]:
    fields: dict[str, Any] = {"error": str(exc), "error_type": type(exc).__name__}
    if isinstance(exc, BridgeError) and exc.fields:
        fields["details"] = describe(exc.fields)
    return fields


def _summary(stats: CycleStats) -> dict[str, Any]:
    return {
        "duration_s": round(stats.duration_s, 3),
        "documents": stats.documents_processed,
        "failed": stats.documents_failed,
        "quarantined": stats.quarantined,
        "writes_to_1c": stats.writes_to_1c,
        "requests_to_1c": stats.requests_to_1c,
        "sent": stats.deliveries_sent,
        "send_failed": stats.deliveries_failed,
        "outbox": dict(stats.outbox_depth),
        "error": stats.error,
    }


def status_line(stats: CycleStats, failures_in_row: int = 0) -> str:
    """The ``STATUS=`` text ``systemctl status`` shows, in the server's local time."""
    at = stats.finished_at.astimezone().strftime("%H:%M:%S")
    if isinstance(stats, Standby):
        return f"standby {at}: another instance is working ({stats.holder or 'holder unknown'})"
    if not stats.ok and stats.documents_processed == 0 and stats.documents_failed == 0:
        row = f" ({failures_in_row} in a row)" if failures_in_row > 1 else ""
        return f"last cycle {at} failed{row}: {(stats.error or 'unknown error')[:200]}"
    parts = [f"{stats.documents_processed} documents", f"{stats.documents_failed} failed"]
    if stats.quarantined:
        parts.append(f"{stats.quarantined} quarantined")
    if stats.deliveries_sent or stats.deliveries_failed:
        parts.append(f"{stats.deliveries_sent} messages sent, {stats.deliveries_failed} not")
    pending = sum(stats.outbox_depth.values())
    if pending:
        parts.append(f"outbox {pending} pending")
    if stats.error:
        parts.append(f"error: {stats.error[:120]}")
    return f"last cycle {at}: " + ", ".join(parts)


def run_once(cycle: Cycle, token: StopToken, *, log: Any = None) -> CycleStats:
    """Run exactly one cycle (``loyalty-bridge once``) with ``cycle=1`` bound in the logs.

    Exceptions propagate (the CLI maps them to exit codes). A stop requested mid-cycle returns stats
    with ``ok=False`` and ``error="stopped before the end of the cycle"``.
    """
    log = log if log is not None else get_logger(component="once")
    started = _utcnow()
    with bound_contextvars(cycle=1):
        try:
            stats = cycle(token) or CycleStats(started_at=started, finished_at=_utcnow())
        except StopRequested:
            log.info("cycle interrupted: stop requested", cycle=1)
            return CycleStats.failure(started, _utcnow(), "stopped before the end of the cycle")
    log.info("cycle done", cycle=1, **_summary(stats))
    return stats


def serve(
    cycle: Cycle,
    *,
    interval_s: float,
    listen: tuple[str, int] | None = None,
    allow_public: bool = False,
    log: Any = None,
    token: StopToken | None = None,
    notifier: Notifier | None = None,
) -> int:
    """The whole ``run`` command once config and logging are set up: install the signal handlers,
    start the metrics endpoint (when ``listen`` is given, i.e. ``http.listen``), loop, clean up.

    Must be called from the main thread. Returns 0 after a clean stop.

    Raises:
        ConfigError: ``listen`` is not loopback (and not ``allow_public``) or cannot be bound;
            or the cycle raised one.
    """
    log = log if log is not None else get_logger(component="daemon")
    token = token if token is not None else StopToken()
    notifier = notifier if notifier is not None else Notifier(log=log)
    metrics = Metrics(interval_s)
    server = MetricsServer(listen, metrics, allow_public=allow_public, log=log) if listen else None
    uninstall = install(token)
    try:
        if server is not None:
            server.start()
        daemon = Daemon(
            cycle, interval_s=interval_s, token=token, notifier=notifier, metrics=metrics, log=log
        )
        return daemon.run()
    finally:
        uninstall()
        if server is not None:
            server.stop()
        notifier.close()
