"""The mapping file: which 1C entity sets, fields and additional attributes the bridge uses.

Owns loading ``mappings/*.yaml`` (with ``extends``) into one frozen, typed ``Mapping``, reporting
every problem at once as a ``ConfigError`` (file, key path, what to do); the lists ``check`` needs
(``entity_sets``, ``required_metadata``, ``attribute_descriptions``, ``select_fields``); and the
resolution of additional-attribute descriptions to property keys (``resolve_attributes``).
Every 1C name the bridge uses lives in the mapping file, none here. Must not import
bridge.store, bridge.site or bridge.service.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator

from bridge.errors import ConfigError, ContractError

REF_KEY = "Ref_Key"  # the platform's key property, the same in every configuration
ATTRIBUTES_WHERE = "НСИ и администрирование → Дополнительные реквизиты"

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
ValueType = Literal["number", "string", "date", "boolean"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Model):
    """Where one loyalty figure lives: a field of the object or one of its additional attributes."""

    field: Name | None = None
    attribute: Name | None = None
    type: ValueType

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if not isinstance(data, dict) or ("field" in data) == ("attribute" in data):
            raise ValueError(
                'a target is {field: Name, type: T} or {attribute: "Description", type: T} '
                "(T: number, string, date or boolean), or null to switch it off"
            )
        return data


class _Targets(_Model):
    """A group of targets; ``expected`` gives each one's value type. A target is a required key
    (null switches it off) unless it has a default."""

    expected: ClassVar[dict[str, str]] = {}

    @model_validator(mode="after")
    def _types(self) -> _Targets:
        for key, kind in self.expected.items():
            target = getattr(self, key)
            if target is not None and target.type != kind:
                raise ValueError(f"{key} holds a {kind}: set its type to {kind}")
        return self


def _types(spec: str) -> dict[str, str]:
    return dict(pair.split(":") for pair in spec.split())


ORDER_READ_TYPES = _types("redeem_requested:number card_number:string card_holder_name:string")
ORDER_WRITE_TYPES = _types(
    "points_spent:number points_earned:number available_from:date issue_card:boolean message:string"
)
PARTNER_WRITE_TYPES = _types(
    "tier_name:string points_total:number points_available:number volume:number level_name:string"
    " level_percent:number level_valid_until:date period_sum:number missing_to_next_level:number"
    " level_history:string"
)

# The sections that only name 1C fields: a field without a default must be given, one with a
# default may be null.


class AttributeChart(_Model):
    entity_set: Name
    description_field: Name
    section: Name
    property_field: Name
    value_field: Name
    type_field: Name
    title_field: Name | None = None
    deletion_mark_field: Name | None = None
    text_field: Name | None = None


class OrderFields(_Model):
    id: Name
    version: Name
    number: Name
    date: Name
    posted: Name
    deleted: Name
    customer: Name
    card: Name | None = None
    document_total: Name | None = None
    price_includes_vat: Name | None = None


class LineFields(_Model):
    line_no: Name
    product: Name
    quantity: Name
    amount: Name
    price: Name | None = None
    manual_percent: Name | None = None
    manual_amount: Name | None = None
    auto_percent: Name | None = None
    auto_amount: Name | None = None
    vat_amount: Name | None = None
    amount_with_vat: Name | None = None
    cancelled: Name | None = None


class OrderRead(_Targets):
    expected: ClassVar[dict[str, str]] = ORDER_READ_TYPES
    redeem_requested: Target | None
    card_number: Target | None = None
    card_holder_name: Target | None = None


class OrderWrite(_Targets):
    expected: ClassVar[dict[str, str]] = ORDER_WRITE_TYPES
    points_spent: Target | None
    points_earned: Target | None
    available_from: Target | None
    issue_card: Target | None
    message: Target | None


class ReturnFields(_Model):
    id: Name
    version: Name
    number: Name
    date: Name
    posted: Name
    deleted: Name
    customer: Name
    sale: Name


class ReturnLineFields(_Model):
    product: Name
    quantity: Name
    amount: Name


class SaleFields(_Model):
    id: Name
    order: Name


class PartnerFields(_Model):
    id: Name
    version: Name
    name: Name
    deleted: Name | None = None


class Contacts(_Model):
    section: Name
    type_field: Name
    phone_type: Name
    email_type: Name
    presentation_field: Name
    phone_field: Name | None = None
    email_field: Name | None = None


class PartnerWrite(_Targets):
    expected: ClassVar[dict[str, str]] = PARTNER_WRITE_TYPES
    tier_name: Target | None
    points_total: Target | None
    points_available: Target | None
    volume: Target | None
    level_name: Target | None
    level_percent: Target | None
    level_valid_until: Target | None
    period_sum: Target | None
    missing_to_next_level: Target | None
    level_history: Target | None


class ProductFields(_Model):
    id: Name
    name: Name
    parent: Name
    is_folder: Name
    type: Name | None = None
    category: Name | None = None


class CatalogRef(_Model):
    entity_set: Name
    name_field: Name


class CardFields(_Model):
    id: Name
    kind: Name
    number: Name
    status: Name
    customer: Name
    magnetic_code: Name | None = None
    name: Name | None = None
    deleted: Name | None = None


class CardStatusValues(_Model):
    active: Name
    annulled: Name


class CardRead(_Targets):
    expected: ClassVar[dict[str, str]] = {"issued": "boolean"}
    issued: Target | None


class StatusValues(_Model):
    field: Name
    closed: tuple[Name, ...]
    open: tuple[Name, ...] = ()
    cancelled: tuple[Name, ...] = ()
    all_lines_cancelled: bool = False

    @model_validator(mode="after")
    def _disjoint(self) -> StatusValues:
        if not self.closed:
            raise ValueError("closed lists no value: name the status value(s) of a closed order")
        seen: dict[str, str] = {}
        for kind in ("closed", "open", "cancelled"):
            for value in getattr(self, kind):
                if value in seen:
                    raise ValueError(f"«{value}» is listed under both {seen[value]} and {kind}: keep one")
                seen[value] = kind
        return self


class VatRateSource(_Model):
    """A row's VAT rate: a reference into a catalog holding the rate, or an enum with a value map."""

    field: Name
    catalog: Name | None = None
    rate_field: Name | None = None
    values: dict[Name, Decimal] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> VatRateSource:
        by_catalog = self.catalog is not None and self.rate_field is not None
        if by_catalog == (self.values is not None) or (self.catalog is None) != (self.rate_field is None):
            raise ValueError("give either catalog + rate_field (a reference) or values (an enum map)")
        return self


