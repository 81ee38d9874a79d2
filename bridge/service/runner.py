"""What ``once``, ``run`` and ``backfill`` run: the cycle, with its report shaped for the runtime.

Converts a ``CycleResult`` into the runtime's ``CycleStats`` (metrics, sd_notify status, health),
adding the outbox depth and the age of its oldest pending message per channel.

With a leader lock (``run``; ``bridge.store.leader``) a tick works only while this instance holds
it: otherwise it tries to take it and, failing, returns ``Standby`` stats having done nothing. The
leader re-checks the lock at the start of every tick and after every document and channel, and
ends the cycle (``TransientError``) once it is gone, so a deposed leader stops within a document.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select

from bridge.errors import TransientError
from bridge.runtime.config import Config
from bridge.runtime.daemon import Standby
from bridge.runtime.metrics import CycleStats
from bridge.runtime.progress import Progress
from bridge.runtime.signals import StopToken
from bridge.service.cycle import Cycle, CycleResult
from bridge.service.golive import poll_start_warning
from bridge.service.wiring import build_cycle
from bridge.store import schema as t
from bridge.store.leader import LeaderLock
from bridge.store.outbox import DEAD, PENDING

log = structlog.get_logger(__name__)


def outbox_depth(cycle: Cycle) -> tuple[dict[str, int], dict[str, float | None]]:
    now = datetime.now(UTC)
    depth: dict[str, int] = {}
    oldest: dict[str, float | None] = {}
    query = (
        select(t.outbox.c.channel, func.count(t.outbox.c.id), func.min(t.outbox.c.created_at))
        .where(t.outbox.c.status == PENDING)
        .group_by(t.outbox.c.channel)
    )
    db = cycle.engine.store.engine
    with db.connect() as conn:
        for channel, count, first in conn.execute(query):
            depth[channel] = int(count)
            if isinstance(first, str):
                first = t.UTCDateTime().process_result_value(first, conn.dialect)
            oldest[channel] = (now - first).total_seconds() if first is not None else None
    return depth, oldest


def trouble_counts(cycle: Cycle) -> tuple[dict[str, int], int]:
    """Dead outbox messages by channel, and the documents in quarantine (for the gauges an alert
    watches: both stay until a person acts)."""
    dead = select(t.outbox.c.channel, func.count(t.outbox.c.id)).where(t.outbox.c.status == DEAD)
    with cycle.engine.store.engine.connect() as conn:
        by_channel = {str(c): int(n) for c, n in conn.execute(dead.group_by(t.outbox.c.channel))}
        held = int(conn.execute(select(func.count()).select_from(t.quarantine)).scalar_one())
    return by_channel, held


def stats_of(cycle: Cycle, result: CycleResult, started: datetime) -> CycleStats:
    depth, oldest = outbox_depth(cycle)
    dead, held = trouble_counts(cycle)
    sent = sum(d.sent for d in result.deliveries.values())
    failed = sum(d.dead for d in result.deliveries.values())
    return CycleStats(
        started_at=started,
        finished_at=datetime.now(UTC),
        documents_processed=result.documents_processed,
        documents_failed=result.documents_failed,
        quarantined=result.documents_failed,
        writes_to_1c=result.writes_to_1c,
        deliveries_sent=sent,
        deliveries_failed=failed,
        requests_to_1c=result.requests_to_1c,
        outbox_depth=depth,
        outbox_oldest_age_s=oldest,
        outbox_dead=dead,
        quarantined_now=held,
        ok=True,
    )


def make_clock(now: datetime | None, tz: Any) -> Callable[[], datetime]:
    """The cycle's clock: the real one, or ``--now`` (fixed for a one-shot run)."""
    if now is not None:
        return lambda: now
    return lambda: datetime.now(UTC).astimezone(tz)


