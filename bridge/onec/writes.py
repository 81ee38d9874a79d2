"""Domain results -> 1C write bodies, each computed so it is skipped when 1C already shows it.

Owns the bodies the bridge PATCHes or POSTs to 1C, every name taken from the mapping: the order's
and the partner's loyalty attributes (``order_attribute_patch``, ``partner_attribute_patch``), the
level discount in an open order's goods rows (``order_lines_discount_patch``, with ``order_vat``
giving the rows' VAT rates for the plan) and a new loyalty card (``card_create_body``,
``card_kind_key``). A patch is None when nothing would change; a tabular section is always sent
whole, other rows untouched. Values are JSON-able: ``Decimal`` (never float), ``bool``, ``str``;
dates as 1C's naive local ``YYYY-MM-DDTHH:MM:SS``. Must not import bridge.store, bridge.site or
bridge.service.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from bridge.domain.views import CustomerView, OrderView
from bridge.errors import ConfigError
from bridge.onec.mapping import REF_KEY, AttributeKeys, Mapping, Target
from bridge.onec.translate import DocReader, flag, local_time, ref, target_value

LINE_NUMBER = "LineNumber"  # the platform's row number in every tabular section
EDM_TYPES = {"number": "Edm.Double", "string": "Edm.String", "boolean": "Edm.Boolean", "date": "Edm.DateTime"}
EMPTY_DATE = "0001-01-01T00:00:00"  # 1C's empty date, for a date field target
_ZERO = Decimal(0)
_NO_TZ = UTC  # numbers need no zone


# --- additional attributes and fields --------------------------------------------------------------


def _wire(value: Any, kind: str, tz: tzinfo) -> Any:
    """A desired value in the form 1C stores; the type's empty value for None."""
    if kind == "number":
        return Decimal(value) if value is not None else _ZERO
    if kind == "boolean":
        return bool(value)
    if kind == "date":
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"expected an aware datetime, got {value!r}")
        return value.astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S")
    return "" if value is None else str(value)


def _current(value: Any, kind: str, tz: tzinfo) -> Any:
    """What 1C holds now, in the same form as ``_wire`` (unreadable values compare unequal)."""
    try:
        if kind == "number":
            return Decimal(str(value)) if value not in (None, "") else _ZERO
        if kind == "boolean":
            return flag(value)
        if kind == "date":
            moment = local_time(value, tz)
            return moment.strftime("%Y-%m-%dT%H:%M:%S") if moment else None
    except (InvalidOperation, ValueError, TypeError):
        return object()
    return "" if value is None else str(value)


def _is_empty(value: Any) -> bool:
    return value in (None, "", False) or (isinstance(value, Decimal) and value == 0)


def targets_patch(
    current_row: AbcMapping[str, Any],
    obj: str,
    wanted: Iterable[tuple[Target | None, Any]],
    mapping: Mapping,
    keys: AttributeKeys,
    tz: tzinfo,
) -> dict[str, Any] | None:
    """The PATCH body that makes ``current_row`` hold ``wanted``, or None when it already does.

    Field targets go in as fields. Attribute targets change the whole additional-attribute section:
    other rows are kept as they are, ours updated or added, and ours removed when the value is
    empty (0, "", false, no date), as 1C itself stores an empty attribute. An absent row counts as
    empty, so an order with nothing to say is never written.
    """
    chart = mapping.attributes
    patch: dict[str, Any] = {}
    # 1C's tabular rows carry their owner's Ref_Key; it is not a column of the section and 1C
    # refuses it in a PATCH, so rows go back without it.
    rows = [{k: v for k, v in r.items() if k != REF_KEY} for r in current_row.get(chart.section) or ()]
    section_changed = False
    for target, value in wanted:
        if target is None:
            continue
        new = _wire(value, target.type, tz)
        old = _current(target_value(current_row, obj, target, mapping, keys), target.type, tz)
        if new == old or (_is_empty(new) and _is_empty(old)):
            continue
        if target.field:
            patch[target.field] = EMPTY_DATE if new is None else new
            continue
        section_changed = True
        key = keys.key(obj, target.attribute or "")
        rows = [r for r in rows if r.get(chart.property_field) != key] if _is_empty(new) else rows
        if _is_empty(new):
            continue
        row = next((r for r in rows if r.get(chart.property_field) == key), None)
        if row is None:
            row = {LINE_NUMBER: max((_int(r.get(LINE_NUMBER)) for r in rows), default=0) + 1}
            row[chart.property_field] = key
            rows.append(row)
        row[chart.value_field] = new
        row[chart.type_field] = EDM_TYPES[target.type]
        if chart.text_field:
            row[chart.text_field] = new if target.type == "string" else ""
    if section_changed:
        patch[chart.section] = rows
    return patch or None


