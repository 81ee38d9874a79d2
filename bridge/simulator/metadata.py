"""``$metadata``: the EDMX document (OData v3, CSDL 2009/11) generated from the simulator's schema.

Shaped like 1C's own: namespace ``StandardODATA``, one ``EntityType`` per entity set keyed by
``Ref_Key``, a ``ComplexType`` ``<Set>_<Table>_RowType`` per tabular section (the section itself a
``Collection(...)`` property), ``X_Key`` GUID properties with a ``NavigationProperty`` ``X`` and its
``Association``, composite fields as two ``Edm.String`` properties ``X`` and ``X_Type``, enums as
``Edm.String``, the ``EnterpriseV8`` container with entity and association sets, and the exchange
plan functions as ``FunctionImport``. Must not import anything of the bridge outside
``bridge.simulator``.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from bridge.simulator.schema import GUID, NAMESPACE, STRING, EntitySet, Field, Schema

EDMX = "http://schemas.microsoft.com/ado/2007/06/edmx"
EDM = "http://schemas.microsoft.com/ado/2009/11/edm"
META = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"


def _property(parent: etree._Element, name: str, type_: str, *, nullable: bool = True) -> None:
    etree.SubElement(
        parent, f"{{{EDM}}}Property", Name=name, Type=type_, Nullable="true" if nullable else "false"
    )


def _fields(parent: etree._Element, fields: tuple[Field, ...]) -> None:
    for f in fields:
        if f.kind == "composite":
            _property(parent, f.name, STRING)
            _property(parent, f.name + "_Type", STRING)
        else:
            _property(parent, f.name, f.type, nullable=f.name != "Ref_Key")


# ``None`` is lxml's default namespace (lxml-stubs only allow ``str`` keys, hence ``Any``).
EDM_DEFAULT: Any = {None: EDM}


def build_metadata(schema: Schema) -> bytes:
    """The ``$metadata`` document as UTF-8 XML bytes."""
    root = etree.Element(f"{{{EDMX}}}Edmx", nsmap={"edmx": EDMX}, Version="1.0")
    services = etree.SubElement(root, f"{{{EDMX}}}DataServices", nsmap={"m": META})
    services.set(f"{{{META}}}DataServiceVersion", "3.0")
    s = etree.SubElement(services, f"{{{EDM}}}Schema", nsmap=EDM_DEFAULT, Namespace=NAMESPACE)
    associations: list[tuple[str, EntitySet, str]] = []
    for es in schema.entity_sets.values():
        et = etree.SubElement(s, f"{{{EDM}}}EntityType", Name=es.name)
        key = etree.SubElement(et, f"{{{EDM}}}Key")
        etree.SubElement(key, f"{{{EDM}}}PropertyRef", Name="Ref_Key")
        _fields(et, es.fields)
        for table in es.tables:
            _property(et, table.name, f"Collection({NAMESPACE}.{es.name}_{table.name}_RowType)")
        for f in es.fields:
            if f.kind == "ref" and f.type == GUID and f.target in schema and f.name != "Ref_Key":
                relation = f"{es.name}_{f.nav_name}"
                associations.append((relation, es, f.target or ""))
                etree.SubElement(
                    et,
                    f"{{{EDM}}}NavigationProperty",
                    Name=f.nav_name,
                    Relationship=f"{NAMESPACE}.{relation}",
                    FromRole="Begin",
                    ToRole="End",
                )
    for es in schema.entity_sets.values():
        for table in es.tables:
            ct = etree.SubElement(s, f"{{{EDM}}}ComplexType", Name=f"{es.name}_{table.name}_RowType")
            _fields(ct, table.fields)
    for name, es, target in associations:
        assoc = etree.SubElement(s, f"{{{EDM}}}Association", Name=name)
        etree.SubElement(
            assoc, f"{{{EDM}}}End", Role="Begin", Type=f"{NAMESPACE}.{es.name}", Multiplicity="*"
        )
        etree.SubElement(
            assoc, f"{{{EDM}}}End", Role="End", Type=f"{NAMESPACE}.{target}", Multiplicity="0..1"
        )
    container = etree.SubElement(s, f"{{{EDM}}}EntityContainer", Name="EnterpriseV8")
    container.set(f"{{{META}}}IsDefaultEntityContainer", "true")
    for es in schema.entity_sets.values():
        etree.SubElement(container, f"{{{EDM}}}EntitySet", Name=es.name, EntityType=f"{NAMESPACE}.{es.name}")
    for name, es, target in associations:
        aset = etree.SubElement(
            container, f"{{{EDM}}}AssociationSet", Name=name, Association=f"{NAMESPACE}.{name}"
        )
        etree.SubElement(aset, f"{{{EDM}}}End", Role="Begin", EntitySet=es.name)
        etree.SubElement(aset, f"{{{EDM}}}End", Role="End", EntitySet=target)
    for fn in ("SelectChanges", "NotifyChangesReceived"):
        fi = etree.SubElement(container, f"{{{EDM}}}FunctionImport", Name=fn)
        fi.set(f"{{{META}}}HttpMethod", "POST")
        etree.SubElement(fi, f"{{{EDM}}}Parameter", Name="DataExchangePoint", Type="Edm.String", Mode="In")
        etree.SubElement(fi, f"{{{EDM}}}Parameter", Name="MessageNo", Type="Edm.Int64", Mode="In")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
