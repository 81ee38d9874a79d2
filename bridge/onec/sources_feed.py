"""Change sources fed by 1C's own change registration: ``ExchangePlanSource`` (OData exchange-plan
functions, ``poll.changes: exchange_plan``) and ``SoapSource`` (the ``LoyaltyBridge`` web service,
``poll.changes: soap``).

Both follow 1C's exchange protocol: the read selects message ``N``, the cycle commits what it
applied together with ``cursor_updates()`` and only then calls ``acknowledge()``, which tells 1C
that message ``N`` arrived (``NotifyChangesReceived`` / ``ConfirmChanges``). A crash before the
local commit acknowledges nothing, so 1C sends the same changes again: delivery is at least once,
and the cycle's ``DataVersion`` bookkeeping makes repeats harmless. One reader per node: two
bridges on one node would acknowledge each other's messages.

Cursors: ``exchange_message_no`` (the last message number committed; the next read selects it
+ 1, and the very first one the node's ``ReceivedNo`` + 1) and ``soap_message_no`` (the last
message number committed, sent to ``GetChanges``).

Must not import bridge.store, bridge.site or bridge.service.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog
from lxml import etree

from bridge.errors import DocumentError, FatalHTTPError
from bridge.onec.literals import guid_literal
from bridge.onec.mapping import REF_KEY, Mapping
from bridge.onec.normalize import normalize_row
from bridge.onec.odata import ODataClient
from bridge.onec.soap import SoapClient
from bridge.onec.soap_rows import customer_as_odata_row, order_as_odata_row
from bridge.onec.sources_base import (
    OBJECTS,
    Change,
    Related,
    TrackingState,
    entity_of_set,
    select_of,
    version_of,
)

__all__ = [
    "EXCHANGE_MESSAGE_NO",
    "SOAP_MESSAGE_NO",
    "ExchangePlanSource",
    "FeedEntry",
    "SoapSource",
    "parse_changes_feed",
]

log = structlog.get_logger(__name__)

EXCHANGE_MESSAGE_NO = "exchange_message_no"
SOAP_MESSAGE_NO = "soap_message_no"

_ATOM = "http://www.w3.org/2005/Atom"
_TOMBSTONE = "http://purl.org/atompub/tombstone/1.0"
_META = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
_REF = re.compile(r"(?P<set>[^/()]+)\((?:Ref_Key=)?guid'(?P<key>[0-9a-fA-F-]{36})'\)\s*$")
_NUMBERS = {"Edm.Double", "Edm.Decimal", "Edm.Single"}
_INTS = {"Edm.Int32", "Edm.Int16", "Edm.Byte", "Edm.SByte"}
# Order of yielding within a message: what documents refer to comes first.
_ORDER = {"customer": 0, "card": 1, "sale": 2, "order": 3, "return": 4}


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One object of a ``SelectChanges`` message: ``properties`` None when the feed carried none."""

    entity_set: str
    key: str
    deleted: bool
    properties: dict[str, Any] | None = None


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _value(element: etree._Element) -> Any:
    """An Atom property as the JSON form would carry it (``normalize_row`` does the rest)."""
    if element.get(f"{{{_META}}}null") == "true":
        return None
    kind = element.get(f"{{{_META}}}type") or "Edm.String"
    text = element.text or ""
    if kind.startswith("Collection("):
        return [_props(item) for item in element if _local(item.tag) == "element"]
    if kind in _NUMBERS:
        try:
            return Decimal(text.strip() or "0")
        except InvalidOperation as exc:
            raise FatalHTTPError(f"SelectChanges: not a number in {_local(element.tag)}: {text!r}") from exc
    if kind in _INTS:
        return int(text.strip() or 0)
    if kind == "Edm.Boolean":
        return text.strip().lower() == "true"
    return text  # strings, GUIDs, dates and Int64 travel as text, as in JSON


def _props(parent: etree._Element) -> dict[str, Any]:
    return {_local(child.tag): _value(child) for child in parent if _local(child.tag)}