class CycleRunner:
    """A callable ``StopToken -> CycleStats`` for the daemon, keeping the last ``CycleResult``."""

    def __init__(
        self,
        config: Config,
        *,
        now: datetime | None = None,
        history: bool = False,
        source: Any = None,
        leader: LeaderLock | None = None,
        recheck_s: float = 1.0,
    ):
        self.token_heartbeat: Callable[[], None] = lambda: None
        self.cycle = build_cycle(
            config,
            clock=make_clock(now, config.tz),
            history=history,
            source=source,
            heartbeat=self._heartbeat,
        )
        self.last: CycleResult | None = None
        # The regular change source on a fresh state reads from poll.start: say if that is far back.
        self._golive: Config | None = config if source is None and not history else None
        self.leader = leader
        self.leading = False
        self.recheck_s = recheck_s
        self._checked = 0.0
        self._standby_said = False
        self.progress_label = "history documents" if history else "documents"

    def __call__(self, token: StopToken) -> CycleStats:
        self.token_heartbeat = token.heartbeat
        started = datetime.now(UTC)
        if self.leader is not None and not self._lead():
            return Standby(started_at=started, finished_at=datetime.now(UTC), holder=self.leader.holder())
        if self._golive is not None:
            warning = poll_start_warning(self._golive, self.cycle.clock())
            if warning:
                log.warning("poll.start is not the go-live moment", problem=warning)
            self._golive = None
        # A long run (the first one over months of history, a backfill) shows counts and rate in
        # the log every few seconds, and a bar when attached to a terminal.
        with Progress(label=self.progress_label, log=log, report_done=False) as progress:
            self.cycle.progress = progress.advance
            self.last = self.cycle.run(token)
        return stats_of(self.cycle, self.last, started)

    def _lead(self) -> bool:
        """Keep or take the leader lock; log every change of role."""
        assert self.leader is not None
        was, self.leading = self.leading, False
        self.leading = (was and self.leader.holds()) or self.leader.try_acquire()
        self._checked = time.monotonic()
        if self.leading and not was:
            log.info("leader: this instance works now")
            self._standby_said = False
        elif not self.leading and not self._standby_said:  # once per change, not every tick
            say = log.warning if was else log.info
            say("standby: another instance is working", holder=self.leader.holder(), was_leader=was)
            self._standby_said = True
        return self.leading

    def _heartbeat(self) -> None:
        self.token_heartbeat()
        if self.leader is None or not self.leading or time.monotonic() - self._checked < self.recheck_s:
            return
        self._checked = time.monotonic()
        if not self.leader.holds():
            self.leading = False
            log.warning("leader lock lost mid-cycle: stopping the cycle", holder=self.leader.holder())
            raise TransientError("leader lock lost mid-cycle; another instance may be working now")


class _HistoryPoll:
    """``poll:`` settings for a backfill: start at ``--from``, no overlap, no sweep."""

    def __init__(self, config: Config, since: datetime) -> None:
        self.start = since
        self.overlap_s = 0.0
        self.reconcile_days = config.poll.reconcile_days
        self.reconcile_at = config.poll.reconcile_at


class _HistoryState:
    """The state a backfill scan sees: no cursors, nothing tracked, the sweep just done."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def cursor(self, name: str) -> str | None:
        return self.now.isoformat() if name == "last_reconcile" else None

    def tracked(self, entity: str, now: datetime) -> dict[str, str]:
        return {}

    def tracked_since(self, entity: str, now: datetime) -> datetime | None:
        return None

    def versions(self, entity: str, keys: Any) -> dict[str, str]:
        return {}


class BackfillSource:
    """Every document dated from ``since`` on, in date windows; commits no cursor of its own."""

    name = "backfill"

    def __init__(self, config: Config, since: datetime) -> None:
        from bridge.onec.mapping import load_mapping
        from bridge.onec.sources import ScanSource
        from bridge.service.onec_clients import onec_client

        mapping = load_mapping(config.mapping_path)
        self.scan = ScanSource(
            onec_client(config),
            mapping,
            _HistoryPoll(config, since),
            config.tz,
            window=timedelta(days=config.poll.backfill_window_days),
        )

    def read(self, state: Any, now: datetime) -> Any:
        return self.scan.read(_HistoryState(now), now)

    def cursor_updates(self) -> dict[str, str]:
        return {}

    def acknowledge(self) -> None:
        """History leaves the regular change source's cursors alone."""