class OrderLines(_Model):
    section: Name
    fields: LineFields
    vat_rate: VatRateSource | None = None


class Orders(_Model):
    entity_set: Name
    title: Name  # the object's name in the administrator's 1C, for messages
    fields: OrderFields
    status: StatusValues
    lines_net_of_points: bool
    lines: OrderLines
    read: OrderRead
    write: OrderWrite


class ReturnLines(_Model):
    section: Name
    fields: ReturnLineFields


class Returns(_Model):
    entity_set: Name
    title: Name
    fields: ReturnFields
    lines: ReturnLines


class Sales(_Model):
    entity_set: Name
    title: Name
    fields: SaleFields


class Partners(_Model):
    entity_set: Name
    title: Name
    fields: PartnerFields
    contacts: Contacts | None = None
    write: PartnerWrite


class MarginGroup(_Model):
    """``folder`` | ``category`` | ``{attribute: "Description"}`` in the file."""

    source: Literal["folder", "category", "attribute"]
    attribute: Name | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        if data in ("folder", "category"):
            return {"source": data}
        if isinstance(data, dict) and set(data) == {"attribute"}:
            return {"source": "attribute", "attribute": data["attribute"]}
        raise ValueError('write folder, category or {attribute: "Description of a string attribute"}')

    @property
    def target(self) -> Target | None:
        return Target(attribute=self.attribute, type="string") if self.attribute else None


class Products(_Model):
    entity_set: Name
    title: Name
    fields: ProductFields
    delivery_types: tuple[Name, ...] = ()
    margin_group: MarginGroup
    group_codes: dict[Name, Name] = {}
    categories: CatalogRef | None = None

    @model_validator(mode="after")
    def _sources(self) -> Products:
        if self.delivery_types and not self.fields.type:
            raise ValueError("delivery_types needs fields.type (the product type field)")
        if self.margin_group.source == "category" and not (self.fields.category and self.categories):
            raise ValueError("margin_group: category needs fields.category and categories")
        return self


class Cards(_Model):
    entity_set: Name
    title: Name
    fields: CardFields
    status_values: CardStatusValues
    kinds: CatalogRef
    read: CardRead


