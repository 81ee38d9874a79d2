"""The OData client for 1C:Trade Management 11 (``…/odata/standard.odata/``, OData v3).

Owns every HTTP exchange with 1C's standard OData interface: reads by key, windowed and paged
collection reads, reads by sets of keys, PATCH/POST writes, posting, ``$metadata`` and the
exchange-plan functions. Each answer goes through :mod:`bridge.onec.normalize` (BOM, HTML pages,
``odata.error``, empty GUIDs/dates, naive local times, Int64 strings, ``Decimal``) and every call
through the one retry policy of :mod:`bridge.net`, with explicit ``(connect, read)`` timeouts and
UTF-8 Basic auth.

Retries and idempotency (why each kind of call is retried the way it is):
- GET (``get_entity``, windows, keys, ``$metadata``): retried on 408/429/5xx, timeouts, resets,
  truncated bodies. A 5xx ``odata.error`` on a read is retried too (lock conflicts pass).
- PATCH and ``Post``: retried on 5xx *pages*, broken bodies and faults before the request was sent —
  1C has finished with the request, and repeating it leads to the same end state (PATCH sends
  target values and whole tabular sections; re-posting replaces the document's movements). A
  PATCH that got no answer at all (a read timeout, a reset after sending) raises
  :class:`~bridge.net.OutcomeUnknownError` instead, with ``retry_after`` the read timeout: 1C may
  still be working on it, and a blind repeat carries tabular sections built from the read before
  it — if anything changes the object between the two landing (an operator cancelling the rows,
  1C finishing the first one late), the older section wins. The caller re-reads and rebuilds
  after that wait (:meth:`ODataClient.patch_with_version`, the outbox's retry). ``Post`` without
  an answer is still repeated: it sends no data. A 5xx ``odata.error`` (code ``-1``) on a write is
  1C's business logic refusing — a posting handler, a closed period, missing rights — and is raised as
  :class:`~bridge.errors.OneCError` at once: repeating cannot change the answer, only re-run
  handlers and lengthen the cycle.
- POST create: retried only when the request provably never reached 1C (connect errors/timeouts)
  or 1C said it did not process it (408, 429, 503). A read timeout, a reset after sending, or
  500/502/504 raise :class:`~bridge.net.OutcomeUnknownError`: the document may exist; the caller
  must look for it before creating again, and not sooner than ``retry_after`` (the read timeout
  after a timeout or a reset: 1C goes on with a request whose caller stopped waiting, and a look
  made before it finishes finds nothing and creates a second object).
- Exchange-plan functions (``SelectChanges``/``NotifyChangesReceived``): retried like ``Post``; both
  are repeatable for the same ``MessageNo``.

Must not import bridge.store, bridge.site, bridge.notify or bridge.service.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import requests
import structlog

from bridge.errors import DocumentError, FatalHTTPError, OneCError, TransientError
from bridge.net import (
    OutcomeUnknownError,
    RetryPolicy,
    basic_auth_utf8,
    call_with_retry,
    certificate_refused,
    classify_exception,
    is_connect_failure,
    make_session,
    short_reason,
)
from bridge.onec import normalize
from bridge.onec.literals import (
    DEFAULT_URL_BUDGET,
    SAFE,
    Filter,
    KeyChunk,
    and_,
    encode,
    entity_path,
    ge,
    key_chunks,
    key_path,
    lt,
    query_string,
    readable_path,
)
from bridge.onec.odata_windows import FetchPage, iter_pages, walk_windows

__all__ = ["ODataClient", "OutcomeUnknownError"]

log = structlog.get_logger(__name__)


Kind = Literal["read", "write", "create"]


class ODataClient:
    """A client for one 1C infobase's OData publication.

    Args:
        base_url: ``http://host/<infobase>/odata/standard.odata/``.
        username: the 1C user (Cyrillic is fine: sent as UTF-8).
        password: its password.
        tz: the infobase server's zone; 1C's dates are naive wall-clock times in it.
        timeout_s: read timeout in seconds (connect timeout ``min(timeout_s, 10)``), or an explicit
            ``(connect, read)`` pair.
        page_size: ``$top`` of a page.
        url_budget: byte budget of an encoded query string (IIS refuses past 2048).
        retry_policy: see :class:`bridge.net.RetryPolicy`.
        session: a ``requests.Session`` to reuse (tests, connection pooling); auth and timeouts are
            passed on every request regardless.
        sleep: injected into the retry loop (tests record delays instead of sleeping).
        rng: jitter source for backoff.
        clock: monotonic clock for the retry deadline.
        max_window_pages: pages after which :meth:`iter_windows` splits a window.
        int64_fields: fields 1C sends as Int64 strings.
        conflict_attempts: re-read/re-PATCH rounds of :meth:`patch_with_version` on 412.

    Attributes:
        requests_made: HTTP requests sent so far, retries included (benchmarks, tests).
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        tz: tzinfo,
        timeout_s: float | tuple[float, float] = 60.0,
        page_size: int = 500,
        url_budget: int = DEFAULT_URL_BUDGET,
        retry_policy: RetryPolicy | None = None,
        session: requests.Session | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: Any = None,
        clock: Callable[[], float] = time.monotonic,
        max_window_pages: int = 20,
        int64_fields: Iterable[str] = normalize.DEFAULT_INT64_FIELDS,
        conflict_attempts: int = 3,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.tz = tz
        if isinstance(timeout_s, tuple):
            self.timeout: tuple[float, float] = (float(timeout_s[0]), float(timeout_s[1]))
        else:
            self.timeout = (min(float(timeout_s), 10.0), float(timeout_s))
        self.page_size = page_size
        self.url_budget = url_budget
        self.retry_policy = retry_policy or RetryPolicy()
        self._auth = basic_auth_utf8(username, password)
        self._session = session if session is not None else make_session(timeout=self.timeout)
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self.max_window_pages = max_window_pages
        self.int64_fields = frozenset(int64_fields)
        self.conflict_attempts = conflict_attempts
        self.requests_made = 0
        self._count_lock = threading.Lock()
        self._local_times = normalize.LocalTimes(tz)

    # ------------------------------------------------------------------ transport

    def _call(
        self,
        method: str,
        path: str,
        query: str = "",
        *,
        kind: Kind = "read",
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        expect: normalize.Expect = "json",
    ) -> tuple[requests.Response, Any]:
        """One logical call: send, check, and (for JSON) parse inside the retried attempt.

        Parsing belongs inside the attempt: a truncated body is a transport fault worth a retry.
        """
        url = self.base_url + path + (f"?{query}" if query else "")
        what = f"{method} {readable_path(path)}"
        write = kind != "read"
        idempotent = kind != "create"
        # A PATCH with no answer is not repeated blind (see the module's docstring).
        repeat_unanswered = idempotent and method != "PATCH"
        sent_headers = {"Accept": "application/json" if expect == "json" else "application/xml, */*"}
        if data is not None:
            if data:
                sent_headers["Content-Type"] = "application/json;charset=utf-8"
            else:  # 1C (and IIS) refuse a body-less POST without it
                sent_headers["Content-Length"] = "0"
        sent_headers.update(headers or {})

        def attempt() -> tuple[requests.Response, Any]:
            with self._count_lock:  # write-backs may be sent from several threads
                self.requests_made += 1
            try:
                response = self._session.request(
                    method,
                    url,
                    data=data,
                    headers=sent_headers,
                    auth=self._auth,
                    timeout=self.timeout,
                    allow_redirects=not write,  # a redirected POST turns into a GET
                )
            except requests.RequestException as exc:
                settle = self.timeout[1]  # 1C may still be working on it: as long again
                raise classify_exception(
                    exc,
                    url=url,
                    idempotent=repeat_unanswered,
                    settle_s=settle,
                    summary=self._unreachable(exc),
                ) from exc
            normalize.check_answer(
                response.status_code,
                response.headers,
                response.content,
                url=url,
                what=what,
                expect=expect,
                write=write,
                idempotent=idempotent,
            )
            body = response.content
            if expect != "json" or not normalize.strip_bom(body).strip():
                return response, None
            try:
                return response, normalize.parse_json(body, url=url)
            except TransientError as exc:
                if idempotent:
                    raise
                # 1C answered success, so the object exists: repeating would create a second one.
                raise OutcomeUnknownError(f"{what}: {exc}", url=url, status=response.status_code) from exc

        def on_retry(attempt_no: int, delay: float, error: BaseException) -> None:
            log.warning(
                "onec.retry", call=what, attempt=attempt_no, delay_s=round(delay, 3), error=str(error)
            )

        return call_with_retry(
            attempt,
            self.retry_policy,
            sleep=self._sleep,
            rng=self._rng,
            clock=self._clock,
            what=what,
            on_retry=on_retry,
        )

    def _unreachable(self, exc: requests.RequestException) -> str:
        """What an administrator needs when 1C did not answer: the host, why, and what to check
        (not the percent-encoded URL, twice, that ``requests`` puts in its message)."""
        host = urlsplit(self.base_url).netloc or self.base_url
        why = certificate_refused(exc)
        if why is not None:  # 1C is up, its certificate is not trusted: what to do is the session's hint
            hint = getattr(self._session, "tls_hint", None)
            return f"certificate verify failed for {host} ({why})" + (f": {hint}" if hint else "")
        if is_connect_failure(exc):
            return (
                f"cannot reach 1C at {host}: {short_reason(exc)}; "
                "is 1C / its web server up? check onec.odata_url"
            )
        return (
            f"no usable answer from 1C at {host}: {short_reason(exc)}; is 1C / its web server up "
            f"and not overloaded? check onec.odata_url (and onec.timeout_s, now {self.timeout[1]:g} s)"
        )

    def _json(self, method: str, path: str, query: str = "", **kwargs: Any) -> Any:
        return self._call(method, path, query, **kwargs)[1]

    def _row(self, payload: Any, what: str) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise FatalHTTPError(f"{what}: expected a JSON object from 1C, got {type(payload).__name__}")
        flat = self._flat_row(payload)
        if flat is not None:
            return flat
        return normalize.normalize_row(payload, self.tz, int64_fields=self.int64_fields)

    def _flat_row(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """``normalize_row`` for a row of plain strings (the narrow ``Ref_Key,DataVersion`` scans
        read tens of thousands of them per cycle); ``None`` for any other row.

        The same result without the per-value dispatch: only a string with ``-`` and ``T`` where a
        naive ISO date has them can be a date, and those go through ``normalize_value`` itself.
        Annotations, Int64 fields and values with a ``…_Type`` sibling take the general path.
        """
        out: dict[str, Any] = {}
        for key, value in row.items():
            if (
                value.__class__ is not str
                or key in self.int64_fields
                or "@" in key
                or key.startswith("odata.")
                or key + "_Type" in row
            ):
                return None
            if value[4:5] == "-" and value[10:11] == "T":
                out[key] = self._local_times(value, key)
            elif value == normalize.EMPTY_GUID:
                out[key] = None
            else:
                out[key] = normalize.clean_text(value)
        return out

    def _rows(self, path: str, query: str) -> list[dict[str, Any]]:
        payload = self._json("GET", path, query)
        rows = payload.get("value") if isinstance(payload, dict) else None
        what = readable_path(path)
        if not isinstance(rows, list):
            raise FatalHTTPError(f"GET {what}: expected a JSON object with 'value' rows from 1C")
        return [self._row(row, what) for row in rows]

    # ------------------------------------------------------------------ reads

    def get_entity(
        self, entity_set: str, key: str, select: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        """Read one entity by ``Ref_Key``; ``None`` when 1C answers 404 with ``odata.error``.

        Args:
            entity_set: ``Document_ЗаказКлиента``.
            key: the ``Ref_Key`` GUID.
            select: fields to read (tabular sections by name); all when ``None``.
        """
        found = self._entity(entity_set, key, select)
        return found[0] if found is not None else None

    def _entity(
        self, entity_set: str, key: str, select: Sequence[str] | None
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``get_entity``'s row and the object 1C sent for it (before normalising)."""
        try:
            payload = self._json("GET", key_path(entity_set, key), query_string(select=select))
        except OneCError as exc:
            if exc.status == 404:
                return None
            raise
        return self._row(payload, f"{entity_set}({key})"), payload

    def query(
        self,
        entity_set: str,
        *,
        filter: Filter | str | None = None,
        select: Sequence[str] | None = None,
        orderby: Sequence[str] | None = None,
        top: int | None = None,
        skip: int | None = None,
    ) -> list[dict[str, Any]]:
        """One page of ``entity_set`` (always bounded: ``top`` defaults to the page size)."""
        query = query_string(
            select=select,
            filter=filter,
            top=top or self.page_size,
            skip=skip or None,
            orderby=orderby,
        )
        return self._rows(entity_path(entity_set), query)

    def iter_all(
        self,
        entity_set: str,
        *,
        filter: Filter | str | None = None,
        select: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every row of a (reference-sized) set or filter, ``$top`` page by page, in ``Ref_Key`` order.

        For documents use the date windows (``iter_windows``): deep ``$skip`` gets slow in 1C.
        """
        page = page_size or self.page_size
        skip = 0
        while True:
            rows = self.query(
                entity_set, filter=filter, select=select, orderby=["Ref_Key"], top=page, skip=skip
            )
            yield from rows
            if len(rows) < page:
                return
            skip += page

    def iter_window(
        self,
        entity_set: str,
        date_field: str,
        start: datetime,
        end: datetime,
        filter: Filter | str | None = None,
        select: Sequence[str] | None = None,
        orderby: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the rows with ``start <= date_field < end``, page by page (``$top``/``$skip``).

        Ordered by ``date_field`` then ``Ref_Key`` unless ``orderby`` is given, so pages are stable
        while nothing changes; a document inserted mid-scan may shift a page (a row seen twice or
        missed): callers dedupe by ``Ref_Key`` and the reconciliation sweep catches the rest.
        Stops at the first short page.
        """
        size = page_size or self.page_size
        fetch = self._window_fetcher(entity_set, date_field, filter, select, orderby, size)
        for rows in iter_pages(fetch, start, end, size):
            yield from rows

    def _window_fetcher(
        self,
        entity_set: str,
        date_field: str,
        extra: Filter | str | None,
        select: Sequence[str] | None,
        orderby: Sequence[str] | None,
        size: int,
    ) -> FetchPage:
        order = list(orderby) if orderby else [date_field, "Ref_Key"]
        path = entity_path(entity_set)

        def fetch(low: datetime, high: datetime, skip: int) -> list[dict[str, Any]]:
            if not low < high:
                raise ValueError(f"empty window [{low}, {high})")
            window = and_(ge(date_field, low, self.tz), lt(date_field, high, self.tz), extra)
            return self._rows(
                path, query_string(select=select, filter=window, orderby=order, top=size, skip=skip or None)
            )

        return fetch

    def iter_windows(
        self,
        entity_set: str,
        date_field: str,
        start: datetime,
        end: datetime,
        window: timedelta,
        filter: Filter | str | None = None,
        select: Sequence[str] | None = None,
        page_size: int | None = None,
        max_pages: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Walk ``[start, end)`` in consecutive adaptive date windows, yielding rows (a generator).

        Memory stays bounded (one page plus the keys of one second). A window still going after
        ``max_pages`` full pages is split: the scan restarts at the date of the last row read and
        the following windows are halved; a window that fits one page doubles again, up to
        ``window`` (see :mod:`bridge.onec.odata_windows`).

        Args:
            window: the (largest) window length.
            max_pages: full pages before a split (default ``max_window_pages``).
            Others as in :meth:`iter_window`; ``Ref_Key`` and ``date_field`` are added to ``select``.
        """
        size = page_size or self.page_size
        if select is not None:
            select = [*select, *(f for f in ("Ref_Key", date_field) if f not in select)]
        fetch = self._window_fetcher(entity_set, date_field, filter, select, None, size)

        def on_split(at: datetime, pages: int) -> None:
            log.info("onec.window_split", entity_set=entity_set, at=at.isoformat(), pages=pages)

        yield from walk_windows(
            fetch, date_field, start, end, window, size, max_pages or self.max_window_pages, on_split
        )

    def get_by_keys(
        self,
        entity_set: str,
        keys: Iterable[str],
        select: Sequence[str] | None = None,
        field: str = "Ref_Key",
        strings: bool = False,
    ) -> list[dict[str, Any]]:
        """Read the entities whose ``field`` is one of ``keys`` (GUIDs, or plain ``strings``), with
        ``or`` chains within the budget. For ``Ref_Key`` each chain is one request (``$top`` = its
        length); for another field each chain is paged. Missing keys are absent from the result."""
        return list(self.iter_by_keys(entity_set, keys, select=select, field=field, strings=strings))

    def key_chunks(
        self,
        keys: Iterable[str],
        select: Sequence[str] | None = None,
        field: str = "Ref_Key",
        strings: bool = False,
    ) -> Iterator[KeyChunk]:
        """The ``or`` chains :meth:`iter_by_keys` sends for ``keys``: one request each (unique keys)."""
        top_room = max(self.page_size, 10**6)  # an upper bound for the width of $top / $skip
        skip = top_room if field != "Ref_Key" else None
        base_len = len(query_string(select=select, top=top_room, skip=skip)) + len("&$filter=")
        return key_chunks(keys, field, self.url_budget, base_len, strings=strings)

    def iter_by_keys(
        self,
        entity_set: str,
        keys: Iterable[str],
        select: Sequence[str] | None = None,
        field: str = "Ref_Key",
        strings: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Generator form of :meth:`get_by_keys`."""
        unique = field == "Ref_Key"
        path = entity_path(entity_set)
        for chunk in self.key_chunks(keys, select, field, strings):
            if unique:
                yield from self._rows(
                    path, query_string(select=select, filter=chunk.filter, top=len(chunk.keys))
                )
                continue
            skip = 0
            while True:
                query = query_string(  # paged by a field that is not the key: a stable order
                    select=select,
                    filter=chunk.filter,
                    top=self.page_size,
                    skip=skip or None,
                    orderby=("Ref_Key",),
                )
                rows = self._rows(path, query)
                yield from rows
                if len(rows) < self.page_size:
                    break
                skip += self.page_size

    def read_version(self, entity_set: str, key: str) -> str:
        """The entity's current ``DataVersion`` (changes on every write, the bridge's own included).

        Raises:
            DocumentError: the entity does not exist.
        """
        row = self.get_entity(entity_set, key, select=["DataVersion"])
        if row is None or not row.get("DataVersion"):
            raise DocumentError("not found in 1C", document=f"{entity_set}({key})")
        return str(row["DataVersion"])

    def metadata(self) -> bytes:
        """``$metadata`` (CSDL XML, BOM stripped), for mapping validation."""
        response, _ = self._call("GET", "$metadata", expect="xml")
        return normalize.strip_bom(response.content)

    # ------------------------------------------------------------------ writes

    def patch(
        self, entity_set: str, key: str, body: Mapping[str, Any], if_match: str | None = None
    ) -> dict[str, Any]:
        """PATCH changed fields (tabular sections whole); return 1C's answer's ``Ref_Key`` and new
        ``DataVersion`` (the rest of the object it echoes is not read).

        ``If-Match`` is sent when given; 1C is documented to answer 412 on a mismatch but reported
        to ignore it, hence :meth:`patch_with_version`.

        Raises:
            OutcomeUnknownError: no answer came (read timeout, reset after sending); 1C may still
                apply it. Re-read and rebuild, not sooner than ``retry_after``.
        """
        headers = {"If-Match": if_match} if if_match else None
        data = normalize.encode_json(body, self.tz, int64_fields=self.int64_fields)
        payload = self._json(
            "PATCH", key_path(entity_set, key), query_string(), kind="write", data=data, headers=headers
        )
        if payload is None:
            return {}
        if isinstance(payload, dict):
            # 1C answers with the whole object; only its key and new version are of use, and
            # normalising every row of a large order's tabular section costs more than the request.
            payload = {name: payload[name] for name in ("Ref_Key", "DataVersion") if name in payload}
        return self._row(payload, f"{entity_set}({key})")

    def patch_with_version(
        self,
        entity_set: str,
        key: str,
        build_body: Callable[[dict[str, Any]], Mapping[str, Any]],
        select: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Re-read, build, PATCH with ``If-Match``; on 412 re-read and rebuild (``conflict_attempts``).

        Args:
            build_body: called with the fresh entity (``Ref_Key``, ``DataVersion`` and ``select``);
                returns the fields to change — every tabular section it touches must be complete
                (1C replaces a section with what is sent). An empty body writes nothing.
            select: the fields and tabular sections ``build_body`` needs.

        Returns:
            1C's answer to the PATCH (record its ``DataVersion``: it is the bridge's own write), or
            the freshly read entity when nothing had to change.

        Raises:
            DocumentError: the entity does not exist.
        """
        fields = ["Ref_Key", "DataVersion", *(f for f in select if f not in ("Ref_Key", "DataVersion"))]
        for round_no in range(1, self.conflict_attempts + 1):
            found = self._entity(entity_set, key, fields)
            if found is None:
                raise DocumentError("not found in 1C", document=f"{entity_set}({key})")
            current, sent = found
            body = build_body(current)
            if not body:
                return current
            body = normalize.as_read(body, current, sent)  # what the bridge left alone, as 1C has it
            try:
                return self.patch(
                    entity_set, key, body, if_match=str(current.get("DataVersion") or "") or None
                )
            except (FatalHTTPError, OneCError) as exc:
                if exc.status != 412 or round_no == self.conflict_attempts:
                    raise
                log.info("onec.version_conflict", entity_set=entity_set, key=key, round=round_no)
        raise AssertionError("unreachable")  # pragma: no cover

    def create(self, entity_set: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a new entity; return 1C's answer (201, with ``Ref_Key`` and ``DataVersion``).

        Raises:
            OutcomeUnknownError: the request may have reached 1C; look the entity up before retrying.
        """
        data = normalize.encode_json(body, self.tz, int64_fields=self.int64_fields)
        payload = self._json("POST", entity_path(entity_set), query_string(), kind="create", data=data)
        return self._row(payload, entity_set) if payload is not None else {}

    def post_document(self, entity_set: str, key: str, operational: bool = False) -> None:
        """Post a document: ``POST …(guid'…')/Post?PostingModeOperational=false``, empty body."""
        flag = "true" if operational else "false"
        path = key_path(entity_set, key) + "/Post"
        self._call("POST", path, f"PostingModeOperational={flag}", kind="write", data=b"", expect="any")

    def post_action(self, path: str, params: Mapping[str, str]) -> bytes:
        """Call a bound function such as ``ExchangePlan_X/SelectChanges``; return the raw (Atom) body.

        Args:
            path: relative to the base URL, e.g. ``"SelectChanges"``.
            params: already-rendered literals, e.g.
                ``{"DataExchangePoint": "'…/ExchangePlan_X(guid'…')'", "MessageNo": "5"}``.
        """
        query = "&".join(f"{encode(k)}={encode(v)}" for k, v in params.items())
        response, _ = self._call(
            "POST", quote(path, safe=SAFE + "/"), query, kind="write", data=b"", expect="xml"
        )
        return normalize.strip_bom(response.content)
