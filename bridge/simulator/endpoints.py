"""The OData v3 resources of the simulated ``standard.odata``, in 1C's dialect, without HTTP plumbing.

Owns ``ODataService.handle(method, resource, query, headers, body) -> Reply`` and
``classify(...)`` (the request kind the store counts). Resources: the service root, ``$metadata``,
``Set`` (GET with ``$select $filter $top $skip $orderby $inlinecount``, POST to create),
``Set/$count``, ``Set(guid'…')`` (GET, PATCH, DELETE), ``Set(guid'…')/Post`` and ``/Unpost``, and
the exchange plan's ``SelectChanges`` / ``NotifyChangesReceived``. Quirks kept on purpose:
``$inlinecount=allpages`` ignores ``$top``/``$skip``; ``$orderby=Ref_Key`` follows a hash, not GUID
order (so does the default order); ``If-Match`` is recorded but ignored; errors are ``odata.error``
with Russian messages. A ``Ref_Key`` ``or`` chain is served by key and a ``Date`` range in the
filter's ``and`` chain from the store's date index (the same answer as visiting every row, as 1C's
own indexes give). Must not import anything of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from bridge.simulator.atom import changes_feed
from bridge.simulator.filters import FilterError, compile_query
from bridge.simulator.metadata import build_metadata
from bridge.simulator.schema import EntitySet
from bridge.simulator.store import DATE, EXCHANGE_PLAN, SimStore, now
from bridge.simulator.wire import WireError, dumps, parse_json, render_row

JSON_TYPE = "application/json;odata=minimalmetadata;streaming=true;charset=utf-8"
XML_TYPE = "application/xml;charset=utf-8"
ATOM_TYPE = "application/atom+xml;type=feed;charset=utf-8"

_ENTITY = re.compile(
    r"^(?P<set>[^()/]+)"
    r"(?:\((?:Ref_Key=)?guid'(?P<key>[0-9a-fA-F-]{36})'\))?"
    r"(?:/(?P<action>\$count|[^/]+))?$"
)
_NODE = re.compile(r"ExchangePlan_(?P<plan>[^(/']+)\(guid'(?P<key>[0-9a-fA-F-]{36})'\)")
_KNOWN_OPTIONS = {"$format", "$select", "$filter", "$top", "$skip", "$orderby", "$inlinecount", "$expand"}


@dataclass(slots=True)
class Reply:
    """An HTTP answer: status, headers (without Content-Length) and body bytes."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def odata_error(status: int, message: str, code: str = "-1") -> Reply:
    """1C's error body: ``{"odata.error": {"code", "message": {"lang": "ru", "value"}}}``."""
    payload = {"odata.error": {"code": code, "message": {"lang": "ru", "value": message}}}
    return Reply(status, {"Content-Type": JSON_TYPE}, dumps(payload).encode())


def classify(method: str, resource: str, query: Mapping[str, str]) -> str:
    """The request kind counted in ``SimStore.requests`` (``unbounded`` = a GET of a set without $top)."""
    if resource in ("", "/"):
        return "service"
    if resource == "$metadata":
        return "metadata"
    if resource in ("SelectChanges", "NotifyChangesReceived"):
        return "exchange"
    m = _ENTITY.match(resource)
    if m is None:
        return "other"
    if m["action"] == "$count":
        return "count"
    if m["action"]:
        return "action"
    if m["key"]:
        return {"GET": "entity", "PATCH": "patch", "MERGE": "patch", "DELETE": "delete"}.get(method, "other")
    if method == "POST":
        return "create"
    if method == "GET":
        return "collection" if "$top" in query else "unbounded"
    return "other"


_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_KEY = re.compile(rf"Ref_Key eq guid'({_GUID})'")
_KEY_CHAIN = re.compile(rf"Ref_Key eq guid'{_GUID}'(?: or Ref_Key eq guid'{_GUID}')*")


