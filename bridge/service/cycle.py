"""One cycle of the bridge: read changes, apply the rules, commit, deliver.

    1. time:      post what time alone causes (holds ending, expiries, warnings, level terms);
    2. changes:   read the configured change source; every document is one unit of work — one
                  database transaction holding its ledger entries and its outbox rows; a
                  document that fails is quarantined with its reason and the cycle carries on;
    3. cursors:   commit the source's cursors (after the documents they cover), then acknowledge
                  the source (exchange plan / SOAP) — only after the local commit;
    4. delivery:  the outbox — write-backs to 1C, webhooks to the site, SMS, e-mail;
    5. pruning:   at most once a day, delete the outbox messages delivered (or superseded) more
                  than ``state.keep_sent_days`` ago, in batches (``outbox.prune_batch``).

A stop request (SIGTERM) is honoured between documents and between deliveries: the document in
hand is finished, the cursors of a cut-short read are not advanced (the next run re-reads, and
re-applying is a no-op).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import Connection
from structlog.contextvars import bound_contextvars

from bridge import crashpoints
from bridge.domain.model import Card, CardStatus, Order
from bridge.errors import BridgeError, ContractError, DocumentError, FatalHTTPError, OneCError, TransientError
from bridge.service.check import metadata_drift
from bridge.service.delivery import Bookkeeping, DeliveryStats, deliver_channel
from bridge.service.engine import Engine
from bridge.service.gateway import Gateway
from bridge.store import outbox, tracking
from bridge.store.db import make_durable
from bridge.store.outbox import OutboxMessage

log = structlog.get_logger(__name__)

#: While 1C keeps refusing the same query, its ``$metadata`` (megabytes in UT 11, seconds for 1C to
#: build) is read again at most this often to say what it lacks; the cycle still fails every time.
DRIFT_RECHECK = timedelta(minutes=15)
DRIFT_HINT = (
    "until it is fixed, documents from this point on wait (nothing is skipped) while messages "
    "already queued still go out; then the bridge goes on by itself. `loyalty-bridge check` lists "
    "everything 1C lacks"
)
#: The same, when only a write-back needs what 1C lost: the documents are still processed.
WRITE_DRIFT_HINT = (
    "until it is fixed, the write-backs that need it wait in the outbox (retried, nothing is lost) "
    "while documents are still processed; then they go out by themselves. `loyalty-bridge check` "
    "lists everything 1C lacks"
)


class Change(Protocol):
    entity: str
    key: str
    row: dict[str, Any] | None
    version: str


class Source(Protocol):
    def read(self, state: Any, now: datetime) -> Iterator[Any]: ...

    def cursor_updates(self) -> dict[str, str]: ...

    def acknowledge(self) -> None: ...


class StopToken(Protocol):
    @property
    def requested(self) -> bool: ...


@dataclass
class CycleResult:
    started_at: datetime
    finished_at: datetime | None = None
    documents_processed: int = 0
    documents_failed: int = 0
    failures: list[str] = field(default_factory=list)  # quarantined documents, then ``held``
    # Of ``failures``, those that were not the document's fault (1C's error; a customer whose
    # time-driven rules refused): nothing quarantined, tried again next cycle.
    held: list[str] = field(default_factory=list)
    writes_to_1c: int = 0
    deliveries: dict[str, DeliveryStats] = field(default_factory=dict)
    requests_to_1c: int = 0
    stopped: bool = False
    duration_s: float = 0.0
    by_entity: dict[str, int] = field(default_factory=dict)
    pruned: int = 0  # finished outbox messages deleted (``state.keep_sent_days``)


@dataclass
class Channel:
    name: str
    send: Callable[[OutboxMessage], Bookkeeping | None]
    max_age_hours: float
    workers: int = 1  # messages sent at once (``deliver_channel``)
    prepare: Callable[[list[OutboxMessage]], None] | None = None  # before each batch is sent


class Cycle:
    """Runs cycles over one engine, one 1C gateway and one change source."""

    def __init__(
        self,
        *,
        engine: Engine,
        gateway: Gateway,
        source: Source,
        track_days: int,
        channels: list[Channel],
        clock: Callable[[], datetime],
        history: bool = False,
        heartbeat: Callable[[], None] | None = None,
        progress: Callable[[int], None] | None = None,
        write_workers: int = 1,
        keep_sent_days: int | None = None,
    ) -> None:
        self.engine = engine
        self.keep_sent_days = keep_sent_days
        self._pruned_at: datetime | None = None  # the last complete pruning (once a day)
        self.gateway = gateway
        self.source = source
        self.state = tracking.StoreState(engine.store.engine, track_days)
        self.channels = [
            Channel("onec", self._write_back, 24 * 30, write_workers, self._before_batch),
            *channels,
        ]
        self._count_lock = threading.Lock()
        self._drift_lock = threading.Lock()  # write-backs may ask from several threads
        self._drift_seen: tuple[str, datetime, list[str]] | None = None  # across cycles
        self.clock = clock
        self.history = history
        self._imported: set[str] = set()  # the customers a backfill imported history for (per run)
        self.heartbeat = heartbeat or (lambda: None)
        self.progress = progress or (lambda n: None)
        self._quarantined: set[str] = set()  # the quarantined documents, read when a cycle starts
        # Customers seen known (their 1C version read) and with a card during this cycle: both stay
        # so (cards are never removed; of the writers of the version only ``set_contacts``, in
        # ``_customer``, could blank it, and it drops the customer from here).
        self._settled: set[str] = set()
        # Partners this cycle met (their rows came before their orders) whose cards 1C may already
        # have: the first order that needs one partner's cards reads them all (``_cards_of``).
        self._card_candidates: set[str] = set()
        self._cards_read: dict[str, list[tuple[Card, str]]] = {}

    # --- the cycle ---------------------------------------------------------------------------------

    def run(self, token: StopToken) -> CycleResult:
        """One cycle; every log line inside carries ``cycle`` (and ``doc``/``customer`` per document)."""
        now = self.clock()
        with bound_contextvars(cycle=now.isoformat()):
            return self._run(token, now)

    def _run(self, token: StopToken, now: datetime) -> CycleResult:
        started = time.monotonic()
        requests_before = self.gateway.client.requests_made
        result = CycleResult(started_at=now)
        bound = log.bind(cycle=now.isoformat())
        self._hold_cursors = False
        with self.engine.store.engine.connect() as conn:
            # Read once: a document not in quarantine needs no release (a write per document saved).
            self._quarantined = tracking.quarantined_ids(conn)
        self._settled = set()
        self._card_candidates, self._cards_read = set(), {}
        self._imported = set()
        self.engine.tick(now, result.held)
        result.failures += result.held
        self._drift, self._write_drift = None, None
        complete, drifted = True, None
        try:
            for change in self.source.read(self.state, now):
                if token.requested:
                    complete = False
                    break
                crashpoints.point("after_fetch")
                self._process(change, now, result)
                crashpoints.point("after_commit")
                self.heartbeat()
                self.progress(1)
        except (OneCError, FatalHTTPError, ContractError) as exc:
            drifted = self._diagnose(exc)
            if drifted is None:
                raise
            # What is queued still goes out (below), and the error is raised after it; the cursors
            # stay where they are, so every document past this point is read again once it is fixed.
            complete = False
        if self._imported:
            # What the imported past went through by ``now`` (expiries, hold ends, level terms that
            # ended) is history too: recorded here, so the first live cycle announces none of it.
            self.engine.tick(now, result.held, customers=self._imported, history=True)
            # Their history announced nothing: the site gets each one's state once, with no reason.
            self.engine.resync(sorted(self._imported), now)
        committed = False
        if self._hold_cursors and complete and not token.requested:
            bound.warning("cycle.cursors_held", reason="a document failed for a reason that is not its own")
        elif complete and not token.requested:
            updates = self.source.cursor_updates()
            crashpoints.point("before_cursor")
            if updates:
                with self.engine.store.transaction() as conn:
                    for name, value in updates.items():
                        tracking.set_cursor(conn, name, value, now)
            crashpoints.point("after_cursor")
            committed = True
        else:
            result.stopped = True
        make_durable(self.engine.store.engine)  # nothing leaves before the ledger behind it is on disk
        if committed:
            self.source.acknowledge()
        for channel in self.channels:
            if token.requested:
                result.stopped = True
                break
            result.deliveries[channel.name] = deliver_channel(
                channel.name,
                self.engine.store.transaction,
                channel.send,
                now,
                max_age_hours=channel.max_age_hours,
                stop=lambda: token.requested,
                workers=channel.workers,
                prepare=channel.prepare,
            )
            self.heartbeat()
        result.pruned = self._prune(now, token)
        result.writes_to_1c = self._writes
        self._writes = 0
        result.requests_to_1c = self.gateway.client.requests_made - requests_before
        result.finished_at = self.clock()
        result.duration_s = time.monotonic() - started
        # An idle poll every minute for months must not fill the journal: debug, as the daemon's
        # own "cycle done" line.
        busy = (
            result.documents_processed
            or result.documents_failed
            or result.failures
            or result.writes_to_1c
            or result.stopped
            or any(d.sent or d.retried or d.dead for d in result.deliveries.values())
        )
        (bound.info if busy else bound.debug)(
            "cycle.done",
            documents=result.documents_processed,
            failed=result.documents_failed,
            writes_to_1c=result.writes_to_1c,
            requests_to_1c=result.requests_to_1c,
            duration_s=round(result.duration_s, 3),
            stopped=result.stopped,
        )
        drifted = drifted or self._write_drift  # only write-backs need it: they wait, said here
        if drifted is not None:
            raise drifted
        return result

    PRUNE_BATCH = 2000

    def _prune(self, now: datetime, token: StopToken) -> int:
        """Delete finished outbox messages older than ``keep_sent_days``: at the first cycle of a
        process, then once a day; in batches, each its own transaction, between which a stop
        request is honoured (what is left goes with the next day's)."""
        if self.keep_sent_days is None or token.requested:
            return 0
        if self._pruned_at is not None and now - self._pruned_at < timedelta(days=1):
            return 0
        before = now - timedelta(days=self.keep_sent_days)
        deleted = 0
        while True:
            with self.engine.store.transaction() as conn:
                n = outbox.prune_batch(conn, before, self.PRUNE_BATCH)
            deleted += n
            self.heartbeat()
            if n < self.PRUNE_BATCH:
                self._pruned_at = now
                break
            if token.requested:
                break
        if deleted:
            log.info("outbox.pruned", deleted=deleted, sent_before=before.isoformat())
        return deleted

    def _diagnose(
        self, exc: BridgeError, *, hint: str = DRIFT_HINT, quote: bool = True
    ) -> ContractError | None:
        """1C refusing a query as malformed (400) where the same query worked before, or rows
        lacking a field the mapping names (``Gateway._whole``): has 1C's ``$metadata`` lost what
        the mapping names (someone changed the OData content)? Read it at most once a cycle.
        ``None`` when it has not: the error has another cause. ``quote`` adds 1C's own words
        (left out where the caller puts them first); ``hint`` says what waits meanwhile."""
        if getattr(exc, "status", None) != 400 and not isinstance(exc, ContractError):
            return None
        with self._drift_lock:
            if self._drift is None:
                now, seen = self.clock(), self._drift_seen
                if seen is not None and seen[0] == str(exc) and now - seen[1] < DRIFT_RECHECK:
                    missing = seen[2]  # the same refusal as a cycle ago: the same answer
                else:
                    missing = metadata_drift(self.gateway.client, self.gateway.mapping)
                    self._drift_seen = (str(exc), now, missing)
                self._drift = missing or False
        lacks = self._drift
        if not isinstance(lacks, list):
            return None
        said = [f"1C said: {exc}"] if quote and not isinstance(exc, ContractError) else []
        return ContractError([*lacks, *said, hint], error=str(exc))

    _writes = 0
    _hold_cursors = False
    _drift: list[str] | bool | None = None  # this cycle's reading of $metadata after a 400
    _write_drift: ContractError | None = None  # what a write-back found 1C lacks, said at the end

    # --- one document --------------------------------------------------------------------------------

    def _process(self, change: Any, now: datetime, result: CycleResult) -> None:
        fields = self.gateway.mapping.orders.fields if change.entity == "order" else None
        customer = (change.row or {}).get(fields.customer) if fields is not None else None
        with bound_contextvars(doc=change.key, entity=change.entity, customer=customer):
            self._process_bound(change, now, result)

    def _process_bound(self, change: Any, now: datetime, result: CycleResult) -> None:
        doc = log
        try:
            if change.entity == "order":
                self._order(change, now)
            elif change.entity == "return":
                if change.row is not None:
                    ret = self.gateway.return_doc(change.row)
                    applied = self.engine.apply_return(ret, now, history=self.history)
                    if self.history and applied.customer_id is not None:
                        self._imported.add(applied.customer_id)
            elif change.entity == "customer":
                self._customer(change.key, change.row, now)
            elif change.entity == "card":
                self._card(change, now)
            else:
                doc.debug("cycle.skip_entity")
                return
            result.documents_processed += 1
            result.by_entity[change.entity] = result.by_entity.get(change.entity, 0) + 1
            if change.key in self._quarantined:
                with self.engine.store.transaction() as conn:
                    tracking.release_quarantine(conn, change.key)
                self._quarantined.discard(change.key)
        except DocumentError as exc:
            result.documents_failed += 1
            number = str((change.row or {}).get("Number") or "")
            reason = exc.reason
            result.failures.append(f"{change.entity} {number or change.key}: {reason}")
            doc.error("cycle.quarantined", reason=reason, field=exc.field, number=number)
            self._quarantined.add(change.key)
            tracking.quarantine(
                self.engine.store.engine,
                doc_id=change.key,
                version=change.version,
                kind=change.entity,
                number=number,
                reason=reason,
                field=exc.field,
                now=now,
            )
        except TransientError:
            raise  # 1C or the database went away: the cycle ends, the next one retries
        except FatalHTTPError as exc:
            if exc.status is None or not 200 <= exc.status < 300:
                self._not_the_document(change, exc, result, doc)
                return
            # An HTML page with 200 in place of data (1C's «сеанс завершён, повторите попытку»,
            # an IIS hiccup) says nothing about this document: end the cycle like any transient
            # fault, so the next one reads it again.
            raise TransientError(f"1C answered a page instead of data: {exc}", **exc.fields) from exc
        except BridgeError as exc:
            self._not_the_document(change, exc, result, doc)

    def _not_the_document(self, change: Any, exc: BridgeError, result: CycleResult, doc: Any) -> None:
        """A failure that is 1C's, not the document's: report it and hold the cursors back, so the
        document is read again next cycle instead of falling behind the watermark unprocessed."""
        exc = self._diagnose(exc) or exc  # a read the OData content no longer allows: say what is gone
        result.documents_failed += 1
        result.failures.append(f"{change.entity} {change.key}: {exc}")
        result.held.append(result.failures[-1])
        self._hold_cursors = True
        doc.error("cycle.document_failed", error=str(exc))

    def _order(self, change: Any, now: datetime) -> None:
        if change.row is None:  # deleted from 1C outright: undo everything it did
            previous = self.engine.order_snapshot(change.key)
            if previous is not None:
                self.engine.apply_order(replace(previous, deleted=True, version=change.version), now)
            return
        card_field = self.gateway.mapping.orders.fields.card
        cards = self.gateway.card_numbers([change.row.get(card_field)] if card_field else [])
        order = self.gateway.order(change.row, cards)
        order = self._resolve_card(order)
        assert order.customer_id is not None
        known, has_card = self._known(order.customer_id)
        # Read the partner from 1C when the bridge does not know them yet.
        contacts = None if known else self._read_customer(order.customer_id)
        if self.engine.card_prefix is not None and not has_card:
            for card, version in self._cards_of(order.customer_id)[:1]:
                self.engine.adopt_card(card, now, version)  # keep the number 1C already has

        def prepare(conn: Connection) -> None:
            if contacts is not None:
                tracking.set_contacts(conn, order.customer_id or "", **contacts)

        applied = self.engine.apply_order(order, now, history=self.history, prepare=prepare)
        if self.history and applied.customer_id is not None:
            self._imported.add(applied.customer_id)

    def _known(self, customer_id: str) -> tuple[bool, bool]:
        """Whether the bridge has read the partner from 1C, and whether they have a card (which
        matters only when the bridge issues cards); no database read for a customer already seen
        settled in this cycle."""
        if customer_id in self._settled:
            return True, True
        with self.engine.store.engine.connect() as conn:
            version, has_card = tracking.customer_known(conn, customer_id)
        if version and (has_card or self.engine.card_prefix is None):
            self._settled.add(customer_id)
        return bool(version), has_card

    def _cards_of(self, customer_id: str) -> list[tuple[Card, str]]:
        """The cards 1C has for a partner, read together with those of every partner this cycle met
        and has not asked about yet: a first read of thousands of new customers costs a request per
        few dozen of them, not one each. 1C is read at most a few minutes before the order is
        applied (a card made in between is found as if it came right after the read)."""
        key = customer_id.lower()
        if key in self._cards_read:
            return self._cards_read.pop(key)
        if key not in self._card_candidates:
            return self.gateway.cards_of(customer_id)
        self._cards_read = self.gateway.cards_of_many(self._card_candidates)
        self._card_candidates = set()
        return self._cards_read.pop(key, [])

    def _card(self, change: Any, now: datetime) -> None:
        if change.row is None:
            return
        card = self.gateway.card(change.row)
        # Apply first, remember the version after: a death in between re-reads the card and
        # card_issued is a no-op the second time; the other way round the issue would be lost.
        if card is not None and card.status is CardStatus.ISSUED:
            self.engine.card_issued(card.customer_id, now)
        with self.engine.store.transaction() as conn:
            tracking.set_card_version(conn, change.key, change.version)

    def _resolve_card(self, order: Order) -> Order:
        """An order naming a card instead of a customer: find the owner, refuse a name mismatch."""
        if order.customer_id is not None or not order.card_number:
            return order
        owner = self.engine.resolve_customer(order.card_number)
        if owner is None:
            raise DocumentError(
                f"order {order.number}: card {order.card_number} is unknown to the loyalty program; "
                f"check the number or set the partner",
                document=order.id,
                field="card",
            )
        if order.card_holder_name:
            with self.engine.store.engine.connect() as conn:
                name = str(tracking.contacts(conn, owner)["name"] or "")
            if name and not _same_person(order.card_holder_name, name):
                raise DocumentError(
                    f"order {order.number}: card {order.card_number} belongs to «{name}», "
                    f"not «{order.card_holder_name}»; check the card or set the partner",
                    document=order.id,
                    field="card",
                )
        return replace(order, customer_id=owner)

    def _read_customer(self, customer_id: str, row: dict[str, Any] | None = None) -> dict[str, Any] | None:
        if row is None:
            found = self.gateway.customer(customer_id)
            if found is None:
                return None
            customer, row = found
        else:
            from bridge.onec.translate import customer_from_row

            customer = customer_from_row(row, self.gateway.mapping)
        return {
            "name": customer.name,
            "phone": customer.phone,
            "email": customer.email,
            "version": str(row.get("DataVersion") or ""),
        }

    def _customer(self, key: str, row: dict[str, Any] | None, now: datetime) -> None:
        if row is None:
            return
        contacts = self._read_customer(key, row)
        if contacts is None:
            return
        self._settled.discard(key)  # the version below may be empty (1C sent none): ask again
        if self.engine.card_prefix is not None and key.lower() not in self._cards_read:
            self._card_candidates.add(key.lower())
        with self.engine.store.transaction() as conn:
            # Remember a partner met before any of their orders, so the order does not read them again.
            self.engine.store.lock_customer(conn, key, now)
            tracking.set_contacts(conn, key, **contacts)

    # --- write-back ------------------------------------------------------------------------------------

    def _write_back(self, msg: OutboxMessage) -> Bookkeeping | None:
        # The DataVersions the write produced are remembered in the transaction that marks the
        # message sent (one commit, after 1C answered; see ``deliver_channel``): a death before it
        # re-sends the message, which re-reads the object and finds nothing left to change.
        recorded: list[tuple[str, str, str, datetime]] = []

        def record(obj: str, key: str, version: str) -> None:
            recorded.append((obj, key, version, self.clock()))

        def remember(conn: Connection) -> None:
            for obj, key, version, at in recorded:
                if obj == "cards" and msg.kind == "card":
                    tracking.set_card_onec_id(conn, msg.payload["number"], key)
                tracking.record_own_version(conn, obj, key, version, at)

        try:
            self._write(msg, record)
        except BaseException as exc:
            if recorded:  # not marked sent: written with the failure (``deliver_channel``)
                exc.bookkeeping = remember  # type: ignore[attr-defined]
            raise
        return remember if recorded else None

    def _before_batch(self, batch: list[OutboxMessage]) -> None:
        """Look the batch's new card numbers up in 1C together, not one request per card (each
        create is still checked against 1C's cards just before it is sent, as ``Gateway._card``
        says). A failure leaves each card to look itself up."""
        numbers = [str(m.payload.get("number") or "") for m in batch if m.kind == "card"]
        if len(numbers) < 2:
            return
        try:
            self.gateway.look_up_cards(numbers)
        except BridgeError as exc:
            log.info("onec.card_lookup_deferred", cards=len(numbers), error=str(exc))

    def _write(self, msg: OutboxMessage, record: Callable[[str, str, str], None]) -> None:
        try:
            outcome = self.gateway.write(msg, record)
        except OneCError as exc:
            # 1C refusing a write-back is most often a lock conflict («нарушение блокировки
            # данных») or a period closed for a while: retry it with the outbox's backoff (dead
            # after the channel's max age) instead of losing the loyalty results at once. A 400
            # may be the OData content lost a field: then say which (``_diagnose``).
            drift = self._write_drifted(exc, quote=False)
            reason = f"{exc} — {drift}" if drift else str(exc)  # 1C's own words first: never cut off
            raise TransientError(f"1C refused the write-back, will retry: {reason}", **exc.fields) from exc
        except ContractError as exc:  # reference data 1C now sends without a mapped field
            lost = self._write_drifted(exc) or exc
            raise TransientError(
                f"the write-back waits for 1C's OData content: {lost}", **exc.fields
            ) from exc
        except FatalHTTPError as exc:
            if exc.status is None or not 200 <= exc.status < 300:
                raise
            # An HTML page with 200 (IIS/1C «сеанс завершён, повторите попытку») in place of 1C's
            # answer: the write may not have happened; re-reading and re-writing is safe.
            raise TransientError(f"1C answered a page, will retry: {exc}", **exc.fields) from exc
        if outcome == "written":
            with self._count_lock:  # write-backs may be sent by several threads (``onec.write_workers``)
                self._writes += 1
        log.debug("onec.write_back", kind=msg.kind, target=msg.target, outcome=outcome)

    def _write_drifted(self, exc: BridgeError, *, quote: bool = True) -> ContractError | None:
        """``_diagnose`` for a write-back: the message waits in the outbox with the diagnosis, and
        the cycle ends with it (the daemon logs it, ``once`` exits 1) although every document went
        through, so a lost field only writes need does not go unnoticed behind quiet retries."""
        drift = self._diagnose(exc, hint=WRITE_DRIFT_HINT, quote=quote)
        if drift is not None:
            with self._drift_lock:
                self._write_drift = self._write_drift or drift
        return drift


def _same_person(given: str, known: str) -> bool:
    """A phone order's name matches the partner when every word given appears in the partner's name."""
    words = {w.strip(".,").casefold().replace("ё", "е") for w in given.split() if w.strip(".,")}
    have = {w.strip(".,").casefold().replace("ё", "е") for w in known.split()}
    return bool(words) and words <= have
