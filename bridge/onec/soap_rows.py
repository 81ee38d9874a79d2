"""The SOAP source's results as rows in the OData shape, keyed by the mapping's names.

Owns :func:`order_as_odata_row` and :func:`customer_as_odata_row`: what ``GetOrder`` and
``GetCustomer`` return (:mod:`bridge.onec.soap`, whose XML element names are the service's own
contract) becomes the row an OData read of the same object would give — under the names the
mapping gives (``orders.fields``, ``orders.status.field``, ``orders.lines``, ``partners.fields``,
``partners.contacts``, ``attributes``), so one translator serves every source. A name the mapping
switches off (``null``) is left out of the row.

Must not import ``bridge.store``/``site``/``service``: of the bridge, only ``onec.soap`` and
``onec.mapping``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bridge.onec.mapping import AttributeChart, OrderLines
from bridge.onec.mapping import Mapping as OneCMapping
from bridge.onec.soap import (
    EMPTY_GUID,
    LINE_AMOUNTS,
    AttributeValue,
    SoapCustomer,
    SoapOrder,
    SoapOrderLine,
    wall_clock,
)

__all__ = ["customer_as_odata_row", "order_as_odata_row"]

# SoapOrderLine's amounts whose key in the mapping's orders.lines.fields has another name.
_LINE_FIELDS = {
    "manual_discount_percent": "manual_percent",
    "manual_discount_amount": "manual_amount",
    "auto_discount_percent": "auto_percent",
    "auto_discount_amount": "auto_amount",
}

_ODATA_TYPE = {"Number": "Edm.Double", "Boolean": "Edm.Boolean", "Date": "Edm.DateTime"}
_ODATA_TYPE["Empty"] = "StandardODATA.Undefined"


def _named(pairs: Iterable[tuple[str | None, Any]]) -> dict[str, Any]:
    """A row from ``(name, value)`` pairs; a name the mapping switched off (``None``) is left out."""
    return {name: value for name, value in pairs if name}


def _attribute_rows(attributes: Iterable[AttributeValue], chart: AttributeChart) -> list[dict[str, Any]]:
    # The property's Description rides along as ``$expand=<section>/<property>`` would put it, under
    # the navigation property OData names after a reference field (``X_Key`` -> ``X``).
    expanded = chart.property_field.removesuffix("_Key") if chart.property_field.endswith("_Key") else None
    rows = []
    for n, a in enumerate(attributes, start=1):
        key, value = a.property or EMPTY_GUID, wall_clock(a.value) if a.kind == "Date" else a.value
        kind = f"StandardODATA.{a.ref_type}" if a.kind == "Ref" and a.ref_type else _ODATA_TYPE.get(a.kind)
        pairs: list[tuple[str | None, Any]] = [("LineNumber", str(n)), (chart.property_field, key)]
        pairs.append((expanded, {"Ref_Key": key, "Description": a.name}))
        pairs.append((chart.value_field, "" if value is None else value))
        pairs.append((chart.type_field, kind or "Edm.String"))
        pairs.append((chart.text_field, ""))
        rows.append(_named(pairs))
    return rows


def _goods_row(line: SoapOrderLine, lines: OrderLines) -> dict[str, Any]:
    f = lines.fields
    pairs: list[tuple[str | None, Any]] = [(f.line_no, str(line.line_no)), (f.product, line.product)]
    for attr, _ in LINE_AMOUNTS:
        if getattr(line, attr) is not None:
            pairs.append((getattr(f, _LINE_FIELDS.get(attr, attr)), getattr(line, attr)))
    pairs.append((f.cancelled, line.cancelled))
    if line.vat_rate is not None and lines.vat_rate is not None:
        pairs.append((lines.vat_rate.field, line.vat_rate))
    return _named(pairs)


def order_as_odata_row(order: SoapOrder, mapping: OneCMapping) -> dict[str, Any]:
    """The order as the mapping's orders entity set arrives over OData (JSON-decoded, ``Decimal``).

    Keys are the mapping's names (``orders.fields``, ``orders.status.field``, ``orders.lines``,
    ``attributes``); a value the mapping has no field for (``null``) is left out. Dates are
    wall-clock strings, the row number an Int64 string, empty refs the empty GUID; each additional
    attribute row also carries its property with its ``Description`` the way ``$expand`` of the
    property would, since the SOAP answer names properties.
    """
    o = mapping.orders
    f = o.fields
    goods = [_goods_row(line, o.lines) for line in order.lines]
    return _named(
        [
            (f.id, order.ref),
            (f.version, order.version),
            (f.number, order.number),
            (f.date, wall_clock(order.date)),
            (f.posted, order.posted),
            (f.deleted, order.deleted),
            (o.status.field, order.status),
            (f.customer, order.partner or EMPTY_GUID),
            (f.card, order.card or EMPTY_GUID),
            (f.document_total, order.document_amount),
            (f.price_includes_vat, order.price_includes_vat),
            (o.lines.section, goods),
            (mapping.attributes.section, _attribute_rows(order.attributes, mapping.attributes)),
        ]
    )


def customer_as_odata_row(customer: SoapCustomer, mapping: OneCMapping) -> dict[str, Any]:
    """The partner as the mapping's partners entity set arrives over OData, keyed by the mapping's
    names (``partners.fields``, ``partners.contacts``, ``attributes``): phone and e-mail become
    contact rows of ``contacts.phone_type`` / ``contacts.email_type``."""
    p = mapping.partners
    c = p.contacts
    contacts: list[dict[str, Any]] = []
    if c is not None:
        for kind, phone, email in ((c.phone_type, customer.phone, ""), (c.email_type, "", customer.email)):
            if not (phone or email):
                continue
            row: list[tuple[str | None, Any]] = [("LineNumber", str(len(contacts) + 1)), (c.type_field, kind)]
            row += [(c.phone_field, phone or ""), (c.email_field, email or "")]
            contacts.append(_named([*row, (c.presentation_field, phone or email)]))
    return _named(
        [
            (p.fields.id, customer.ref),
            (p.fields.version, customer.version),
            (p.fields.deleted, customer.deleted),
            (p.fields.name, customer.name),
            (c.section if c is not None else None, contacts),
            (mapping.attributes.section, _attribute_rows(customer.attributes, mapping.attributes)),
        ]
    )