class Mapping(_Model):
    """One 1C configuration's names for everything the bridge reads and writes."""

    version: int
    extends: str | None = None
    attributes: AttributeChart
    orders: Orders
    returns: Returns
    sales: Sales
    partners: Partners
    products: Products
    cards: Cards

    def entity_sets(self) -> dict[str, str]:
        """Object name -> entity set, for every set the bridge may read."""
        sets = {
            name: getattr(self, name).entity_set
            for name in ("orders", "returns", "sales", "partners", "products", "cards")
        }
        sets["card_kinds"] = self.cards.kinds.entity_set
        sets["attributes"] = self.attributes.entity_set
        vat = self.orders.lines.vat_rate
        if vat is not None and vat.catalog:
            sets["vat_rates"] = vat.catalog
        if self.products.margin_group.source == "category" and self.products.categories:
            sets["categories"] = self.products.categories.entity_set
        return sets

    def attribute_targets(self) -> list[tuple[str, str, Target]]:
        """(object, target name, target) for every mapped target, field or attribute."""
        found: list[tuple[str, str, Target]] = []
        for obj, groups in (("orders", ("read", "write")), ("partners", ("write",)), ("cards", ("read",))):
            for group in groups:
                section = getattr(getattr(self, obj), group)
                for name in type(section).model_fields:
                    target = getattr(section, name)
                    if target is not None:
                        found.append((obj, name, target))
        margin = self.products.margin_group.target
        return [*found, ("products", "margin_group", margin)] if margin else found

    def attribute_descriptions(self) -> dict[str, tuple[str, ...]]:
        """Object -> the additional-attribute descriptions the bridge needs on it."""
        result: dict[str, list[str]] = {}
        for obj, _, target in self.attribute_targets():
            if target.attribute and target.attribute not in result.setdefault(obj, []):
                result[obj].append(target.attribute)
        return {obj: tuple(names) for obj, names in result.items() if names}

    def select_fields(self, obj: str) -> tuple[str, ...]:
        """The top-level properties to ``$select`` for one object (tabular sections whole)."""
        return tuple(dict.fromkeys(name.split(".")[0] for name in self._needs(obj)))

    def required_metadata(self) -> list[tuple[str, str]]:
        """(entity_set, field or section.field) pairs that must exist in 1C's ``$metadata``."""
        sets = self.entity_sets()
        pairs = [(sets[obj], name) for obj in sets for name in self._needs(obj)]
        return list(dict.fromkeys(pairs))

    def _needs(self, obj: str) -> list[str]:
        attrs, o, r, c = self.attributes, self.orders, self.returns, self.partners.contacts
        vat, cat = o.lines.vat_rate, self.products.categories
        line_fields = [*_names(o.lines.fields), vat.field if vat else None]
        contact_fields = [c.type_field, c.presentation_field, c.phone_field, c.email_field] if c else []
        table: dict[str, Sequence[str | None]] = {
            "orders": [*_names(o.fields), o.status.field, *_within(o.lines.section, line_fields)],
            "returns": [
                *_names(r.fields),
                f"{r.fields.sale}_Type",
                *_within(r.lines.section, _names(r.lines.fields)),
            ],
            "sales": [*_names(self.sales.fields), f"{self.sales.fields.order}_Type"],
            "partners": [*_names(self.partners.fields), *_within(c.section if c else "", contact_fields)],
            "products": _names(self.products.fields),
            "cards": _names(self.cards.fields),
            "card_kinds": [REF_KEY, self.cards.kinds.name_field],
            "attributes": [REF_KEY, attrs.description_field, attrs.title_field, attrs.deletion_mark_field],
            "vat_rates": [REF_KEY, vat.rate_field if vat else None],
            "categories": [REF_KEY, cat.name_field if cat else None],
        }
        names = list(table[obj])
        targets = [t for o_, _, t in self.attribute_targets() if o_ == obj]
        names += [t.field for t in targets if t.field]
        if any(t.attribute for t in targets):
            names += _within(
                attrs.section, [attrs.property_field, attrs.value_field, attrs.type_field, attrs.text_field]
            )
        return [n for n in dict.fromkeys(names) if n]


def _within(section: str, names: Sequence[str | None]) -> list[str | None]:
    return [f"{section}.{n}" for n in names if n]


def _names(model: BaseModel) -> list[str]:
    return [v for v in (getattr(model, k) for k in type(model).model_fields) if isinstance(v, str)]


# --- loading -----------------------------------------------------------------------------------


def load_mapping(path: str | Path) -> Mapping:
    """Read a mapping file (following ``extends``) and validate it; every problem in one ConfigError."""
    data, origins = _read_chain(Path(path), [])
    version, problems = data.get("version"), []
    if isinstance(version, int) and version != 1:
        problems.append(f"{path}: version: version {version} is not supported: this bridge reads version 1")
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as exc:
        problems += [_problem(err, origins, Path(path)) for err in exc.errors()]
    if problems:
        raise ConfigError(problems, mapping=str(path))
    return mapping


