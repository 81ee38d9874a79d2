"""The Atom feed 1C answers ``SelectChanges`` with: one ``entry`` per changed object (its properties
in ``m:properties``) and one ``at:deleted-entry`` per deletion. Generated with lxml.
Must not import anything of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from lxml import etree

from bridge.simulator.schema import NAMESPACE, STRING, EntitySet, Field
from bridge.simulator.store import Change
from bridge.simulator.wire import dumps, format_date

ATOM = "http://www.w3.org/2005/Atom"
DATA = "http://schemas.microsoft.com/ado/2007/08/dataservices"
META = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
TOMBSTONE = "http://purl.org/atompub/tombstone/1.0"
SCHEME = "http://schemas.microsoft.com/ado/2007/08/dataservices/scheme"
# ``None`` is lxml's default namespace (lxml-stubs only allow ``str`` keys, hence ``Any``).
NSMAP: Any = {None: ATOM, "d": DATA, "m": META, "at": TOMBSTONE}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_date(value)
    if isinstance(value, Decimal):
        return dumps(value)
    return str(value)


def _props(parent: etree._Element, fields: Iterable[Field], row: Mapping[str, Any]) -> None:
    for f in fields:
        if f.name not in row:
            continue
        el = etree.SubElement(parent, f"{{{DATA}}}{f.name}")
        if f.type != STRING and f.kind != "composite":
            el.set(f"{{{META}}}type", f.type)
        el.text = _text(row[f.name])
        if f.kind == "composite":
            etree.SubElement(parent, f"{{{DATA}}}{f.name}_Type").text = str(row.get(f.name + "_Type", ""))


def _entry(feed: etree._Element, base: str, es: EntitySet, row: Mapping[str, Any], updated: str) -> None:
    ref = f"{es.name}(guid'{row['Ref_Key']}')"
    entry = etree.SubElement(feed, f"{{{ATOM}}}entry")
    etree.SubElement(entry, f"{{{ATOM}}}id").text = base + ref
    etree.SubElement(entry, f"{{{ATOM}}}category", term=f"{NAMESPACE}.{es.name}", scheme=SCHEME)
    etree.SubElement(entry, f"{{{ATOM}}}title", type="text")
    etree.SubElement(entry, f"{{{ATOM}}}updated").text = updated
    author = etree.SubElement(entry, f"{{{ATOM}}}author")
    etree.SubElement(author, f"{{{ATOM}}}name")
    etree.SubElement(entry, f"{{{ATOM}}}link", rel="edit", title=es.name, href=ref)
    content = etree.SubElement(entry, f"{{{ATOM}}}content", type="application/xml")
    props = etree.SubElement(content, f"{{{META}}}properties")
    _props(props, es.fields, row)
    for table in es.tables:
        row_type = f"{NAMESPACE}.{es.name}_{table.name}_RowType"
        coll = etree.SubElement(props, f"{{{DATA}}}{table.name}")
        coll.set(f"{{{META}}}type", f"Collection({row_type})")
        for r in row.get(table.name, []):
            element = etree.SubElement(coll, f"{{{DATA}}}element")
            element.set(f"{{{META}}}type", row_type)
            _props(element, table.fields, r)


def changes_feed(
    base: str,
    changes: Iterable[Change],
    lookup: Mapping[str, EntitySet],
    get: Any,
    when: datetime,
) -> bytes:
    """The feed for ``changes``; ``get(entity_set, key)`` reads the current object (``None`` if gone)."""
    updated = format_date(when)
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap=NSMAP)
    feed.set("{http://www.w3.org/XML/1998/namespace}base", base)
    etree.SubElement(feed, f"{{{ATOM}}}id").text = base + "SelectChanges"
    etree.SubElement(feed, f"{{{ATOM}}}title", type="text").text = "SelectChanges"
    etree.SubElement(feed, f"{{{ATOM}}}updated").text = updated
    for change in changes:
        row = None if change.deleted else get(change.entity_set, change.key)
        if row is None:
            tomb = etree.SubElement(feed, f"{{{TOMBSTONE}}}deleted-entry")
            tomb.set("ref", f"{base}{change.entity_set}(guid'{change.key}')")
            tomb.set("when", updated)
            continue
        _entry(feed, base, lookup[change.entity_set], row, updated)
    return etree.tostring(feed, xml_declaration=True, encoding="UTF-8")