def _as_number(value: Any) -> Any:
    return _current(value, "number", _NO_TZ)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def order_attribute_patch(
    current_row: AbcMapping[str, Any], view: OrderView, mapping: Mapping, keys: AttributeKeys, tz: tzinfo
) -> dict[str, Any] | None:
    """The order's loyalty figures (points spent/earned, available from, card to issue, message)."""
    w = mapping.orders.write
    wanted = [
        (w.points_spent, view.points_spent),
        (w.points_earned, view.points_earned),
        (w.available_from, view.available_from),
        (w.issue_card, view.issue_card),
        (w.message, view.message),
    ]
    return targets_patch(current_row, "orders", wanted, mapping, keys, tz)


def partner_attribute_patch(
    current_row: AbcMapping[str, Any], view: CustomerView, mapping: Mapping, keys: AttributeKeys, tz: tzinfo
) -> dict[str, Any] | None:
    """The partner's loyalty state: tier, points, volume, level, its term, period sum, history."""
    w = mapping.partners.write
    wanted = [
        (w.tier_name, view.tier.name if view.tier else ""),
        (w.points_total, view.total),
        (w.points_available, max(view.available, _ZERO)),  # never shown below zero (SPEC §2)
        (w.volume, view.volume),
        (w.level_name, view.level.name if view.level else ""),
        (w.level_percent, view.level.percent if view.level else _ZERO),
        (w.level_valid_until, view.valid_until),
        (w.period_sum, view.period_sum),
        (w.missing_to_next_level, view.next_level_missing or _ZERO),
        (w.level_history, view.level_history_text),
    ]
    return targets_patch(current_row, "partners", wanted, mapping, keys, tz)


# --- level discount in the goods rows ------------------------------------------------------------


class PlanLine(Protocol):
    """One goods row as the discount plan wants it (``bridge.domain.discounts.LineDiscount``)."""

    @property
    def line_no(self) -> int: ...
    @property
    def auto_percent(self) -> Decimal: ...
    @property
    def auto_amount(self) -> Decimal: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def vat_amount(self) -> Decimal | None: ...
    @property
    def amount_with_vat(self) -> Decimal: ...


class Plan(Protocol):
    """A discount plan for a whole order (``bridge.domain.discounts.DiscountPlan``)."""

    @property
    def lines(self) -> Sequence[PlanLine]: ...
    @property
    def document_total(self) -> Decimal: ...


def order_lines_discount_patch(
    current_row: AbcMapping[str, Any], plan: Plan, mapping: Mapping
) -> dict[str, Any] | None:
    """The goods rows (sent whole) and the document total for a discount plan; None if 1C has it.

    Rows the plan leaves alone (``applied`` False: delivery, cancelled) and fields the mapping
    does not name (e.g. no VAT sums) are not touched.

    Raises:
        ConfigError: the mapping names no automatic-discount fields.
        DocumentError: the plan names a row the order no longer has (re-read and re-plan).
    """
    o = mapping.orders
    lf = o.lines.fields
    if not (lf.auto_percent and lf.auto_amount):
        raise ConfigError(
            "orders.lines.fields: auto_percent and auto_amount must be mapped for the discount program"
        )
    doc = DocReader(o.title, current_row.get(o.fields.number), current_row.get(o.fields.id))
    rows = [{k: v for k, v in r.items() if k != REF_KEY} for r in current_row.get(o.lines.section) or ()]
    by_no = {_int(r.get(lf.line_no)): r for r in rows}
    changed = False
    for line in plan.lines:
        if getattr(line, "applied", True) is False:
            continue
        row = by_no.get(line.line_no)
        if row is None:
            raise doc.fail(f"{o.lines.section}[{line.line_no}]", "the row is gone: re-read the order")
        values = [
            (lf.auto_percent, line.auto_percent),
            (lf.auto_amount, line.auto_amount),
            (lf.amount, line.amount),
            (lf.vat_amount, line.vat_amount),
            (lf.amount_with_vat, line.amount_with_vat),
        ]
        for field, value in values:
            if field and value is not None and _as_number(row.get(field)) != value:
                row[field] = Decimal(value)
                changed = True
    patch: dict[str, Any] = {o.lines.section: rows}
    total = o.fields.document_total
    if total:
        changed = changed or _as_number(current_row.get(total)) != plan.document_total
        patch[total] = Decimal(plan.document_total)
    return patch if changed else None


