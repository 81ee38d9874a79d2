"""1C's ``$metadata`` (EDMX, OData v3 CSDL) as plain data: entity sets, their fields and sections.

Owns :func:`parse_metadata` — lxml over the bytes :meth:`ODataClient.metadata` returns — into a
:class:`Metadata`: entity set → its properties (name → EDM type) and its tabular sections
(``Collection(StandardODATA.<Set>_<Section>_RowType)`` properties, resolved to the row type's
properties), plus the function imports (``SelectChanges``…). :meth:`Metadata.missing` answers
which of the mapping's ``required_metadata()`` pairs 1C lacks. Namespaces are matched by local
name only: 1C has published CSDL 2008/09 and 2009/11 schemas across platform releases. A UT 11
``$metadata`` runs to tens of megabytes, so the parser allows huge trees but never resolves
entities or touches the network.

Must not import bridge.store, bridge.site or bridge.service.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from bridge.errors import FatalHTTPError

__all__ = ["EntitySetInfo", "Metadata", "parse_metadata"]

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True)


@dataclass(frozen=True)
class EntitySetInfo:
    """One published object: ``fields`` (name → EDM type) and ``sections`` (name → row fields)."""

    name: str
    fields: dict[str, str] = field(default_factory=dict)
    sections: dict[str, dict[str, str]] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        """Whether ``Field`` or ``Section.Field`` (or a bare ``Section``) exists."""
        section, dot, inner = name.partition(".")
        if not dot:
            return name in self.fields or name in self.sections
        return inner in self.sections.get(section, {})


@dataclass(frozen=True)
class Metadata:
    """The published part of an infobase, as ``$metadata`` describes it."""

    entity_sets: dict[str, EntitySetInfo] = field(default_factory=dict)
    functions: frozenset[str] = frozenset()

    def __contains__(self, entity_set: object) -> bool:
        return entity_set in self.entity_sets

    def get(self, entity_set: str) -> EntitySetInfo | None:
        return self.entity_sets.get(entity_set)

    def missing(self, required: Iterable[tuple[str, str]]) -> list[tuple[str, str | None]]:
        """The pairs 1C lacks: ``(set, None)`` once for a missing set, ``(set, name)`` per field.

        ``name`` is ``Field`` or ``Section.Field``; fields of a missing set are not listed one by one.
        """
        out: list[tuple[str, str | None]] = []
        gone: set[str] = set()
        for entity_set, name in required:
            info = self.entity_sets.get(entity_set)
            if info is None:
                if entity_set not in gone:
                    gone.add(entity_set)
                    out.append((entity_set, None))
                continue
            if not info.has(name):
                out.append((entity_set, name))
        return out


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _children(parent: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in parent if _local(c.tag) == name]


def _properties(element: etree._Element) -> dict[str, str]:
    return {p.get("Name", ""): p.get("Type", "") for p in _children(element, "Property") if p.get("Name")}


def _collection_of(type_name: str) -> str | None:
    """``Collection(NS.X_RowType)`` → ``X_RowType`` (without namespace); else None."""
    if not (type_name.startswith("Collection(") and type_name.endswith(")")):
        return None
    return type_name[len("Collection(") : -1].rpartition(".")[2]


def parse_metadata(body: bytes) -> Metadata:
    """Parse a ``$metadata`` document.

    Raises:
        FatalHTTPError: the body is not an EDMX document (an HTML page, garbage).
    """
    try:
        root = etree.fromstring(body, parser=_PARSER)
    except etree.XMLSyntaxError as exc:
        raise FatalHTTPError(
            f"$metadata is not XML: {exc}", body=body[:300].decode("utf-8", "replace")
        ) from exc
    if root is None or _local(root.tag) != "Edmx":
        raise FatalHTTPError("$metadata is not an EDMX document", body=body[:300].decode("utf-8", "replace"))
    entity_types: dict[str, dict[str, str]] = {}
    row_types: dict[str, dict[str, str]] = {}
    containers: list[etree._Element] = []
    for schema in root.iter():
        if _local(schema.tag) != "Schema":
            continue
        for item in schema:
            kind = _local(item.tag)
            if kind == "EntityType":
                entity_types[item.get("Name", "")] = _properties(item)
            elif kind == "ComplexType":
                row_types[item.get("Name", "")] = _properties(item)
            elif kind == "EntityContainer":
                containers.append(item)
    sets: dict[str, EntitySetInfo] = {}
    functions: set[str] = set()
    for container in containers:
        for item in container:
            kind = _local(item.tag)
            if kind == "FunctionImport" and item.get("Name"):
                functions.add(item.get("Name", ""))
            if kind != "EntitySet" or not item.get("Name"):
                continue
            type_name = item.get("EntityType", "").rpartition(".")[2]
            props = entity_types.get(type_name, {})
            fields: dict[str, str] = {}
            sections: dict[str, dict[str, str]] = {}
            for name, edm in props.items():
                row_type = _collection_of(edm)
                if row_type is None:
                    fields[name] = edm
                else:
                    sections[name] = dict(row_types.get(row_type, {}))
            sets[item.get("Name", "")] = EntitySetInfo(item.get("Name", ""), fields, sections)
    if not sets:  # a schema without a container (unusual): every entity type is its own set
        for name, props in entity_types.items():
            fields = {n: t for n, t in props.items() if _collection_of(t) is None}
            sections = {
                n: dict(row_types.get(_collection_of(t) or "", {}))
                for n, t in props.items()
                if _collection_of(t) is not None
            }
            sets[name] = EntitySetInfo(name, fields, sections)
    return Metadata(sets, frozenset(functions))
