"""1C rows -> domain objects, every name taken from the mapping.

Owns translating already-normalised OData rows (dicts; numbers as ``Decimal``; times as naive 1C
local strings or datetimes; empty references as the empty GUID or ``None``) into ``Order``,
``Customer``, ``ReturnDoc``, ``Card`` and ``Product`` (through ``ProductIndex``). Bad data
raises ``DocumentError`` naming the document (number and Ref_Key) and the field.
Must not import bridge.store, bridge.site or bridge.service.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from collections.abc import Mapping as AbcMapping
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers

from bridge.domain.model import (
    ZERO,
    Card,
    CardStatus,
    Customer,
    Order,
    OrderLine,
    OrderStatus,
    Product,
    ReturnDoc,
    ReturnLine,
)
from bridge.errors import DocumentError
from bridge.onec.mapping import REF_KEY, AttributeKeys, Mapping, Target

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
EMPTY_DATE_PREFIX = "0001-01-01"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# --- small readers -------------------------------------------------------------------------------


def ref(value: Any) -> str | None:
    """A reference value as a GUID string; the empty GUID, ``""`` and ``None`` are None."""
    if value is None or value == "" or value == EMPTY_GUID:
        return None
    return str(value)


def local_time(value: Any, tz: tzinfo) -> datetime | None:
    """1C's naive wall clock (string or datetime) -> aware time in ``tz``; ``0001-01-01`` -> None."""
    if value is None or value == "" or (isinstance(value, str) and value.startswith(EMPTY_DATE_PREFIX)):
        return None
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(value, datetime):
        raise ValueError(f"not a date: {value!r}")
    if value.year == 1:
        return None
    if value.tzinfo is not None:
        return value.astimezone(tz)
    # fold=0 then a trip through UTC: deterministic for times a DST change makes ambiguous or skips
    return value.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)


class DocReader:
    """Reads one document's values, raising DocumentError that names the document and the field."""

    def __init__(self, title: str, number: Any, key: Any) -> None:
        self.key = ref(key) or "?"
        self.name = f"{title} № {number or '?'} ({self.key})"

    def fail(self, field: str, problem: str) -> DocumentError:
        return DocumentError(
            f"{self.name}: {field}: {problem}", document=self.name, field=field, ref=self.key
        )

    def number(self, value: Any, field: str, *, places: int = 2, default: Decimal | None = ZERO) -> Decimal:
        """A non-negative decimal with at most ``places`` decimals (money: kopecks)."""
        if value is None or value == "":
            if default is None:
                raise self.fail(field, "is empty: fill it in 1C")
            return default
        try:
            number = Decimal(str(value)) if isinstance(value, int | float | str) else Decimal(value)
        except (InvalidOperation, TypeError, ValueError):
            number = Decimal("NaN")
        if isinstance(value, bool) or not number.is_finite():
            raise self.fail(field, f"{value!r} is not a number")
        if number < 0:
            raise self.fail(field, f"{number} is negative: fix the document in 1C")
        try:
            exact = number == number.quantize(Decimal(1).scaleb(-places))
        except InvalidOperation:  # more digits than any 1C number holds (quantize overflows)
            raise self.fail(field, f"{number} is too large for an amount: fix the document in 1C") from None
        if not exact:
            raise self.fail(field, f"{number} has more than {places} decimal places")
        return number

    def time(self, value: Any, field: str, tz: tzinfo) -> datetime:
        try:
            moment = local_time(value, tz)
        except (ValueError, TypeError):
            raise self.fail(field, f"{value!r} is not a date") from None
        if moment is None:
            raise self.fail(field, "is empty (0001-01-01): fill it in 1C")
        return moment


def attribute_row(
    row: AbcMapping[str, Any], obj: str, target: Target, mapping: Mapping, keys: AttributeKeys
) -> dict[str, Any] | None:
    """The row of ``row``'s additional-attribute section holding ``target``, or None when absent."""
    chart = mapping.attributes
    wanted = keys.key(obj, target.attribute or "")
    for attr in row.get(chart.section) or ():
        if attr.get(chart.property_field) == wanted:
            return dict(attr)
    return None


def target_value(
    row: AbcMapping[str, Any], obj: str, target: Target, mapping: Mapping, keys: AttributeKeys
) -> Any:
    """The raw value a target holds in ``row`` (None when its attribute row is absent)."""
    if target.field:
        return row.get(target.field)
    attr = attribute_row(row, obj, target, mapping, keys)
    if attr is None:
        return None
    chart = mapping.attributes
    text = attr.get(chart.text_field) if chart.text_field else None
    if target.type == "string" and text:
        return text
    return attr.get(chart.value_field)


def flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _label(target: Target) -> str:
    return target.field or f"«{target.attribute}»"


# --- products ------------------------------------------------------------------------------------


class ProductIndex:
    """Products and folders of ``Catalog_Номенклатура`` with each product's margin group and delivery flag.

    Args:
        mapping: names the fields and how the margin group is found.
        groups: the config's ``bonus.groups`` codes (a folder counts only when listed here).
        delivery_products: the config's ``delivery_products`` (Description or Ref_Key).
        keys: attribute keys, needed when the margin group comes from an additional attribute.
        categories: category catalog rows, needed when the group comes from the category.
    """

    def __init__(
        self,
        mapping: Mapping,
        groups: Collection[str],
        delivery_products: Collection[str] = (),
        *,
        keys: AttributeKeys | None = None,
        categories: Iterable[AbcMapping[str, Any]] = (),
    ) -> None:
        self._mapping, self._groups = mapping, frozenset(groups)
        self._delivery = frozenset(delivery_products)
        name = mapping.products.categories.name_field if mapping.products.categories else ""
        self._keys = keys
        self._categories = {k: str(r.get(name) or "") for r in categories if (k := ref(r.get(REF_KEY)))}
        self._rows: dict[str, AbcMapping[str, Any]] = {}
        self._cache: dict[str, Product] = {}

    @classmethod
    def from_rows(cls, rows: Iterable[AbcMapping[str, Any]], *args: Any, **kwargs: Any) -> ProductIndex:
        index = cls(*args, **kwargs)
        index.add(rows)
        return index

    def add(self, rows: Iterable[AbcMapping[str, Any]]) -> None:
        """Add (or replace) products and folders."""
        fid = self._mapping.products.fields.id
        for row in rows:
            key = ref(row.get(fid))
            if key:
                self._rows[key] = row
        self._cache.clear()

    def missing(self, product_ids: Iterable[str]) -> set[str]:
        """Of ``product_ids`` and the folders above the known ones, those not loaded yet."""
        wanted = {key for key in product_ids if key not in self._rows}
        if self._mapping.products.margin_group.source == "folder":
            parent = self._mapping.products.fields.parent
            parents = {ref(row.get(parent)) for row in self._rows.values()}
            wanted |= {key for key in parents if key and key not in self._rows}
        return wanted

    def product(self, product_id: str) -> Product:
        """The product; raises KeyError when it was never added."""
        if product_id not in self._cache:
            row = self._rows[product_id]
            f = self._mapping.products.fields
            name = str(row.get(f.name) or "")
            types = self._mapping.products.delivery_types
            delivery = (f.type is not None and row.get(f.type) in types) or bool(
                self._delivery & {product_id, name}
            )
            self._cache[product_id] = Product(product_id, name, self._group(row), delivery)
        return self._cache[product_id]

    def _code(self, name: Any) -> str | None:
        if not name:
            return None
        return self._mapping.products.group_codes.get(str(name), str(name))

    def _group(self, row: AbcMapping[str, Any]) -> str | None:
        products = self._mapping.products
        source = products.margin_group
        if source.source == "category":
            category = ref(row.get(products.fields.category or ""))
            return self._code(self._categories.get(category or ""))
        if source.source == "attribute":
            if self._keys is None:
                raise ValueError("ProductIndex needs keys when the margin group is an attribute")
            target = source.target
            assert target is not None  # the mapping requires the attribute's description
            return self._code(target_value(row, "products", target, self._mapping, self._keys))
        node, seen = ref(row.get(products.fields.parent)), set()
        while node and node not in seen:  # seen: a damaged hierarchy may loop
            seen.add(node)
            folder = self._rows.get(node)
            if folder is None:
                return None
            code = self._code(folder.get(products.fields.name))
            if code in self._groups:
                return code
            node = ref(folder.get(products.fields.parent))
        return None


# --- orders --------------------------------------------------------------------------------------


