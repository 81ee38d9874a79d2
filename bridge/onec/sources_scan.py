"""``ScanSource``: finding what changed in 1C with nothing installed there (``poll.changes: scan``).

A document's ``Date`` is not a modification time, so one read combines three passes (ONEC.md,
"Finding what changed"):

1. **New documents** — orders and returns with ``Date ≥ watermark − poll.overlap_s`` (the very
   first read starts at ``poll.start``), read in adaptive date windows with ``$top`` pages and the
   mapping's ``$select``. The watermark is the latest ``Date`` seen (never past ``now``), and at
   least ``now − overlap`` once the whole range was read.
2. **Tracked documents** — the state's ``tracked()`` documents are re-checked by ``DataVersion``
   with a narrow ``$select=Ref_Key,DataVersion``: by key (``or`` chains under the URL budget) when
   they are few, or by a narrow date-window scan with a large ``$top`` from the oldest tracked date
   when that costs fewer requests. The scan's cost is estimated from the density the previous scan
   measured; a scan that runs past the key-read cost is abandoned for key reads of what it has not
   reached, so a wrong estimate costs at most twice the cheaper way. Tracked documents the scan did
   not meet (re-dated, deleted) are read by key; absent ones are deletions. Only documents whose
   version differs are read in full and yielded.
3. **Reconciliation sweep** — daily at ``poll.reconcile_at`` (local time), every document of the
   last ``poll.reconcile_days`` is compared by ``DataVersion`` (narrow scan) with what the state
   knows; changed and unknown ones are read in full. The first read ever (an empty state reading
   from ``poll.start``) counts as a sweep.

Cursors: ``orders_watermark`` / ``returns_watermark`` (ISO-8601, aware) and ``last_reconcile``.
``acknowledge()`` does nothing: 1C keeps no queue for this source.

Must not import bridge.store, bridge.site or bridge.service.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Collection, Iterator
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Protocol

import structlog

from bridge.onec.literals import encode, key_chunks, normalize_guid, query_string
from bridge.onec.mapping import REF_KEY, Mapping
from bridge.onec.odata import ODataClient
from bridge.onec.sources_base import (
    DOCUMENTS,
    OBJECTS,
    VERSION,
    Change,
    Related,
    TrackingState,
    select_of,
    version_of,
)

__all__ = ["LAST_RECONCILE", "PollSettings", "ScanSource", "recheck_cursor", "watermark_cursor"]

log = structlog.get_logger(__name__)

LAST_RECONCILE = "last_reconcile"
_SECOND = timedelta(seconds=1)


def recheck_cursor(entity: str) -> str:
    """``card_recheck_after``: the last key the bounded catalog re-check reached."""
    return f"{entity}_recheck_after"


def watermark_cursor(entity: str) -> str:
    """``orders_watermark`` / ``returns_watermark``."""
    return f"{OBJECTS[entity]}_watermark"


class PollSettings(Protocol):
    """The ``poll:`` keys the scan uses (``bridge.runtime.config.PollConfig`` fits)."""

    @property
    def start(self) -> datetime: ...
    @property
    def overlap_s(self) -> float: ...
    @property
    def reconcile_days(self) -> int: ...
    @property
    def reconcile_at(self) -> time: ...


def _parse(text: str | None, tz: tzinfo) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


class ScanSource:
    """The default change source: date windows, ``DataVersion`` re-checks and a nightly sweep.

    Args:
        client: the OData client (its ``page_size`` pages full reads, ``url_budget`` sizes chains).
        mapping: entity sets and field names.
        poll: ``poll.start`` (naive = local), ``overlap_s``, ``reconcile_days``, ``reconcile_at``.
        tz: 1C's zone (local times, the sweep's clock).
        window: the largest date window of the new-document pass.
        version_page: ``$top`` of the narrow ``Ref_Key,DataVersion`` scans.
        batch: documents checked against the state (and yielded with their customers) at once.
        future: how far past ``now`` documents are looked for (1C users post-date documents).
        recheck_requests: requests per read for re-checking tracked catalog items (cards) by key.
    """

    name = "scan"

    def __init__(
        self,
        client: ODataClient,
        mapping: Mapping,
        poll: PollSettings,
        tz: tzinfo,
        *,
        window: timedelta = timedelta(days=31),
        version_page: int = 5000,
        batch: int | None = None,
        future: timedelta = timedelta(days=1),
        recheck_requests: int = 20,
    ) -> None:
        self.client = client
        self.mapping = mapping
        self.poll = poll
        self.tz = tz
        self.window = window
        self.version_page = version_page
        self.batch = batch or client.page_size
        self.future = future
        self.recheck_requests = recheck_requests
        self.sets = mapping.entity_sets()
        self.related = Related(client, mapping)
        self._updates: dict[str, str] = {}
        self._density: dict[str, float] = {}  # rows per second met by the last narrow scan
        self.last_plan: dict[str, str] = {}  # entity -> "keys" | "scan" | "scan+keys" (logs, tests)

    # ------------------------------------------------------------------ protocol

    def cursor_updates(self) -> dict[str, str]:
        return dict(self._updates)

    def acknowledge(self) -> None:
        """Nothing to tell 1C: the scan keeps its place in the cursors alone."""

    def read(self, state: TrackingState, now: datetime) -> Iterator[Change]:
        """Yield new, changed, deleted and (when due) reconciled documents with their references."""
        if now.tzinfo is None:
            raise ValueError("now must be aware")
        self._updates = {}
        self.last_plan = {}
        end = now + self.future
        first_read = all(state.cursor(watermark_cursor(e)) is None for e in DOCUMENTS)
        sweep = self._sweep_due(state, now, first_read)
        tracked = {e: state.tracked(e, now) for e in DOCUMENTS}
        done: set[str] = set()
        for entity in DOCUMENTS:
            yield from self._new_documents(entity, state, now, end, tracked[entity], done, sweep)
        for entity in DOCUMENTS:
            keys = {k: v for k, v in tracked[entity].items() if k not in done}
            yield from self._tracked_documents(entity, state, now, end, keys, done)
        for entity in ("card", "customer"):
            keys = {k: v for k, v in state.tracked(entity, now).items() if k not in done}
            yield from self._recheck_by_key(entity, state, keys, done)
        if sweep:
            since = now - timedelta(days=self.poll.reconcile_days)
            for entity in DOCUMENTS:
                yield from self._sweep(entity, state, since, end, done)
        if sweep or first_read:
            self._updates[LAST_RECONCILE] = now.isoformat()

    # ------------------------------------------------------------------ pass 1: new documents

    def _new_documents(
        self,
        entity: str,
        state: TrackingState,
        now: datetime,
        end: datetime,
        tracked: dict[str, str],
        done: set[str],
        remember_all: bool,
    ) -> Iterator[Change]:
        obj = OBJECTS[entity]
        fields = getattr(self.mapping, obj).fields
        name = watermark_cursor(entity)
        stored = _parse(state.cursor(name), self.tz)
        overlap = timedelta(seconds=float(self.poll.overlap_s))
        start = stored - overlap if stored else self._poll_start()
        if start >= end:
            return
        mark = stored
        rows: list[dict[str, Any]] = []

        def flush() -> Iterator[Change]:
            nonlocal mark
            known = {k: tracked[k] for k in (str(r.get(REF_KEY)) for r in rows) if k in tracked}
            rest = [str(r.get(REF_KEY)) for r in rows if str(r.get(REF_KEY)) not in known]
            if rest:
                known.update(state.versions(entity, rest))
            changed = []
            for row in rows:
                key, version = str(row.get(REF_KEY)), version_of(row)
                if key in done or (key in known and known[key] == version and version):
                    continue
                changed.append(Change(entity, key, row, version))
                if remember_all or key in tracked:
                    done.add(key)
            yield from self._with_references(state, changed, done)
            dates = [d for d in (r.get(fields.date) for r in rows) if isinstance(d, datetime)]
            if dates:
                latest = min(max(dates), now)
                mark = latest if mark is None or latest > mark else mark
                self._updates[name] = mark.isoformat()
            rows.clear()

        select = select_of(self.mapping, entity)
        for row in self.client.iter_windows(
            self.sets[obj], fields.date, start, end, self.window, select=select
        ):
            rows.append(row)
            if len(rows) >= self.batch:
                yield from flush()
        yield from flush()
        # The whole range was read: a document not met yet would have to be dated before
        # now - overlap, i.e. back-dated (the sweep's job). Without this a quiet set (no returns
        # at all) would be re-read from poll.start every cycle.
        floor = now - overlap
        if mark is None or mark < floor:
            self._updates[name] = floor.isoformat()

    def _poll_start(self) -> datetime:
        start = self.poll.start
        return start if start.tzinfo is not None else start.replace(tzinfo=self.tz)

    # ------------------------------------------------------------------ pass 2: tracked documents

    def _tracked_documents(
        self,
        entity: str,
        state: TrackingState,
        now: datetime,
        end: datetime,
        tracked: dict[str, str],
        done: set[str],
    ) -> Iterator[Change]:
        if not tracked:
            return
        by_key = self.key_requests(entity, tracked)
        since = state.tracked_since(entity, now)
        seen: dict[str, str] = {}
        unseen: Collection[str] = tracked.keys()
        plan = "keys"
        if since is not None and by_key > 1:
            since = min(since, now) - _SECOND
            estimate = self.scan_requests(entity, len(tracked), since, end)
            if estimate < by_key:
                complete = self._narrow_scan(entity, since, end, tracked.keys(), seen, budget=by_key)
                unseen = [k for k in tracked if k not in seen]
                plan = "scan" if complete and not unseen else "scan+keys"
        versions = dict(seen)
        if unseen:
            versions.update(self._versions_by_key(entity, unseen))
        self.last_plan[entity] = plan
        changed = [k for k, v in tracked.items() if versions.get(k) != v or not v]
        log.debug("onec.scan.tracked", entity=entity, tracked=len(tracked), changed=len(changed), plan=plan)
        yield from self._reread(entity, state, changed, done)

    def key_requests(self, entity: str, keys: Collection[str]) -> int:
        """Requests a narrow by-key read of ``keys`` takes (``or`` chains within the URL budget)."""
        if not keys:
            return 0
        select = self._narrow_select(entity)
        base = len(query_string(select=select, top=10**6)) + len("&$filter=")
        # Every ``Ref_Key eq guid'…'`` term encodes to the same length, so the chains hold the same
        # number of keys: counted from one term instead of encoding all of them (20 000 tracked
        # orders would take a noticeable part of an idle cycle).
        [first] = key_chunks([next(iter(keys))], REF_KEY, self.client.url_budget, base)
        term = len(encode(first.filter.text))
        per_chain = 1 + (self.client.url_budget - base - term) // (term + len(encode(" or ")))
        return math.ceil(len(set(keys)) / per_chain)

    def scan_requests(self, entity: str, tracked: int, since: datetime, end: datetime) -> int:
        """Estimated requests of a narrow scan of ``[since, end)``: from the last measured density,
        else the lower bound of reading just the tracked documents."""
        span = max((end - since).total_seconds(), 1.0)
        density = self._density.get(entity)
        rows = max(tracked, int(density * span)) if density is not None else tracked
        return math.ceil((rows + 1) / self.version_page)

    def _narrow_select(self, entity: str) -> list[str]:
        fields = getattr(self.mapping, OBJECTS[entity]).fields
        return list(dict.fromkeys([fields.id, fields.version]))

    def _narrow_rows(self, entity: str, since: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        obj = OBJECTS[entity]
        fields = getattr(self.mapping, obj).fields
        return self.client.iter_windows(
            self.sets[obj],
            fields.date,
            since,
            end,
            max(end - since, _SECOND),
            select=self._narrow_select(entity),
            page_size=self.version_page,
        )

    def _narrow_scan(
        self,
        entity: str,
        since: datetime,
        end: datetime,
        wanted: Collection[str],
        seen: dict[str, str],
        *,
        budget: int,
    ) -> bool:
        """Fill ``seen`` with the versions of ``wanted`` keys met in ``[since, end)``; False when
        abandoned after ``budget`` requests."""
        first = self.client.requests_made
        count = 0
        for row in self._narrow_rows(entity, since, end):
            count += 1
            key = str(row.get(REF_KEY))
            if key in wanted:
                seen[key] = version_of(row)
            if self.client.requests_made - first > budget:
                log.info("onec.scan.abandoned", entity=entity, rows=count, requests=budget)
                return False
        self._density[entity] = count / max((end - since).total_seconds(), 1.0)
        return True

    def _versions_by_key(self, entity: str, keys: Collection[str]) -> dict[str, str]:
        entity_set = self.sets[OBJECTS[entity]]
        rows = self.client.iter_by_keys(entity_set, sorted(keys), select=self._narrow_select(entity))
        return {str(r.get(REF_KEY)): version_of(r) for r in rows}

    def _recheck_by_key(
        self, entity: str, state: TrackingState, tracked: dict[str, str], done: set[str]
    ) -> Iterator[Change]:
        """Catalog items the state tracks (cards not yet handed out…): by key, no dates to scan.

        At most ``recheck_requests`` ``or`` chains per read: when more items are tracked, each read
        goes on after the last key the previous one checked (cursor ``<entity>_recheck_after``, in
        key order, wrapping round), so every item is checked every few cycles and an idle cycle's
        cost does not grow with the number of virtual cards.
        """
        if not tracked:
            return
        select = [REF_KEY, VERSION]
        keys = sorted(tracked)
        cursor = recheck_cursor(entity)
        start = bisect.bisect_right(keys, state.cursor(cursor) or "")
        rotated = keys[start:] + keys[:start]
        chunks = list(itertools.islice(self.client.key_chunks(rotated, select), self.recheck_requests))
        original = {normalize_guid(k): k for k in rotated}
        checked = [original.get(k, k) for chunk in chunks for k in chunk.keys]
        if len(checked) < len(keys):
            self._updates[cursor] = checked[-1]
            log.info("onec.scan.recheck_rotated", entity=entity, checked=len(checked), tracked=len(keys))
        rows = self.client.iter_by_keys(self.sets[OBJECTS[entity]], checked, select=select)
        versions = {str(r.get(REF_KEY)): version_of(r) for r in rows}
        changed = [k for k in checked if versions.get(k) != tracked[k] or not tracked[k]]
        yield from self._reread(entity, state, changed, done)

    def _reread(self, entity: str, state: TrackingState, keys: list[str], done: set[str]) -> Iterator[Change]:
        """Read ``keys`` in full (batch by batch) and yield them; absent ones as deletions."""
        keys = [k for k in keys if k not in done]
        entity_set = self.sets[OBJECTS[entity]]
        select = select_of(self.mapping, entity)
        for i in range(0, len(keys), self.batch):
            chunk = keys[i : i + self.batch]
            found = {
                str(r.get(REF_KEY)): r for r in self.client.iter_by_keys(entity_set, chunk, select=select)
            }
            changes = [Change(entity, k, found.get(k), version_of(found.get(k))) for k in chunk]
            done.update(chunk)
            yield from self._with_references(state, changes, done)

    # ------------------------------------------------------------------ pass 3: the sweep

    def _sweep_due(self, state: TrackingState, now: datetime, first_read: bool) -> bool:
        if first_read:
            return False
        local = now.astimezone(self.tz)
        slot = datetime.combine(local.date(), self.poll.reconcile_at).replace(tzinfo=self.tz)
        if slot > local:
            slot -= timedelta(days=1)
        last = _parse(state.cursor(LAST_RECONCILE), self.tz)
        return last is None or last < slot

    def _sweep(
        self, entity: str, state: TrackingState, since: datetime, end: datetime, done: set[str]
    ) -> Iterator[Change]:
        batch: list[tuple[str, str]] = []
        count = 0

        def flush() -> Iterator[Change]:
            known = state.versions(entity, [k for k, _ in batch])
            stale = [k for k, v in batch if k not in done and (known.get(k) != v or not v)]
            batch.clear()
            yield from self._reread(entity, state, stale, done)

        for row in self._narrow_rows(entity, since, end):
            count += 1
            batch.append((str(row.get(REF_KEY)), version_of(row)))
            if len(batch) >= self.version_page:
                yield from flush()
        yield from flush()
        self._density[entity] = count / max((end - since).total_seconds(), 1.0)
        log.info("onec.scan.reconciled", entity=entity, documents=count)

    # ------------------------------------------------------------------ shared

    def _with_references(self, state: TrackingState, docs: list[Change], done: set[str]) -> Iterator[Change]:
        """Referenced customers, cards and sales first (when new or changed), then the documents."""
        if not docs:
            return
        yield from self.related.expand(state, docs, done)
        yield from docs