class ODataService:
    """Answers OData requests from a ``SimStore``; ``base`` is the service root URL (ending in ``/``)."""

    def __init__(self, store: SimStore, base: Callable[[], str], *, skip_cost: float = 0.0) -> None:
        self.store = store
        self._base = base
        self.skip_cost = skip_cost  # seconds per 1000 rows skipped: deep $skip gets slow, as in 1C
        self.use_indexes = True  # False: every filter visits every row (tests compare the answers)
        self._metadata: bytes | None = None

    @property
    def base(self) -> str:
        return self._base()

    def handle(
        self, method: str, resource: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> Reply:
        try:
            return self._handle(method, resource, query, headers, body)
        except FilterError as exc:
            return odata_error(exc.status, str(exc))
        except WireError as exc:
            return odata_error(400, str(exc))

    def _handle(
        self, method: str, resource: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> Reply:
        if resource in ("", "/"):
            return self._service_root()
        if resource == "$metadata":
            if self._metadata is None:
                self._metadata = build_metadata(self.store.schema)
            return Reply(200, {"Content-Type": XML_TYPE}, self._metadata)
        if resource in ("SelectChanges", "NotifyChangesReceived"):
            if method not in ("POST", "GET"):
                return odata_error(405, "Метод не поддерживается")
            return self._exchange(resource, query)
        m = _ENTITY.match(resource)
        if m is None or m["set"] not in self.store.schema:
            return odata_error(404, f"Не найден ресурс: {resource}", code="9")
        es = self.store.schema[m["set"]]
        key, action = (m["key"] or "").lower(), m["action"]
        unknown = [k for k in query if k.startswith("$") and k not in _KNOWN_OPTIONS]
        if unknown:
            return odata_error(400, f"Неизвестный параметр запроса: {unknown[0]}")
        if "$expand" in query:
            return odata_error(501, "Симулятор не поддерживает $expand")
        if action == "$count" and method == "GET":
            rows = self._filtered(es, query)
            return Reply(200, {"Content-Type": "text/plain;charset=utf-8"}, str(len(rows)).encode())
        if action in ("Post", "Unpost") and key and method == "POST":
            return self._post(es, key, action == "Post")
        if action:
            return odata_error(404, f"Не найден ресурс: {resource}", code="9")
        if not _wants_json(query, headers) and method == "GET":
            return odata_error(406, "Поддерживается только формат JSON ($format=json)")
        if key:
            return self._entity(method, es, key, headers, body, query)
        if method == "GET":
            return self._collection(es, query)
        if method == "POST":
            return self._create(es, body)
        return odata_error(405, "Метод не поддерживается")

    # -- reading ---------------------------------------------------------------------------------

    def _filtered(self, es: EntitySet, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """The rows matching ``$filter``, in no particular order (``_order`` sorts them)."""
        expression = query.get("$filter", "")
        compiled = compile_query(expression, es)
        predicate = compiled.predicate
        if self.use_indexes:
            keys = _KEY_CHAIN.fullmatch(expression.strip())
            if keys is not None:
                # A chain of ``Ref_Key eq guid'…'``: the primary key, as 1C's own index would serve
                # it (the same rows as the scan below, without visiting every other row).
                wanted = dict.fromkeys(k.lower() for k in _KEY.findall(expression))
                rows = (self.store.row(es.name, key) for key in wanted)
                return [row for row in rows if row is not None and predicate(row)]
            window = compiled.window
            if window is not None and window.field == DATE:
                # Nothing but a Date range (the narrow scans): the index's rows are the answer.
                exact = self.store.dated(
                    es.name,
                    window.low,
                    window.high,
                    low_strict=window.low_strict,
                    high_strict=window.high_strict,
                )
                if exact is not None:
                    return exact + [row for row in self.store.undated(es.name) if predicate(row)]
            if DATE in compiled.ranges:
                # A Date range in the filter's and-chain (every window read): the rows of that
                # range from the set's date index, as 1C's document tables are indexed by date.
                low, high = compiled.ranges[DATE]
                dated = self.store.dated(es.name, low, high)
                if dated is not None:
                    dated += self.store.undated(es.name)
                    return [row for row in dated if predicate(row)]
        return [row for row in self.store.snapshot(es.name) if predicate(row)]

    def _collection(self, es: EntitySet, query: Mapping[str, str]) -> Reply:
        select = _select(es, query.get("$select"))
        rows = self._filtered(es, query)
        self._order(es, rows, query.get("$orderby"))
        payload: dict[str, Any] = {"odata.metadata": f"{self.base}$metadata#{es.name}"}
        if query.get("$inlinecount") == "allpages":
            # 1C's quirk: with $inlinecount the paging options are silently dropped.
            payload["odata.count"] = str(len(rows))
        elif query.get("$inlinecount") not in (None, "none"):
            return odata_error(400, "Неверное значение $inlinecount")
        else:
            skip, top = _int(query.get("$skip"), "$skip"), _int(query.get("$top"), "$top")
            if skip and self.skip_cost:
                time.sleep(self.skip_cost * skip / 1000)
            rows = rows[skip or 0 :]
            if top is not None:
                rows = rows[:top]
        payload["value"] = [render_row(es, row, select) for row in rows]
        return Reply(200, {"Content-Type": JSON_TYPE}, dumps(payload).encode())

    def _order(self, es: EntitySet, rows: list[dict[str, Any]], orderby: str | None) -> None:
        """Sort by ``$orderby``, ties (and no ``$orderby``) in ``Ref_Key`` hash order.

        Meant as the stable sorts of :func:`order_by_passes`; when every key is ascending (every
        window read: ``Date,Ref_Key``) one sort by the tuple of keys ending with the hash gives the
        same order (the hash is unique) in one pass instead of one per key plus one.
        """
        keys = _orderby_keys(es, orderby)
        hashed = self.store.order_hash
        if any(desc for _, desc in keys):
            order_by_passes(rows, keys, hashed)
            return
        getters: list[Callable[[dict[str, Any]], Any]] = []
        for name, _ in keys:
            if name == "Ref_Key":
                break  # unique: nothing after it can matter
            getters.append(lambda r, n=name: r.get(n))  # type: ignore[misc]
        getters.append(lambda r: hashed(r["Ref_Key"]))
        if len(getters) == 1:
            rows.sort(key=getters[0])
        elif len(getters) == 2:
            first, second = getters
            rows.sort(key=lambda r: (first(r), second(r)))
        else:
            rows.sort(key=lambda r: tuple(g(r) for g in getters))

    def _service_root(self) -> Reply:
        value = [{"name": name, "url": name} for name in self.store.schema.entity_sets]
        return Reply(
            200,
            {"Content-Type": JSON_TYPE},
            dumps({"odata.metadata": f"{self.base}$metadata", "value": value}).encode(),
        )

    def _one(self, es: EntitySet, row: Mapping[str, Any], select: set[str] | None = None) -> bytes:
        payload = {
            "odata.metadata": f"{self.base}$metadata#{es.name}/@Element",
            **render_row(es, row, select),
        }
        return dumps(payload).encode()

    # -- writing ---------------------------------------------------------------------------------

    def _entity(
        self,
        method: str,
        es: EntitySet,
        key: str,
        headers: Mapping[str, str],
        body: bytes,
        query: Mapping[str, str] | None = None,
    ) -> Reply:
        if method == "GET":
            select = _select(es, (query or {}).get("$select"))  # 1C refuses an unknown one here too
            row = self.store.get(es.name, key)
            if row is None:
                return _not_found(es, key)
            return Reply(200, {"Content-Type": JSON_TYPE}, self._one(es, row, select))
        if method in ("PATCH", "MERGE"):
            if_match = _header(headers, "If-Match")
            if if_match is not None:
                self.store.if_match.append((es.name, key, if_match))  # recorded, ignored like real 1C
            fields = _body(body)
            if self.store.get(es.name, key) is None:
                return _not_found(es, key)
            row = self.store.patch(es.name, key, fields)
            return Reply(200, {"Content-Type": JSON_TYPE}, self._one(es, row))
        if method == "DELETE":
            if not self.store.delete(es.name, key):
                return _not_found(es, key)
            return Reply(200)
        return odata_error(405, "Метод не поддерживается")

    def _create(self, es: EntitySet, body: bytes) -> Reply:
        fields = _body(body)
        if es.is_document and not fields.get("Date"):
            fields = {**fields, "Date": now()}
        row = self.store.put(es.name, fields)
        location = f"{self.base}{es.name}(guid'{row['Ref_Key']}')"
        return Reply(201, {"Content-Type": JSON_TYPE, "Location": location}, self._one(es, row))

    def _post(self, es: EntitySet, key: str, posted: bool) -> Reply:
        if not es.is_document:
            return odata_error(400, f"Объект {es.name} не является документом")
        row = self.store.get(es.name, key)
        if row is None:
            return _not_found(es, key)
        if posted and row.get("DeletionMark"):
            return odata_error(
                500, f"Документ {row.get('Number')} помечен на удаление и не может быть проведен"
            )
        self.store.patch(es.name, key, {"Posted": posted}, count=False)
        return Reply(200)

    # -- exchange plan ---------------------------------------------------------------------------

    def _exchange(self, function: str, query: Mapping[str, str]) -> Reply:
        point = unquote(query.get("DataExchangePoint", "")).strip("'")
        m = _NODE.search(point)
        if m is None or f"ExchangePlan_{m['plan']}" != EXCHANGE_PLAN:
            return odata_error(400, "Неверный параметр DataExchangePoint")
        number = _int(query.get("MessageNo"), "MessageNo")
        if number is None:
            return odata_error(400, "Не задан параметр MessageNo")
        node = m["key"].lower()
        try:
            if function == "NotifyChangesReceived":
                self.store.acknowledge(node, number)
                return Reply(200)
            changes = self.store.changes_since(node, number)
        except KeyError:
            return odata_error(500, "Узел плана обмена не найден")
        body = changes_feed(self.base, changes, self.store.schema.entity_sets, self.store.get, now())
        return Reply(200, {"Content-Type": ATOM_TYPE}, body)


def _orderby_keys(es: EntitySet, orderby: str | None) -> list[tuple[str, bool]]:
    """``$orderby`` as ``(field, descending)`` pairs; ``FilterError`` for what 1C refuses."""
    keys: list[tuple[str, bool]] = []
    for part in orderby.split(",") if orderby else []:
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise FilterError(f"Неверное выражение $orderby: {part!r}")
        f = es.field(words[0])
        if f is None:
            raise FilterError(f"Неизвестное свойство {words[0]!r} в $orderby")
        keys.append((words[0], len(words) == 2 and words[1] == "desc"))
    return keys


def order_by_passes(
    rows: list[dict[str, Any]], keys: list[tuple[str, bool]], hashed: Callable[[str], str]
) -> None:
    """The ordering by definition: by ``Ref_Key`` hash, then a stable sort per key, last key first."""
    rows.sort(key=lambda r: hashed(r["Ref_Key"]))
    for name, desc in reversed(keys):
        if name == "Ref_Key":
            rows.sort(key=lambda r: hashed(r["Ref_Key"]), reverse=desc)
        else:
            rows.sort(key=lambda r, n=name: r.get(n), reverse=desc)  # type: ignore[misc]


def _wants_json(query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    fmt = query.get("$format", "")
    if fmt:
        return fmt in ("json", "application/json") or fmt.startswith("application/json")
    return "application/json" in (_header(headers, "Accept") or "")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def _select(es: EntitySet, text: str | None) -> set[str] | None:
    if not text:
        return None
    names = {n.strip() for n in text.split(",") if n.strip()}
    known = set(es.property_names())
    for name in names:
        if name not in known:
            raise FilterError(f"Неизвестное свойство {name!r} в $select")
    for f in es.fields:  # selecting a composite brings its type along
        if f.kind == "composite" and f.name in names:
            names.add(f.name + "_Type")
    return names


def _int(text: str | None, name: str) -> int | None:
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise FilterError(f"Неверное значение {name}: {text!r}")
    return int(text)


def _body(body: bytes) -> dict[str, Any]:
    try:
        data = parse_json(body.decode("utf-8-sig") or "{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"Ошибка разбора тела запроса: {exc}") from exc
    if not isinstance(data, dict):
        raise WireError("Тело запроса должно быть объектом JSON")
    return data


def _not_found(es: EntitySet, key: str) -> Reply:
    return odata_error(404, f"Объект {es.name} с ключом {key} не найден", code="6")