def parse_changes_feed(body: bytes) -> list[FeedEntry]:
    """Parse the Atom feed ``SelectChanges`` answers: ``entry`` and ``at:deleted-entry`` items.

    Raises:
        FatalHTTPError: not an Atom feed, or an item without a recognisable ``Set(guid'…')``.
    """
    try:
        root = etree.fromstring(body, parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise FatalHTTPError(f"SelectChanges: the answer is not XML: {exc}") from exc
    if root is None or _local(root.tag) != "feed":
        raise FatalHTTPError("SelectChanges: the answer is not an Atom feed")
    entries: list[FeedEntry] = []
    for item in root:
        if item.tag == f"{{{_TOMBSTONE}}}deleted-entry":
            entity_set, key = _reference(item.get("ref") or "")
            entries.append(FeedEntry(entity_set, key, True))
        elif item.tag == f"{{{_ATOM}}}entry":
            where = item.findtext(f"{{{_ATOM}}}id") or ""
            link = item.find(f"{{{_ATOM}}}link[@rel='edit']")
            if not _REF.search(where) and link is not None:
                where = link.get("href") or ""
            entity_set, key = _reference(where)
            props = item.find(f"{{{_ATOM}}}content/{{{_META}}}properties")
            if props is None:
                props = item.find(f"{{{_META}}}properties")
            properties = _props(props) if props is not None and len(props) else None
            entries.append(FeedEntry(entity_set, key, False, properties))
    return entries


def _reference(text: str) -> tuple[str, str]:
    match = _REF.search(text)
    if match is None:
        raise FatalHTTPError(f"SelectChanges: cannot tell the object of an entry: {text[:200]!r}")
    return match["set"], match["key"].lower()


class ExchangePlanSource:
    """Reads 1C's change registration for one exchange-plan node through OData.

    Args:
        client: the OData client.
        mapping: entity sets and fields (the feed's other sets, e.g. products, are ignored).
        exchange_plan: the plan's entity set, e.g. ``ExchangePlan_ОбменСайтом``.
        node: the node's ``Ref_Key``.
    """

    name = "exchange_plan"

    def __init__(self, client: ODataClient, mapping: Mapping, exchange_plan: str, node: str) -> None:
        self.client = client
        self.mapping = mapping
        self.exchange_plan = exchange_plan
        self.node = node.lower()
        self.related = Related(client, mapping)
        self.entities = entity_of_set(mapping)
        self.sets = mapping.entity_sets()
        self._message_no: int | None = None

    @property
    def data_exchange_point(self) -> str:
        """``'…/ExchangePlan_X(guid'node')'`` as 1C's functions take it."""
        return f"'{self.client.base_url}{self.exchange_plan}({guid_literal(self.node)})'"

    def received_no(self) -> int:
        """The node's ``ReceivedNo`` in 1C (raises ``DocumentError`` if the node does not exist)."""
        row = self.client.get_entity(self.exchange_plan, self.node, select=[REF_KEY, "ReceivedNo"])
        if row is None:
            raise DocumentError(
                "exchange-plan node not found in 1C", document=f"{self.exchange_plan}({self.node})"
            )
        return int(row.get("ReceivedNo") or 0)

    def cursor_updates(self) -> dict[str, str]:
        return {} if self._message_no is None else {EXCHANGE_MESSAGE_NO: str(self._message_no)}

    def acknowledge(self) -> None:
        """``NotifyChangesReceived`` for the message read — only after the cycle committed it."""
        if self._message_no is None:
            return
        self.client.post_action(
            "NotifyChangesReceived",
            {"DataExchangePoint": self.data_exchange_point, "MessageNo": str(self._message_no)},
        )
        log.info("onec.exchange.acknowledged", node=self.node, message_no=self._message_no)

    def read(self, state: TrackingState, now: datetime) -> Iterator[Change]:
        """Select the next message and yield its objects (re-read by key when the feed is bare)."""
        stored = state.cursor(EXCHANGE_MESSAGE_NO)
        number = (int(stored) if stored else self.received_no()) + 1
        body = self.client.post_action(
            "SelectChanges", {"DataExchangePoint": self.data_exchange_point, "MessageNo": str(number)}
        )
        self._message_no = number
        entries = [e for e in parse_changes_feed(body) if e.entity_set in self.entities]
        log.info("onec.exchange.selected", node=self.node, message_no=number, objects=len(entries))
        entries.sort(key=lambda e: _ORDER[self.entities[e.entity_set]])
        done: set[str] = set()
        batch = max(1, self.client.page_size)
        for i in range(0, len(entries), batch):
            yield from self._batch(state, entries[i : i + batch], done)

    def _batch(self, state: TrackingState, entries: list[FeedEntry], done: set[str]) -> Iterator[Change]:
        changes: list[Change] = []
        bare: dict[str, list[str]] = {}
        for e in entries:
            entity = self.entities[e.entity_set]
            if e.deleted:
                changes.append(Change(entity, e.key, None, ""))
            elif e.properties is None:
                bare.setdefault(entity, []).append(e.key)
            else:
                row = normalize_row(e.properties, self.client.tz, int64_fields=self.client.int64_fields)
                changes.append(Change(entity, e.key, row, version_of(row)))
        for entity, keys in bare.items():
            found = {
                str(r.get(REF_KEY)): r
                for r in self.client.iter_by_keys(
                    self.sets[OBJECTS[entity]], keys, select=select_of(self.mapping, entity)
                )
            }
            changes += [Change(entity, k, found.get(k), version_of(found.get(k))) for k in keys]
        fresh = self._unknown(state, changes)
        done.update(c.key for c in fresh)
        objects = [c for c in fresh if c.entity not in ("order", "return")]
        docs = [c for c in fresh if c.entity in ("order", "return")]
        yield from objects
        yield from self.related.expand(state, docs, done)
        yield from docs

    @staticmethod
    def _unknown(state: TrackingState, changes: list[Change]) -> list[Change]:
        """Drop objects the state already has at this version (the bridge's own write-backs)."""
        out: list[Change] = []
        by_entity: dict[str, list[str]] = {}
        for c in changes:
            if c.row is not None and c.version:
                by_entity.setdefault(c.entity, []).append(c.key)
        known = {e: state.versions(e, keys) for e, keys in by_entity.items()}
        for c in changes:
            if c.row is not None and c.version and known.get(c.entity, {}).get(c.key) == c.version:
                continue
            out.append(c)
        return out


class SoapSource:
    """Reads the ``LoyaltyBridge`` web service: ``GetChanges`` then ``GetOrder`` / ``GetCustomer``.

    Rows come out in the OData shape under the mapping's names
    (:func:`~bridge.onec.soap_rows.order_as_odata_row`, normalised), so the cycle translates them like
    any other. ``GetChanges``' ``Deleted`` keys name no type: a key the state knows as a customer is
    a customer, anything else an order.

    Args:
        client: the SOAP client.
        mapping: the names the rows are keyed by (the service's own element names are fixed).
        tz: 1C's zone (the rows' local times).
    """

    name = "soap"

    def __init__(self, client: SoapClient, mapping: Mapping, tz: tzinfo) -> None:
        self.client = client
        self.mapping = mapping
        self.tz = tz
        self._message_no: int | None = None

    def cursor_updates(self) -> dict[str, str]:
        return {} if self._message_no is None else {SOAP_MESSAGE_NO: str(self._message_no)}

    def acknowledge(self) -> None:
        """``ConfirmChanges`` for the message read — only after the cycle committed it."""
        if self._message_no is not None:
            self.client.confirm(self._message_no)

    def read(self, state: TrackingState, now: datetime) -> Iterator[Change]:
        confirmed = int(state.cursor(SOAP_MESSAGE_NO) or 0)
        changes = self.client.get_changes(confirmed)
        self._message_no = changes.message_no
        log.info(
            "onec.soap.changes",
            message_no=changes.message_no,
            orders=len(changes.orders),
            customers=len(changes.customers),
            deleted=len(changes.deleted),
        )
        done: set[str] = set()
        for key in dict.fromkeys(changes.customers):
            yield from self._customer(state, key, done, force=True)
        for key in dict.fromkeys(changes.orders):
            order = self.client.get_order(key)
            row = normalize_row(order_as_odata_row(order, self.mapping), self.tz)
            if order.partner:
                yield from self._customer(state, order.partner, done, force=False)
            if state.versions("order", [key]).get(key) == order.version and order.version:
                continue  # the bridge's own write-back
            yield Change("order", key, row, order.version)
        if changes.deleted:
            customers = state.versions("customer", changes.deleted)
            for key in dict.fromkeys(changes.deleted):
                yield Change("customer" if key in customers else "order", key, None, "")

    def _customer(self, state: TrackingState, key: str, done: set[str], *, force: bool) -> Iterator[Change]:
        if key in done:
            return
        known = state.versions("customer", [key])
        if not force and key in known:
            return  # known; a change to it arrives in the message's own Customers
        customer = self.client.get_customer(key)
        done.add(key)
        if known.get(key) == customer.version and customer.version:
            return
        row = normalize_row(customer_as_odata_row(customer, self.mapping), self.tz)
        yield Change("customer", key, row, customer.version)
