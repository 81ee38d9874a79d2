"""The cycle's view of 1C: rows in, domain documents out, and the loyalty results written back.

Everything here goes through the mapping (``bridge.onec.mapping``) and the OData client; names of
1C objects never appear in this module. Reference data the translation needs (products and
their folders, VAT rates, the card kind, additional-attribute keys) is loaded on demand and kept
for the life of the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import tzinfo
from typing import Any, cast

import structlog

from bridge import crashpoints
from bridge.domain.discounts import plan_order_discount
from bridge.domain.model import Card, Customer, Order, OrderStatus, ReturnDoc
from bridge.errors import ContractError, DocumentError
from bridge.onec.literals import Guid, eq
from bridge.onec.mapping import REF_KEY, AttributeKeys, Mapping, resolve_attributes
from bridge.onec.odata import ODataClient
from bridge.onec.translate import (
    ProductIndex,
    card_from_row,
    customer_from_row,
    order_from_row,
    return_from_row,
    return_sale_key,
    sale_link,
)
from bridge.onec.writes import (
    card_create_body,
    card_kind_key,
    order_attribute_patch,
    order_lines_discount_patch,
    order_vat,
    partner_attribute_patch,
    vat_rates_from_rows,
)
from bridge.service.codec import customer_view_from_json, order_view_from_json
from bridge.store.outbox import OutboxMessage

log = structlog.get_logger(__name__)

Recorder = Callable[[str, str, str], None]  # (object, key, DataVersion the bridge produced)


_UNKNOWN = object()  # a number not looked up with its batch


class Gateway:
    """Reads and writes 1C for the cycle through one OData client and one mapping."""

    def __init__(
        self,
        client: ODataClient,
        mapping: Mapping,
        tz: tzinfo,
        *,
        groups: Iterable[str] = (),
        delivery_products: Iterable[str] = (),
        card_kind: str | None = None,
    ) -> None:
        self.client = client
        self.mapping = mapping
        self.tz = tz
        self._groups = tuple(groups)
        self._delivery = tuple(delivery_products)
        self._card_kind = card_kind
        self._keys: AttributeKeys | None = None
        self._products: ProductIndex | None = None
        self._vat: dict[str, Any] | None = None
        self._kind_key: str | None = None
        self.sets = mapping.entity_sets()
        self._lock = threading.RLock()
        self._found_cards: dict[str, dict[str, Any] | None] = {}
        self._needed = {obj: mapping.select_fields(obj) for obj in self.sets}  # what ``_whole`` checks

    # --- reference data ------------------------------------------------------------------------

    # Reference data is read on first use, which may be in several write-back threads at once
    # (``onec.write_workers``): ``_lock`` makes each read happen once, and guards the product index,
    # which grows as orders name new products.

    @property
    def keys(self) -> AttributeKeys:
        if self._keys is None:
            with self._lock:
                if self._keys is None:
                    rows = self._whole("attributes", self._all(self.mapping.attributes.entity_set))
                    self._keys = resolve_attributes(self.mapping, rows)
        return self._keys

    def _whole(self, obj: str, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows read without ``$select``, checked for every field the mapping names. 1C sends
        each published field of an object, so a missing one means 1C stopped publishing it (the
        OData content was re-saved without it). Read on as if it were empty, it would silently
        change results (a delivery product with no type earns points), so it is an error: the
        cycle names what 1C lacks (``Cycle._diagnose``)."""
        rows = list(rows)
        needed = self._needed[obj]
        for row in rows:
            gone = [name for name in needed if name not in row]
            if gone:
                raise ContractError(
                    [
                        f"{self.sets[obj]}: 1C's answer has no {', '.join(gone)}, which the mapping "
                        f"names: 1C no longer publishes {'it' if len(gone) == 1 else 'them'} "
                        "(run `loyalty-bridge check`)"
                    ],
                    entity_set=self.sets[obj],
                )
        return rows

    def _all(self, entity_set: str, select: Iterable[str] | None = None) -> Iterable[dict[str, Any]]:
        """A whole (small, reference) entity set, page by page."""
        return self.client.iter_all(entity_set, select=list(select) if select else None)

    @property
    def products(self) -> ProductIndex:
        if self._products is None:
            with self._lock:
                if self._products is None:
                    self._products = ProductIndex(self.mapping, self._groups, self._delivery, keys=self.keys)
        return self._products

    def _load_products(self, ids: Iterable[str]) -> None:
        wanted = self.products.missing(ids)
        seen: set[str] = set()
        while wanted - seen:
            batch = sorted(wanted - seen)
            seen |= set(batch)
            rows = self._whole("products", self.client.get_by_keys(self.sets["products"], batch))
            self.products.add(rows)
            wanted = self.products.missing(ids)

    def vat_rates(self) -> dict[str, Any]:
        if self._vat is None:
            with self._lock:
                if self._vat is None:
                    vat = self.mapping.orders.lines.vat_rate
                    catalog = vat.catalog if vat is not None else None
                    rows = self._whole("vat_rates", self._all(catalog)) if catalog else None
                    self._vat = vat_rates_from_rows(rows, self.mapping) if rows is not None else {}
        return self._vat

    def card_kind_key(self) -> str:
        if self._kind_key is None:
            with self._lock:
                if self._kind_key is None:
                    rows = self._whole("card_kinds", self._all(self.sets["card_kinds"]))
                    self._kind_key = card_kind_key(rows, self.mapping, self._card_kind)
        return self._kind_key

    # --- reading documents ---------------------------------------------------------------------

    def product_ids(self, row: dict[str, Any]) -> set[str]:
        lines = self.mapping.orders.lines
        return {
            str(line.get(lines.fields.product))
            for line in row.get(lines.section) or ()
            if line.get(lines.fields.product)
        }

    def order(self, row: dict[str, Any], cards: dict[str, str] | None = None) -> Order:
        """Translate an order row (loading the products and folders it needs)."""
        keys = self.keys
        with self._lock:  # the index grows here; a write-back thread may be reading it
            self._load_products(self.product_ids(row))
            return order_from_row(row, self.mapping, keys, self.products, self.tz, cards=cards)

    def card_numbers(self, card_keys: Iterable[str]) -> dict[str, str]:
        keys = sorted({k for k in card_keys if k})
        if not keys:
            return {}
        f = self.mapping.cards.fields
        rows = self._whole("cards", self.client.get_by_keys(self.sets["cards"], keys))
        return {str(r[REF_KEY]): str(r.get(f.number) or r.get(f.magnetic_code or "") or "") for r in rows}

    def read_order(self, key: str) -> dict[str, Any] | None:
        return self.client.get_entity(self.sets["orders"], key)

    def customer(self, key: str) -> tuple[Customer, dict[str, Any]] | None:
        row = self.client.get_entity(self.sets["partners"], key)
        if row is None:
            return None
        self._whole("partners", [row])
        return customer_from_row(row, self.mapping), row

    def return_doc(self, row: dict[str, Any]) -> ReturnDoc:
        sale = return_sale_key(row, self.mapping)
        links: dict[str, str | None] = {}
        if sale is not None:
            sale_row = self.client.get_entity(self.sets["sales"], sale)
            if sale_row is None:
                raise DocumentError(
                    f"the sale {sale} this return references is not in 1C",
                    document=str(row.get(REF_KEY)),
                    field=self.mapping.returns.fields.sale,
                )
            sid, order = sale_link(sale_row, self.mapping)
            links[sid] = order
        return return_from_row(row, self.mapping, links, self.tz)

    def card(self, row: dict[str, Any]) -> Card | None:
        """A card row as the domain sees it (None when annulled, deleted, without number or owner)."""
        return card_from_row(row, self.mapping, self.keys)

    def cards_of(self, customer_id: str) -> list[tuple[Card, str]]:
        """The usable cards 1C already has for a partner (of the configured kind, when one is set),
        each with its DataVersion."""
        f = self.mapping.cards.fields
        rows = self._whole(
            "cards", self.client.query(self.sets["cards"], filter=eq(f.customer, Guid(customer_id)), top=20)
        )
        return self._usable_cards(rows).get(customer_id.lower(), [])

    def cards_of_many(self, customer_ids: Iterable[str]) -> dict[str, list[tuple[Card, str]]]:
        """:meth:`cards_of` for many partners in a few requests (``or`` chains within the URL
        budget); every partner asked about is in the answer, with ``[]`` when 1C has no card."""
        wanted = sorted({c.lower() for c in customer_ids})
        rows = self._whole(
            "cards",
            self.client.get_by_keys(self.sets["cards"], wanted, field=self.mapping.cards.fields.customer),
        )
        found = self._usable_cards(rows)
        return {c: found.get(c, []) for c in wanted}

    def _usable_cards(self, rows: Iterable[dict[str, Any]]) -> dict[str, list[tuple[Card, str]]]:
        """The rows' usable cards (of the configured kind, when one is set) by partner key."""
        kind = self.card_kind_key() if self._card_kind else None
        found: dict[str, list[tuple[Card, str]]] = {}
        for r in rows:
            if (kind is None or str(r.get(self.mapping.cards.fields.kind)) == kind) and (c := self.card(r)):
                found.setdefault(c.customer_id.lower(), []).append((c, str(r.get("DataVersion") or "")))
        return found

    def find_card(self, number: str) -> dict[str, Any] | None:
        found = self._found_cards.pop(number, _UNKNOWN)  # looked up with its batch (``look_up_cards``)
        if found is not _UNKNOWN:
            return cast("dict[str, Any] | None", found)
        f = self.mapping.cards.fields
        for r in self.client.query(self.sets["cards"], filter=eq(f.number, number), top=2):
            if str(r.get(f.number) or "") == number:
                return r
        return None

    def look_up_cards(self, numbers: Iterable[str]) -> None:
        """Look the numbers of a batch of card creates up in 1C together (``or`` chains within the URL
        budget), for :meth:`find_card` to use once each; until the next batch replaces them."""
        self._found_cards = {}  # a failure below leaves nothing stale behind
        f = self.mapping.cards.fields
        wanted = list(dict.fromkeys(numbers))
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(wanted)
        for r in self.client.iter_by_keys(self.sets["cards"], wanted, field=f.number, strings=True):
            number = str(r.get(f.number) or "")
            if number in found and found[number] is None:
                found[number] = r
        self._found_cards = found

    # --- writing the loyalty results -------------------------------------------------------------

    def write(self, msg: OutboxMessage, record: Recorder) -> str:
        """Deliver one ``onec`` outbox message; returns what happened (written / unchanged / …)."""
        if msg.kind == "order":
            view = order_view_from_json(msg.payload["view"])
            return self._patch(
                "orders",
                view.order_id,
                lambda row: order_attribute_patch(row, view, self.mapping, self.keys, self.tz),
                (self.mapping.attributes.section,),
                record,
            )
        if msg.kind == "partner":
            cview = customer_view_from_json(msg.payload["view"])
            return self._patch(
                "partners",
                cview.customer_id,
                lambda row: partner_attribute_patch(row, cview, self.mapping, self.keys, self.tz),
                (self.mapping.attributes.section,),
                record,
            )
        if msg.kind == "discount":
            return self._discount(msg.payload["order_id"], msg.payload["percent"], record)
        if msg.kind == "card":
            return self._card(msg.payload["number"], msg.payload["customer_id"], record)
        raise DocumentError(f"unknown 1C write-back kind {msg.kind!r}", document=msg.target)

    def _patch(
        self,
        obj: str,
        key: str,
        build: Callable[[dict[str, Any]], dict[str, Any] | None],
        select: tuple[str, ...],
        record: Recorder,
    ) -> str:
        sent: list[bool] = []

        def body(row: dict[str, Any]) -> dict[str, Any]:
            patch = build(row) or {}
            sent.append(bool(patch))
            return patch

        answer = self.client.patch_with_version(self.sets[obj], key, body, select=select)
        crashpoints.point("writeback_sent")
        if sent and sent[-1]:
            version = str(answer.get("DataVersion") or "")
            if not version:
                version = self.client.read_version(self.sets[obj], key)
            record(obj, key, version)
            return "written"
        return "unchanged"

    def _discount(self, order_id: str, percent: str, record: Recorder) -> str:
        from decimal import Decimal

        def build(row: dict[str, Any]) -> dict[str, Any] | None:
            order = self.order(row)
            if order.status is not OrderStatus.OPEN or order.deleted:
                return None  # never touch a closed (or cancelled, deleted) order's prices
            vat = order_vat(row, self.mapping, self.vat_rates())
            plan = plan_order_discount(
                order, Decimal(percent), vat_rates=vat.rates, price_includes_vat=vat.price_includes_vat
            )
            return order_lines_discount_patch(row, plan, self.mapping) if plan.changed else None

        select = tuple(self.mapping.select_fields("orders"))
        return self._patch("orders", order_id, build, select, record)

    def _card(self, number: str, customer_id: str, record: Recorder) -> str:
        existing = self.find_card(number)
        if existing is not None:
            owner = str(existing.get(self.mapping.cards.fields.customer) or "")
            if owner.lower() != customer_id.lower():
                # Not an earlier attempt of ours: someone made a card with this number for another
                # partner. Adopting it would show the customer's points on a stranger's card.
                raise DocumentError(
                    f"card {number}: 1C already has a card with this number for partner {owner or '(none)'}, "
                    f"not for {customer_id}; the number was issued outside the loyalty program. Remove or "
                    f"renumber that card in 1C ({self.sets['cards']}), "
                    "then re-send the message with `outbox retry`",
                    document=customer_id,
                    field="card",
                )
            record("cards", str(existing[REF_KEY]), str(existing.get("DataVersion") or ""))
            return "unchanged"
        body = card_create_body(number, customer_id, self.card_kind_key(), self.mapping, self.keys)
        created = self.client.create(self.sets["cards"], body)
        crashpoints.point("writeback_sent")
        record("cards", str(created.get(REF_KEY) or ""), str(created.get("DataVersion") or ""))
        log.info("onec.card_created", number=number, customer=customer_id)
        return "written"
