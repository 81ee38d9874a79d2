"""The simulated 1C configuration's metadata, as data: entity sets, typed fields, tabular sections.

Owns ``Field``, ``Table``, ``EntitySet``, ``Schema`` and ``build_schema`` (UT 11.5 by default,
``variant="11.4"`` for order rows carrying the ``СтавкаНДС`` enum instead of ``СтавкаНДС_Key``).
``$metadata`` (``metadata.py``) and value coercion (``wire.py``) are generated from it. A schema can
drop fields on demand (``Schema.without``) so tests can exercise the bridge's ``check``.
Must not import anything of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property

NAMESPACE = "StandardODATA"

GUID = "Edm.Guid"
STRING = "Edm.String"
DOUBLE = "Edm.Double"
BOOLEAN = "Edm.Boolean"
DATETIME = "Edm.DateTime"
INT64 = "Edm.Int64"

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
UNDEFINED_TYPE = f"{NAMESPACE}.Undefined"

ORDER_STATUSES = ("НеСогласован", "КОбеспечению", "КОтгрузке", "Закрыт")
CARD_STATUSES = ("Действует", "Аннулирована")
CONTACT_KINDS = ("Телефон", "АдресЭлектроннойПочты", "Адрес")
PRODUCT_TYPES = ("Товар", "Услуга", "Работа")
VAT_ENUM = ("НДС20", "НДС10", "НДС0", "БезНДС")  # UT 11.4 ``Перечисление.СтавкиНДС``


@dataclass(frozen=True, slots=True)
class Field:
    """One property. ``kind`` is ``plain``, ``ref`` (``X_Key`` → ``target``), ``enum`` or ``composite``.

    A composite field ``X`` travels as two properties, ``X`` (value) and ``X_Type`` (type name).
    """

    name: str
    type: str = STRING
    kind: str = "plain"
    target: str | None = None  # entity set a ``ref`` points to
    values: tuple[str, ...] = ()  # allowed names of an ``enum``

    @property
    def nav_name(self) -> str:
        """The navigation property's name (``Партнер`` for ``Партнер_Key``)."""
        return self.name.removesuffix("_Key")


