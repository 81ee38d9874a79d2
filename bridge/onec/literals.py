"""OData v3 URL building for 1C: resource paths, literals, ``$filter`` expressions, query strings.

Owns the exact bytes the bridge puts in a 1C URL:
- resource paths ``Document_ЗаказКлиента(guid'…')`` percent-encoded as UTF-8 (6 bytes per
  Cyrillic letter), keeping ``()'=,$:`` literal as 1C expects;
- literals: ``guid'…'``, ``datetime'2026-03-01T00:00:00'`` (1C's naive local wall clock: an aware
  time is converted into the infobase's zone, then the zone is dropped), ``'O''Brien'`` (quote
  doubled), numbers (``Decimal``/``int``, never ``float``), ``true``/``false``, ``null`` and
  ``cast(guid'…','Document_X')`` for composite fields (a bare GUID never matches those);
- ``$filter`` builders (:func:`eq` … :func:`and_`, :func:`or_`): 1C has no ``in`` operator, so a
  set of keys becomes an ``or`` chain, sized by :func:`key_chunks` to fit the URL budget (IIS answers
  an HTML 404 past 2048 bytes of query string);
- :func:`query_string`, which never combines ``$inlinecount`` with ``$top``/``$skip`` (1C then
  ignores paging and builds the whole set).

Pure functions over strings; must not import requests, bridge.store, bridge.site or bridge.service.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from functools import lru_cache
from urllib.parse import quote, unquote

__all__ = [
    "DEFAULT_URL_BUDGET",
    "SAFE",
    "Cast",
    "Filter",
    "Guid",
    "KeyChunk",
    "and_",
    "cast_literal",
    "datetime_literal",
    "encode",
    "entity_path",
    "eq",
    "ge",
    "gt",
    "guid_literal",
    "key_chunks",
    "key_path",
    "le",
    "literal",
    "lt",
    "ne",
    "normalize_guid",
    "not_",
    "number_literal",
    "or_",
    "query_string",
    "string_literal",
    "to_onec_local",
]

#: Characters left as they are when percent-encoding paths and query values (besides ``A-Za-z0-9_.-~``).
SAFE = "()'=,$:"

#: Default byte budget of an encoded query string (IIS refuses past 2048).
DEFAULT_URL_BUDGET = 2000

_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def encode(text: str) -> str:
    """Percent-encode ``text`` as UTF-8, keeping :data:`SAFE` characters (space → ``%20``)."""
    return quote(text, safe=SAFE, encoding="utf-8", errors="strict")


def normalize_guid(value: str | uuid.UUID) -> str:
    """Return the canonical lower-case ``8-4-4-4-12`` form; raise ``ValueError`` for anything else."""
    if isinstance(value, uuid.UUID):
        return str(value)
    text = value.strip()
    if len(text) != 36:
        raise ValueError(f"not a GUID: {value!r}")
    return str(uuid.UUID(text))


@dataclass(frozen=True)
class Guid:
    """A reference key to render as ``guid'…'`` (a plain ``str`` renders as a string literal)."""

    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", normalize_guid(self.value))


@dataclass(frozen=True)
class Cast:
    """A composite-field value: ``cast(guid'…','Document_X')``."""

    key: str
    entity_set: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", normalize_guid(self.key))


def guid_literal(key: str | uuid.UUID) -> str:
    """``guid'…'`` for a reference key."""
    return f"guid'{normalize_guid(key)}'"


def cast_literal(key: str | uuid.UUID, entity_set: str) -> str:
    """``cast(guid'…','Document_X')``: compare a composite field with a typed reference."""
    return f"cast({guid_literal(key)},{string_literal(entity_set)})"


def string_literal(text: str) -> str:
    """``'text'`` with every single quote doubled (``O'Brien`` → ``'O''Brien'``)."""
    return "'" + text.replace("'", "''") + "'"


def number_literal(value: int | Decimal) -> str:
    """A number without exponent. ``float`` is refused: money and quantities are ``Decimal``."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"expected int or Decimal, got {type(value).__name__}")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite number: {value}")
        text = format(value, "f")
        return "0" if text in ("-0", "0") else text
    return str(value)


def to_onec_local(moment: datetime, tz: tzinfo) -> datetime:
    """Convert an aware time to 1C's naive wall clock in ``tz`` (the infobase server's zone).

    Microseconds are dropped: 1C stores whole seconds.

    Raises:
        ValueError: ``moment`` is naive (the bridge keeps every time aware).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: pass an aware time")
    return moment.astimezone(tz).replace(tzinfo=None, microsecond=0)