# --- VAT of an order's rows (for the discount plan) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderVat:
    """VAT of an order's rows, for the discount plan: rate in percent per row number."""

    price_includes_vat: bool
    rates: dict[int, Decimal]


def vat_rates_from_rows(rows: Iterable[AbcMapping[str, Any]], mapping: Mapping) -> dict[str, Decimal]:
    """Rate catalog (``Catalog_СтавкиНДС``) rows -> Ref_Key -> rate in percent."""
    vat = mapping.orders.lines.vat_rate
    if vat is None or vat.rate_field is None:
        return {}
    doc = DocReader(vat.catalog or "", "", None)  # names the catalog in errors
    return {
        key: doc.number(r.get(vat.rate_field), vat.rate_field) for r in rows if (key := ref(r.get(REF_KEY)))
    }


def order_vat(
    row: AbcMapping[str, Any], mapping: Mapping, vat_rates: AbcMapping[str, Decimal] | None = None
) -> OrderVat:
    """The rows' VAT rates (from the enum map or the rate catalog) and whether prices include VAT.

    Rows without a rate (empty value) are left out. Raises DocumentError for a rate the mapping or
    the catalog does not know.
    """
    o = mapping.orders
    doc = DocReader(o.title, row.get(o.fields.number), row.get(o.fields.id))
    vat = o.lines.vat_rate
    includes = flag(row.get(o.fields.price_includes_vat)) if o.fields.price_includes_vat else True
    rates: dict[int, Decimal] = {}
    if vat is None:
        return OrderVat(includes, rates)
    for i, line in enumerate(row.get(o.lines.section) or ()):
        field = f"{o.lines.section}[{i + 1}].{vat.field}"
        value = line.get(vat.field)
        line_no = int(line.get(o.lines.fields.line_no) or i + 1)
        if vat.values is not None:
            if value in (None, ""):
                continue
            if value not in vat.values:
                raise doc.fail(field, f"VAT rate «{value}» is not in orders.lines.vat_rate.values: add it")
            rates[line_no] = vat.values[value]
        elif (key := ref(value)) is not None:
            if vat_rates is None or key not in vat_rates:
                raise doc.fail(field, f"VAT rate {key} is not in {vat.catalog}")
            rates[line_no] = vat_rates[key]
    return OrderVat(includes, rates)


# --- cards ---------------------------------------------------------------------------------------


def card_create_body(
    number: str, customer_id: str, kind_key: str, mapping: Mapping, keys: AttributeKeys | None = None
) -> dict[str, Any]:
    """The POST body of a new, active loyalty card of kind ``kind_key`` for the partner.

    ``keys`` is accepted for symmetry with the other writers; a new card carries no attributes
    (the warehouse sets «Карта выдана» when it hands the card out).
    """
    c = mapping.cards
    f = c.fields
    body: dict[str, Any] = {f.kind: kind_key, f.number: number, f.customer: customer_id}
    body[f.status] = c.status_values.active
    if f.name:
        body[f.name] = number
    return body


def card_kind_key(kind_rows: Iterable[AbcMapping[str, Any]], mapping: Mapping, kind: str | None) -> str:
    """The card kind's Ref_Key: by Description (config ``cards.kind``), or the only kind there is."""
    name_field = mapping.cards.kinds.name_field
    rows = [r for r in kind_rows if ref(r.get(REF_KEY))]
    found = [r for r in rows if kind is None or r.get(name_field) == kind]
    if len(found) == 1:
        return str(found[0][REF_KEY])
    names = ", ".join(f"«{r.get(name_field)}»" for r in rows) or "none"
    where = mapping.cards.kinds.entity_set
    if kind is None:
        raise ConfigError(f"cards.kind: {where} has {len(rows)} kinds ({names}): name the one to use")
    raise ConfigError(
        f"cards.kind: no single card kind «{kind}» in {where} (there are: {names}): fix cards.kind"
    )
