"""Values between 1C's JSON wire form and the simulator's typed rows.

Owns coercion by schema type (GUIDs lower-case strings, ``Edm.Double`` as ``Decimal``, dates as
naive ``datetime``, ``Edm.Int64`` as ``int``), empty values (empty ref, ``0001-01-01T00:00:00``),
rendering rows back in 1C's style (Int64 as strings, numbers as JSON numbers, enums as names) and a
JSON writer that prints ``Decimal`` as a number. Money is never a float here.
Must not import anything of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bridge.simulator.schema import (
    BOOLEAN,
    DATETIME,
    DOUBLE,
    EMPTY_GUID,
    GUID,
    INT64,
    NAMESPACE,
    STRING,
    UNDEFINED_TYPE,
    EntitySet,
    Field,
    Table,
)

EMPTY_DATE = datetime(1, 1, 1)
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


class WireError(ValueError):
    """A value or property that 1C would refuse (the server answers 400 with ``odata.error``)."""


def parse_json(body: bytes | str) -> Any:
    """Parse JSON keeping every fractional number exact (``Decimal``)."""
    return json.loads(body, parse_float=Decimal)


def format_date(value: datetime) -> str:
    if value.year < 1000:
        return "0001-01-01T00:00:00"
    if value.microsecond == 0 and value.tzinfo is None:
        return value.isoformat()  # the same text as the format below, five times faster
    return value.strftime(DATE_FORMAT)


def parse_date(text: str) -> datetime:
    text = text.strip().removesuffix("Z")
    if "." in text:
        text = text.split(".", 1)[0]
    for fmt in (DATE_FORMAT, "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise WireError(f"Неверный формат даты: {text!r}")


def coerce(type_: str, value: Any) -> Any:
    """A wire value of ``type_`` as the simulator keeps it."""
    try:
        if type_ == GUID:
            return str(uuid.UUID(str(value))) if value not in (None, "") else EMPTY_GUID
        if type_ == DOUBLE:
            if isinstance(value, bool):
                raise WireError("логическое значение вместо числа")
            return Decimal(str(value)) if value not in (None, "") else Decimal(0)
        if type_ == BOOLEAN:
            if isinstance(value, str):
                return value.lower() == "true"
            return bool(value)
        if type_ == DATETIME:
            if isinstance(value, datetime):
                return value.replace(tzinfo=None)
            return parse_date(value) if value else EMPTY_DATE
        if type_ == INT64:
            return int(value or 0)
        if type_.startswith(NAMESPACE + "."):
            return str(uuid.UUID(str(value))) if value not in (None, "") else EMPTY_GUID
        return "" if value is None else str(value)
    except (ValueError, InvalidOperation, TypeError) as exc:
        raise WireError(f"Значение {value!r} не соответствует типу {type_}") from exc


def empty(f: Field) -> Any:
    """The empty value of a field (what a fresh 1C object holds)."""
    if f.kind == "composite":
        return ""
    return {GUID: EMPTY_GUID, DOUBLE: Decimal(0), BOOLEAN: False, DATETIME: EMPTY_DATE, INT64: 0}.get(
        f.type, ""
    )


def coerce_composite(value: Any, type_name: str | None) -> tuple[Any, str]:
    """A composite value and its ``_Type`` (``Edm.Double``, ``StandardODATA.Catalog_X``…)."""
    if not type_name or type_name == UNDEFINED_TYPE:
        if value in (None, ""):
            return "", UNDEFINED_TYPE
        type_name = _guess_type(value)
    return coerce(type_name, value), type_name


def _guess_type(value: Any) -> str:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int | Decimal):
        return DOUBLE
    return STRING


def _coerce_fields(
    fields: Iterable[Field], src: Mapping[str, Any], dst: dict[str, Any], *, fill: bool, owner: str
) -> None:
    for f in fields:
        if f.kind == "composite":
            if f.name in src or f.name + "_Type" in src:
                old_type = dst.get(f.name + "_Type")
                dst[f.name], dst[f.name + "_Type"] = coerce_composite(
                    src.get(f.name, dst.get(f.name)), src.get(f.name + "_Type", old_type)
                )
            elif fill:
                dst[f.name], dst[f.name + "_Type"] = "", UNDEFINED_TYPE
            continue
        if f.name in src:
            value = coerce(f.type, src[f.name])
            if f.kind == "enum" and value not in ("", *f.values):
                raise WireError(f"{owner}.{f.name}: неизвестное значение перечисления {value!r}")
            dst[f.name] = value
        elif fill:
            dst[f.name] = empty(f)


def coerce_table(table: Table, rows: Any, owner: str, lenient: frozenset[str]) -> list[dict[str, Any]]:
    """A whole tabular section; ``LineNumber`` renumbered 1..n in the given order, as 1C does."""
    if not isinstance(rows, list):
        raise WireError(f"{owner}.{table.name}: ожидается массив строк")
    out = []
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise WireError(f"{owner}.{table.name}: строка должна быть объектом")
        check_names(row, _names(table.fields), f"{owner}.{table.name}", lenient)
        coerced: dict[str, Any] = {}
        _coerce_fields(table.fields, row, coerced, fill=True, owner=f"{owner}.{table.name}")
        coerced["LineNumber"] = n
        out.append(coerced)
    return out


def _names(fields: Iterable[Field]) -> set[str]:
    names = set()
    for f in fields:
        names.add(f.name)
        if f.kind == "composite":
            names.add(f.name + "_Type")
    return names


def check_names(row: Mapping[str, Any], known: set[str], owner: str, lenient: frozenset[str]) -> None:
    for name in row:
        if name in known or name.startswith("odata.") or "@" in name:
            continue
        if f"{owner}.{name}" in lenient:
            continue
        raise WireError(f"Неизвестное свойство {name!r} объекта {owner}")


def coerce_row(
    es: EntitySet,
    src: Mapping[str, Any],
    base: Mapping[str, Any] | None = None,
    lenient: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """``src`` applied over ``base`` (or over empty values when creating); tables replace whole."""
    check_names(src, set(es.property_names()), es.name, lenient)
    dst: dict[str, Any] = dict(base) if base is not None else {}
    _coerce_fields(es.fields, src, dst, fill=base is None, owner=es.name)
    for table in es.tables:
        if table.name in src:
            dst[table.name] = coerce_table(table, src[table.name], es.name, lenient)
        elif base is None:
            dst[table.name] = []
    return dst


def _render(type_: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return format_date(value)
    if type_ == INT64:
        return str(value)
    return value


def _render_fields(fields: Iterable[Field], row: Mapping[str, Any], out: dict[str, Any]) -> None:
    for f in fields:
        if f.name not in row:
            continue
        if f.kind == "composite":
            type_name = row.get(f.name + "_Type", UNDEFINED_TYPE)
            out[f.name] = _render(type_name, row[f.name])
            out[f.name + "_Type"] = type_name
        else:
            out[f.name] = _render(f.type, row[f.name])


def render_row(
    es: EntitySet, row: Mapping[str, Any], select: set[str] | None = None, *, nav_links: bool = True
) -> dict[str, Any]:
    """A stored row as 1C's JSON object (``Decimal`` kept for ``dumps``)."""
    out: dict[str, Any] = {}
    wanted = es.fields if select is None else [f for f in es.fields if f.name in select]
    _render_fields(wanted, row, out)
    for table in es.tables:
        if select is not None and table.name not in select:
            continue
        rows = []
        for r in row.get(table.name, []):
            rendered: dict[str, Any] = {"Ref_Key": row["Ref_Key"]}
            _render_fields(table.fields, r, rendered)
            rows.append(rendered)
        out[table.name] = rows
    if nav_links and select is None:
        for f in es.fields:
            if f.kind == "ref" and f.name != "Ref_Key" and f.name in row:
                out[f"{f.nav_name}@navigationLinkUrl"] = f"{es.name}(guid'{row['Ref_Key']}')/{f.nav_name}"
    return out


def _number(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"not a JSON number: {value}")
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


# ``json.dumps(x, ensure_ascii=False)`` builds a new encoder on every call; this one is built once
# and writes the very same text (a page of 5 000 rows has tens of thousands of strings).
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


def dumps(obj: Any) -> str:
    """JSON text in 1C's shape: ``Decimal`` as a plain number, Cyrillic unescaped."""
    if obj.__class__ is str:
        return _ENCODE(obj)
    if isinstance(obj, Decimal):
        return _number(obj)
    if isinstance(obj, datetime):
        return json.dumps(format_date(obj))
    if isinstance(obj, Mapping):
        return "{" + ",".join(_ENCODE(str(k)) + ":" + dumps(v) for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    return _ENCODE(obj)