def _read_chain(path: Path, seen: list[Path]) -> tuple[dict[str, Any], dict[tuple[str, ...], Path]]:
    resolved = path.resolve()
    if resolved in seen:
        chain = " → ".join(p.name for p in [*seen, resolved])
        raise ConfigError(f"{path}: extends: the files extend each other in a circle ({chain}): break it")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the mapping file ({exc.strerror}): check onec.mapping"
        ) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}:{line}: not valid YAML ({getattr(exc, 'problem', exc)}): fix it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the mapping must be a YAML mapping of keys (version, orders, ...)")
    origins: dict[tuple[str, ...], Path] = {}
    _record(data, (), path, origins)
    base_name = data.get("extends")
    if base_name is None:
        return data, origins
    if not isinstance(base_name, str) or not base_name.strip():
        raise ConfigError(f"{path}: extends: must name a mapping file relative to this one, e.g. ut11.yaml")
    base, base_origins = _read_chain(path.parent / base_name, [*seen, resolved])
    base_origins.update(origins)
    return _merge(base, data), base_origins


def _record(data: Any, at: tuple[str, ...], path: Path, origins: dict[tuple[str, ...], Path]) -> None:
    origins[at] = path
    if isinstance(data, dict):
        for key, value in data.items():
            _record(value, (*at, str(key)), path, origins)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _problem(err: Any, origins: dict[tuple[str, ...], Path], top: Path) -> str:
    loc = tuple(str(p) for p in err["loc"])
    where = ".".join(loc) or "(top level)"
    file = next((origins[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in origins), top)
    kind, message = err["type"], err["msg"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        return f"{file}: {where}: unknown key: remove it or fix its spelling{hint}"
    if kind == "missing":
        return f"{file}: {where}: required key is missing: add it (a target may be null to switch it off)"
    if kind == "value_error":
        return f"{file}: {where}: {message.removeprefix('Value error, ')}"
    return f"{file}: {where}: bad value {err.get('input')!r}: {message}"


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    model: Any = Mapping
    for part in loc:
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        model = next((a for a in get_args(info.annotation) if a is not type(None)), info.annotation)
    return list(getattr(model, "model_fields", {}))


# --- additional attributes -----------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeKeys:
    """Property keys (``Свойство_Key`` GUIDs) of the mapping's additional attributes, per object."""

    keys: AbcMapping[tuple[str, str], str] = field(default_factory=dict)

    def key(self, obj: str, description: str) -> str:
        if (obj, description) not in self.keys:
            raise ContractError([f"additional attribute «{description}» of {obj} was not resolved"])
        return self.keys[(obj, description)]


def resolve_attributes(mapping: Mapping, chart_rows: Iterable[AbcMapping[str, Any]]) -> AttributeKeys:
    """Find each mapped attribute's property key in the chart's rows, by description.

    A row matches on its description, on its title (BSP shows ``Title (set)`` as description), or
    on a description ``"<description> (…)"``; rows marked for deletion never match. Raises
    ContractError listing every attribute that is missing or ambiguous and what the admin must do.
    """
    chart = mapping.attributes
    rows = [r for r in chart_rows if not (chart.deletion_mark_field and r.get(chart.deletion_mark_field))]
    keys: dict[tuple[str, str], str] = {}
    missing: list[str] = []
    for obj, _, target in mapping.attribute_targets():
        if not target.attribute or (obj, target.attribute) in keys:
            continue
        candidates = _candidates(rows, target.attribute, chart)
        where = f"for {getattr(mapping, obj).title} in 1C: {ATTRIBUTES_WHERE}"
        if len(candidates) == 1:
            keys[(obj, target.attribute)] = candidates[0]
        elif not candidates:
            missing.append(f"create the additional attribute «{target.attribute}» ({target.type}) {where}")
        else:
            missing.append(
                f"{len(candidates)} additional attributes are named «{target.attribute}»: "
                f"keep one {where}, or rename the others"
            )
    if missing:
        raise ContractError(missing)
    return AttributeKeys(keys)


def _candidates(rows: list[AbcMapping[str, Any]], description: str, chart: Any) -> list[str]:
    exact = [r for r in rows if r.get(chart.description_field) == description]
    loose = [
        r
        for r in rows
        if (chart.title_field and r.get(chart.title_field) == description)
        or str(r.get(chart.description_field) or "").startswith(description + " (")
    ]
    return list(dict.fromkeys(str(r.get(REF_KEY) or "") for r in exact or loose))