def datetime_literal(moment: datetime, tz: tzinfo) -> str:
    """``datetime'2026-03-01T00:00:00'`` in 1C's local wall clock (see :func:`to_onec_local`)."""
    return f"datetime'{to_onec_local(moment, tz).strftime(_DATETIME_FORMAT)}'"


LiteralValue = str | int | Decimal | bool | datetime | Guid | Cast | uuid.UUID | None


def literal(value: LiteralValue, tz: tzinfo | None = None) -> str:
    """Render any supported value as an OData literal.

    ``str`` → string, ``Guid``/``uuid.UUID`` → ``guid'…'``, ``Cast`` → ``cast(…)``, ``datetime`` →
    ``datetime'…'`` (needs ``tz``), ``bool`` → ``true``/``false``, ``None`` → ``null``, numbers as is.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Guid):
        return guid_literal(value.value)
    if isinstance(value, uuid.UUID):
        return guid_literal(value)
    if isinstance(value, Cast):
        return cast_literal(value.key, value.entity_set)
    if isinstance(value, datetime):
        if tz is None:
            raise ValueError("a datetime literal needs the infobase time zone")
        return datetime_literal(value, tz)
    if isinstance(value, str):
        return string_literal(value)
    return number_literal(value)


@dataclass(frozen=True)
class Filter:
    """A ``$filter`` expression (unencoded text). Combine with :func:`and_`, :func:`or_`, :func:`not_`."""

    text: str
    compound: bool = False  # True for and/or chains: parenthesised when nested

    def __str__(self) -> str:
        return self.text

    def __and__(self, other: Filter | str) -> Filter:
        return and_(self, other)

    def __or__(self, other: Filter | str) -> Filter:
        return or_(self, other)


def _compare(op: str, field: str, value: LiteralValue, tz: tzinfo | None) -> Filter:
    return Filter(f"{field} {op} {literal(value, tz)}")


def eq(field: str, value: LiteralValue, tz: tzinfo | None = None) -> Filter:
    """``field eq value``."""
    return _compare("eq", field, value, tz)


def ne(field: str, value: LiteralValue, tz: tzinfo | None = None) -> Filter:
    """``field ne value``."""
    return _compare("ne", field, value, tz)


def gt(field: str, value: LiteralValue, tz: tzinfo | None = None) -> Filter:
    """``field gt value``. Never on ``Ref_Key`` (1C answers 500)."""
    return _compare("gt", field, value, tz)


def ge(field: str, value: LiteralValue, tz: tzinfo | None = None) -> Filter:
    """``field ge value``."""
    return _compare("ge", field, value, tz)


def lt(field: str, value: LiteralValue, tz: tzinfo | None = None) -> Filter:
    """``field lt value``."""
    return _compare("lt", field, value, tz)


def le(field: str, value: LiteralValue, tz: tzinfo | None = None) -> Filter:
    """``field le value``."""
    return _compare("le", field, value, tz)


def _as_filter(item: Filter | str) -> Filter:
    return item if isinstance(item, Filter) else Filter(item, compound=True)


def _chain(op: str, parts: Iterable[Filter | str | None]) -> Filter:
    items = [_as_filter(p) for p in parts if p is not None and str(p) != ""]
    if not items:
        raise ValueError(f"{op}: nothing to combine")
    if len(items) == 1:
        return items[0]
    return Filter(f" {op} ".join(f"({i.text})" if i.compound else i.text for i in items), compound=True)


def and_(*parts: Filter | str | None) -> Filter:
    """``a and b and …``; ``None``/empty parts are skipped, nested chains parenthesised."""
    return _chain("and", parts)


def or_(*parts: Filter | str | None) -> Filter:
    """``a or b or …`` (the only way to ask for a set: 1C has no ``in``)."""
    return _chain("or", parts)


def not_(part: Filter | str) -> Filter:
    """``not (a)``."""
    return Filter(f"not ({_as_filter(part).text})")


@lru_cache(maxsize=256)
def entity_path(entity_set: str) -> str:
    """Encoded path of an entity set: ``Catalog_%D0%9F…`` (encoded once per name)."""
    return encode(entity_set)


def key_path(entity_set: str, key: str | uuid.UUID) -> str:
    """Encoded path of one entity: ``Document_…(guid'…')``."""
    # ``guid'…'`` and the parentheses are all SAFE characters: only the set's name needs encoding,
    # once per name (it is most of an entity request's own work before the HTTP stack).
    return f"{entity_path(entity_set)}({guid_literal(key)})"


def readable_path(path: str) -> str:
    """An encoded path as people read it (``Document_ЗаказКлиента(guid'…')``), for messages."""
    name, paren, rest = path.partition("(")
    return _decoded_name(name) + paren + (unquote(rest) if "%" in rest else rest)


@lru_cache(maxsize=256)
def _decoded_name(name: str) -> str:
    return unquote(name)


def query_string(
    *,
    select: Sequence[str] | str | None = None,
    filter: Filter | str | None = None,
    top: int | None = None,
    skip: int | None = None,
    orderby: Sequence[str] | str | None = None,
    expand: Sequence[str] | str | None = None,
    inlinecount: bool = False,
    format: str | None = "json",
) -> str:
    """Build an encoded query string (without ``?``), options in a fixed order.

    Args:
        select: fields for ``$select`` (sequence or comma-joined text).
        filter: a :class:`Filter` or raw ``$filter`` text.
        top: ``$top``; always set it on collection reads (1C has no server-side paging).
        skip: ``$skip``.
        orderby: ``$orderby`` items (``"Date"``, ``"Date desc"``).
        expand: ``$expand`` navigation properties.
        inlinecount: ``$inlinecount=allpages``; refused together with ``top``/``skip``.
        format: ``$format``; ``None`` to omit (``$metadata``, actions).

    Raises:
        ValueError: ``inlinecount`` combined with ``top``/``skip``, or a negative ``top``/``skip``.
    """
    if inlinecount and (top is not None or skip is not None):
        raise ValueError("$inlinecount makes 1C ignore $top/$skip: never combine them")
    for name, number in (("top", top), ("skip", skip)):
        if number is not None and (isinstance(number, bool) or number < 0):
            raise ValueError(f"${name} must be a non-negative int, got {number!r}")

    def joined(value: Sequence[str] | str) -> str:
        return value if isinstance(value, str) else ",".join(value)

    parts: list[tuple[str, str]] = []
    if format is not None:
        parts.append(("$format", format))
    if select:
        parts.append(("$select", joined(select)))
    if filter is not None and str(filter):
        parts.append(("$filter", str(filter)))
    if orderby:
        parts.append(("$orderby", joined(orderby)))
    if expand:
        parts.append(("$expand", joined(expand)))
    if top is not None:
        parts.append(("$top", str(top)))
    if skip is not None:
        parts.append(("$skip", str(skip)))
    if inlinecount:
        parts.append(("$inlinecount", "allpages"))
    return "&".join(f"{encode(k)}={encode(v)}" for k, v in parts)


@dataclass(frozen=True)
class KeyChunk:
    """One ``or`` chain of keys and its ``$filter``."""

    keys: tuple[str, ...]
    filter: Filter


def key_chunks(
    keys: Iterable[str],
    field: str = "Ref_Key",
    url_budget: int = DEFAULT_URL_BUDGET,
    base_len: int = 0,
    *,
    entity_set: str | None = None,
    strings: bool = False,
) -> Iterator[KeyChunk]:
    """Split keys into ``field eq guid'…' or …`` chains whose encoded query fits the budget.

    The encoded length of a chain is additive (percent-encoding works character by character), so
    each chunk is filled greedily: ``base_len + len(encode(filter)) <= url_budget``. Duplicate keys
    are sent once, in first-seen order.

    Args:
        keys: reference keys (GUID strings).
        field: the key field (``Ref_Key``, or a composite/reference field such as ``Партнер_Key``).
        url_budget: the byte budget of the whole encoded query string.
        base_len: encoded bytes of the rest of the query (``$format=json&$select=…&$filter=``).
        entity_set: when set, keys are rendered as ``cast(guid'…','entity_set')`` (composite fields).
        strings: the values are plain strings (a card's number), rendered as ``'…'``.

    Raises:
        ValueError: a single key does not fit the budget.
    """
    separator = len(encode(" or "))
    room = url_budget - base_len
    seen: set[str] = set()
    chunk: list[str] = []
    terms: list[Filter] = []
    used = 0
    for raw in keys:
        key = raw if strings else normalize_guid(raw)
        if key in seen:
            continue
        seen.add(key)
        term = eq(field, key if strings else Cast(key, entity_set) if entity_set else Guid(key))
        cost = len(encode(term.text))
        extra = cost if not chunk else cost + separator
        if chunk and used + extra > room:
            yield KeyChunk(tuple(chunk), or_(*terms))
            chunk, terms, used, extra = [], [], 0, cost
        if extra > room:
            raise ValueError(f"URL budget {url_budget} too small for one key (needs {base_len + cost})")
        chunk.append(key)
        terms.append(term)
        used += extra
    if chunk:
        yield KeyChunk(tuple(chunk), or_(*terms))