@dataclass(frozen=True)
class Table:
    """A tabular section: rows of ``fields`` (``LineNumber`` first)."""

    name: str
    fields: tuple[Field, ...]

    @cached_property
    def _index(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    def field(self, name: str) -> Field | None:
        return self._index.get(name)


@dataclass(frozen=True)
class EntitySet:
    """A catalog, document, chart or exchange plan as 1C's standard OData interface exposes it."""

    name: str
    fields: tuple[Field, ...]
    tables: tuple[Table, ...] = ()

    @property
    def is_document(self) -> bool:
        return self.name.startswith("Document_")

    @cached_property
    def _index(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    @cached_property
    def _names(self) -> tuple[str, ...]:
        names: list[str] = []
        for f in self.fields:
            names.append(f.name)
            if f.kind == "composite":
                names.append(f.name + "_Type")
        return (*names, *(t.name for t in self.tables))

    def field(self, name: str) -> Field | None:
        return self._index.get(name)

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    def property_names(self) -> list[str]:
        """Every property name on the wire, in 1C's order (composite ``X`` then ``X_Type``)."""
        return list(self._names)


@dataclass(frozen=True)
class Schema:
    """The configuration: entity sets by name, the variant, and what was dropped on purpose."""

    variant: str
    entity_sets: dict[str, EntitySet]
    dropped: frozenset[str] = field(default_factory=frozenset)  # "Set.Field" / "Set.Table.Field"
    dropped_attributes: frozenset[str] = field(default_factory=frozenset)  # by Description

    def __getitem__(self, name: str) -> EntitySet:
        return self.entity_sets[name]

    def __contains__(self, name: object) -> bool:
        return name in self.entity_sets

    def without(self, *paths: str, attributes: Iterable[str] = ()) -> Schema:
        """A copy lacking the given fields (``"Document_ЗаказКлиента.КартаЛояльности_Key"``,
        ``"Document_ЗаказКлиента.Товары.СуммаНДС"``, a whole table or entity set) and additional
        attributes (by ``Description``; the loaders skip them)."""
        sets = dict(self.entity_sets)
        for path in paths:
            parts = path.split(".")
            if len(parts) == 1:
                sets.pop(parts[0])
                continue
            es = sets[parts[0]]
            if len(parts) == 2:
                if es.table(parts[1]):
                    es = replace(es, tables=tuple(t for t in es.tables if t.name != parts[1]))
                elif es.field(parts[1]):
                    es = replace(es, fields=tuple(f for f in es.fields if f.name != parts[1]))
                else:
                    raise KeyError(path)
            else:
                table = es.table(parts[1])
                if table is None or table.field(parts[2]) is None:
                    raise KeyError(path)
                table = replace(table, fields=tuple(f for f in table.fields if f.name != parts[2]))
                es = replace(es, tables=tuple(table if t.name == parts[1] else t for t in es.tables))
            sets[parts[0]] = es
        return Schema(
            variant=self.variant,
            entity_sets=sets,
            dropped=self.dropped | frozenset(paths),
            dropped_attributes=self.dropped_attributes | frozenset(attributes),
        )


def _ref(name: str, target: str) -> Field:
    return Field(name, GUID, "ref", target)


def _enum(name: str, values: tuple[str, ...]) -> Field:
    return Field(name, STRING, "enum", values=values)


def _composite(name: str) -> Field:
    return Field(name, STRING, "composite")


LINE = Field("LineNumber", INT64)
REF_KEY = Field("Ref_Key", GUID)
DATA_VERSION = Field("DataVersion", STRING)
DELETION_MARK = Field("DeletionMark", BOOLEAN)

PROPERTIES = "ChartOfCharacteristicTypes_ДополнительныеРеквизитыИСведения"


def _extra_attributes() -> Table:
    return Table(
        "ДополнительныеРеквизиты",
        (LINE, _ref("Свойство_Key", PROPERTIES), _composite("Значение"), Field("ТекстоваяСтрока")),
    )


def _document(name: str, fields: list[Field], tables: list[Table]) -> EntitySet:
    head = [REF_KEY, DATA_VERSION, DELETION_MARK, Field("Number"), Field("Date", DATETIME)]
    head.append(Field("Posted", BOOLEAN))
    return EntitySet(name, tuple(head + fields), tuple(tables))


def _catalog(
    name: str, fields: list[Field], tables: list[Table] | None = None, *, code: bool = True
) -> EntitySet:
    head = [REF_KEY, DATA_VERSION, DELETION_MARK]
    if code:
        head.append(Field("Code"))
    head.append(Field("Description"))
    return EntitySet(name, tuple(head + fields), tuple(tables or ()))


def build_schema(variant: str = "11.5") -> Schema:
    """The UT 11 subset the bridge's default mapping reads and writes."""
    if variant not in ("11.5", "11.4"):
        raise ValueError(f"unknown UT variant {variant!r} (11.5 or 11.4)")
    vat = _enum("СтавкаНДС", VAT_ENUM) if variant == "11.4" else _ref("СтавкаНДС_Key", "Catalog_СтавкиНДС")
    order_rows = Table(
        "Товары",
        (
            LINE,
            _ref("Номенклатура_Key", "Catalog_Номенклатура"),
            Field("Количество", DOUBLE),
            Field("Цена", DOUBLE),
            Field("Сумма", DOUBLE),
            Field("ПроцентРучнойСкидки", DOUBLE),
            Field("СуммаРучнойСкидки", DOUBLE),
            Field("ПроцентАвтоматическойСкидки", DOUBLE),
            Field("СуммаАвтоматическойСкидки", DOUBLE),
            vat,
            Field("СуммаНДС", DOUBLE),
            Field("СуммаСНДС", DOUBLE),
            Field("Отменено", BOOLEAN),
        ),
    )
    sets = [
        _document(
            "Document_ЗаказКлиента",
            [
                _enum("Статус", ORDER_STATUSES),
                _ref("Партнер_Key", "Catalog_Партнеры"),
                _ref("КартаЛояльности_Key", "Catalog_КартыЛояльности"),
                Field("СуммаДокумента", DOUBLE),
                Field("ЦенаВключаетНДС", BOOLEAN),
                Field("Комментарий"),
            ],
            [order_rows, _extra_attributes()],
        ),
        _document(
            "Document_ВозвратТоваровОтКлиента",
            [_ref("Партнер_Key", "Catalog_Партнеры"), _composite("ДокументРеализации"), Field("Комментарий")],
            [
                Table(
                    "Товары",
                    (
                        LINE,
                        _ref("Номенклатура_Key", "Catalog_Номенклатура"),
                        Field("Количество", DOUBLE),
                        Field("Сумма", DOUBLE),
                    ),
                )
            ],
        ),
        _document(
            "Document_РеализацияТоваровУслуг",
            [
                _composite("ЗаказКлиента"),
                _ref("Партнер_Key", "Catalog_Партнеры"),
                Field("СуммаДокумента", DOUBLE),
            ],
            [],
        ),
        _catalog(
            "Catalog_Партнеры",
            [Field("Клиент", BOOLEAN), Field("Parent_Key", GUID, "ref", "Catalog_Партнеры")],
            [
                Table(
                    "КонтактнаяИнформация",
                    (
                        LINE,
                        _enum("Тип", CONTACT_KINDS),
                        Field("Представление"),
                        Field("НомерТелефона"),
                        Field("АдресЭП"),
                    ),
                ),
                _extra_attributes(),
            ],
        ),
        _catalog(
            "Catalog_Номенклатура",
            [
                _ref("Parent_Key", "Catalog_Номенклатура"),
                Field("IsFolder", BOOLEAN),
                Field("Артикул"),
                _ref("ТоварнаяКатегория_Key", "Catalog_ТоварныеКатегории"),
                _ref("ВидНоменклатуры_Key", "Catalog_ВидыНоменклатуры"),
                _enum("ТипНоменклатуры", PRODUCT_TYPES),
            ],
            [_extra_attributes()],
        ),
        _catalog(
            "Catalog_КартыЛояльности",
            [
                _ref("Owner_Key", "Catalog_ВидыКартЛояльности"),
                Field("Штрихкод"),
                Field("МагнитныйКод"),
                _enum("Статус", CARD_STATUSES),
                _ref("Партнер_Key", "Catalog_Партнеры"),
            ],
            [_extra_attributes()],
        ),
        _catalog("Catalog_ВидыКартЛояльности", []),
        _catalog("Catalog_ТоварныеКатегории", []),
        _catalog("Catalog_ВидыНоменклатуры", []),
        _catalog(
            PROPERTIES,
            [Field("ТипЗначения"), Field("Заголовок"), Field("Имя")],
            code=False,
        ),
        EntitySet(
            "ExchangePlan_ОбменСайтом",
            (
                REF_KEY,
                DATA_VERSION,
                DELETION_MARK,
                Field("Code"),
                Field("Description"),
                Field("SentNo", INT64),
                Field("ReceivedNo", INT64),
            ),
        ),
    ]
    if variant == "11.5":
        sets.append(_catalog("Catalog_СтавкиНДС", [Field("Ставка", DOUBLE)]))
    return Schema(variant=variant, entity_sets={s.name: s for s in sets})