def order_from_row(
    row: AbcMapping[str, Any],
    mapping: Mapping,
    keys: AttributeKeys,
    products: ProductIndex,
    tz: tzinfo,
    *,
    cards: AbcMapping[str, str] | None = None,
) -> Order:
    """Translate a customer order.

    Args:
        row: the order with its goods rows and additional attributes, normalised.
        cards: card Ref_Key -> card number, to resolve a card named on the order.

    Raises:
        DocumentError: bad data (naming the order and the field): negative, non-numeric or
            sub-kopeck amounts, an empty date, an unknown status or product, no partner nor card.
    """
    o = mapping.orders
    f = o.fields
    doc = DocReader(o.title, row.get(f.number), row.get(f.id))
    lines = tuple(
        _order_line(r, o.lines, doc, products, i) for i, r in enumerate(row.get(o.lines.section) or ())
    )
    customer = ref(row.get(f.customer))
    card_number = _card_number(row, mapping, keys, doc, cards)
    if customer is None and card_number is None:
        raise doc.fail(f.customer, "names neither a partner nor a card: fill in the partner in 1C")
    holder, redeem = o.read.card_holder_name, o.read.redeem_requested
    holder_name = str(target_value(row, "orders", holder, mapping, keys) or "").strip() if holder else ""
    return Order(
        id=doc.key,
        version=str(row.get(f.version) or ""),
        number=str(row.get(f.number) or ""),
        date=doc.time(row.get(f.date), f.date, tz),
        customer_id=customer,
        status=_status(row, o, lines, doc),
        posted=flag(row.get(f.posted)),
        deleted=flag(row.get(f.deleted)),
        lines=lines,
        redeem_requested=(
            doc.number(target_value(row, "orders", redeem, mapping, keys), _label(redeem)) if redeem else ZERO
        ),
        card_number=card_number,
        card_holder_name=holder_name or None,
        document_total=doc.number(row.get(f.document_total), f.document_total) if f.document_total else None,
    )


def _order_line(
    row: AbcMapping[str, Any], lines: Any, doc: DocReader, products: ProductIndex, i: int
) -> OrderLine:
    f = lines.fields

    def num(name: str | None, places: int = 2) -> Decimal:
        return doc.number(row.get(name), f"{lines.section}[{i + 1}].{name}", places=places) if name else ZERO

    where = f"{lines.section}[{i + 1}]"
    product_id = ref(row.get(f.product))
    if product_id is None:
        raise doc.fail(f"{where}.{f.product}", "the row names no product")
    try:
        product = products.product(product_id)
    except KeyError:
        raise doc.fail(f"{where}.{f.product}", f"product {product_id} is not in the catalog") from None
    try:
        line_no = int(row.get(f.line_no) or i + 1)
    except (TypeError, ValueError):
        raise doc.fail(f"{where}.{f.line_no}", f"{row.get(f.line_no)!r} is not a row number") from None
    return OrderLine(
        line_no=line_no,
        product_id=product_id,
        quantity=num(f.quantity, 3),
        amount=num(f.amount),
        price=num(f.price),
        group=product.group,
        delivery=product.delivery,
        manual_discount_percent=num(f.manual_percent),
        manual_discount_amount=num(f.manual_amount),
        auto_discount_percent=num(f.auto_percent),
        auto_discount_amount=num(f.auto_amount),
        cancelled=flag(row.get(f.cancelled)) if f.cancelled else False,
    )


def _status(row: AbcMapping[str, Any], o: Any, lines: tuple[OrderLine, ...], doc: DocReader) -> OrderStatus:
    s = o.status
    value = row.get(s.field)
    goods = [line for line in lines if not line.delivery]
    if value in s.cancelled or (s.all_lines_cancelled and goods and all(line.cancelled for line in goods)):
        return OrderStatus.CANCELLED
    if value in s.closed:
        return OrderStatus.CLOSED
    if value in s.open:
        return OrderStatus.OPEN
    raise doc.fail(s.field, f"status «{value}» is not in the mapping's orders.status lists: add it there")


def _card_number(
    row: AbcMapping[str, Any],
    mapping: Mapping,
    keys: AttributeKeys,
    doc: DocReader,
    cards: AbcMapping[str, str] | None,
) -> str | None:
    target = mapping.orders.read.card_number
    if target is not None:
        text = str(target_value(row, "orders", target, mapping, keys) or "").strip()
        if text:
            return text
    field = mapping.orders.fields.card
    card = ref(row.get(field)) if field else None
    if card is None or cards is None:
        return None
    if card not in cards:
        raise doc.fail(field or "", f"card {card} is not in {mapping.cards.entity_set}")
    return cards[card]


# --- customers, returns, cards --------------------------------------------------------------------


def normalize_phone(text: Any, region: str = "RU") -> str | None:
    """A phone number in E.164 (``+79161234567``), or None when it is not a valid number."""
    if not text or not str(text).strip():
        return None
    try:
        number = phonenumbers.parse(str(text), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(text: Any) -> str | None:
    value = str(text or "").strip()
    return value if _EMAIL.match(value) else None


def customer_from_row(row: AbcMapping[str, Any], mapping: Mapping, *, region: str = "RU") -> Customer:
    """A partner with its first valid phone (a mobile one preferred) and e-mail from its contacts."""
    p = mapping.partners
    c = p.contacts
    phones: list[str] = []
    email: str | None = None
    if c is not None:
        for contact in row.get(c.section) or ():
            kind = contact.get(c.type_field)
            texts = [contact.get(n) for n in (c.phone_field, c.email_field, c.presentation_field) if n]
            if kind == c.phone_type:
                phones += [phone for t in texts if (phone := normalize_phone(t, region))]
            elif kind == c.email_type and email is None:
                email = next((e for t in texts if (e := normalize_email(t))), None)
    mobile = [n for n in phones if _is_mobile(n)]
    return Customer(
        id=ref(row.get(p.fields.id)) or "",
        name=str(row.get(p.fields.name) or ""),
        phone=next(iter(mobile or phones), None),
        email=email,
        version=str(row.get(p.fields.version) or ""),
    )


def _is_mobile(e164: str) -> bool:
    kind = phonenumbers.number_type(phonenumbers.parse(e164))
    return kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


def sale_link(row: AbcMapping[str, Any], mapping: Mapping) -> tuple[str, str | None]:
    """A sale row -> (sale Ref_Key, the customer order it ships or None)."""
    f = mapping.sales.fields
    order = ref(row.get(f.order))
    kind = str(row.get(f"{f.order}_Type") or "")
    if order and kind and not kind.endswith(mapping.orders.entity_set):
        order = None  # the composite points at something else (e.g. a sales agreement)
    return ref(row.get(f.id)) or "", order


def return_sale_key(row: AbcMapping[str, Any], mapping: Mapping) -> str | None:
    """The sale a return references (None when it references an order directly or nothing)."""
    f = mapping.returns.fields
    kind = str(row.get(f"{f.sale}_Type") or "")
    return ref(row.get(f.sale)) if kind.endswith(mapping.sales.entity_set) else None


def return_from_row(
    row: AbcMapping[str, Any], mapping: Mapping, sale_to_order: AbcMapping[str, str | None], tz: tzinfo
) -> ReturnDoc:
    """Translate a customer return; its order comes through the sale it references.

    ``sale_to_order`` maps sale Ref_Key -> order Ref_Key (None for a sale without an order) and must
    hold the return's sale (see ``return_sale_key``); a sale missing from it is a DocumentError.
    """
    r = mapping.returns
    f = r.fields
    doc = DocReader(r.title, row.get(f.number), row.get(f.id))
    sale, kind = return_sale_key(row, mapping), str(row.get(f"{f.sale}_Type") or "")
    order_id = ref(row.get(f.sale)) if kind.endswith(mapping.orders.entity_set) else None
    if sale is not None and sale not in sale_to_order:
        raise doc.fail(f.sale, f"sale {sale} was not loaded: read it before the return")
    order_id = sale_to_order[sale] if sale is not None else order_id
    lines = []
    lf = r.lines.fields
    for i, line in enumerate(row.get(r.lines.section) or ()):
        where = f"{r.lines.section}[{i + 1}]"
        product = ref(line.get(lf.product))
        if product is None:
            raise doc.fail(f"{where}.{lf.product}", "the row names no product")
        quantity = doc.number(line.get(lf.quantity), f"{where}.{lf.quantity}", places=3)
        lines.append(ReturnLine(product, quantity, doc.number(line.get(lf.amount), f"{where}.{lf.amount}")))
    return ReturnDoc(
        id=doc.key,
        version=str(row.get(f.version) or ""),
        date=doc.time(row.get(f.date), f.date, tz),
        customer_id=ref(row.get(f.customer)),
        order_id=order_id,
        posted=flag(row.get(f.posted)),
        deleted=flag(row.get(f.deleted)),
        lines=tuple(lines),
    )


def card_from_row(row: AbcMapping[str, Any], mapping: Mapping, keys: AttributeKeys) -> Card | None:
    """A loyalty card, or None when it cannot serve: annulled, deleted, no number or no partner."""
    c = mapping.cards
    f = c.fields
    number = str(row.get(f.number) or "").strip() or str(row.get(f.magnetic_code or "") or "").strip()
    customer = ref(row.get(f.customer))
    if row.get(f.status) == c.status_values.annulled or (f.deleted and flag(row.get(f.deleted))):
        return None
    if not number or customer is None:
        return None
    issued = c.read.issued
    is_issued = issued is not None and flag(target_value(row, "cards", issued, mapping, keys))
    status = CardStatus.ISSUED if is_issued else CardStatus.VIRTUAL
    return Card(number=number, customer_id=customer, status=status, onec_id=ref(row.get(f.id)))
