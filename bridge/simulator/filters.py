"""``$filter`` as 1C's OData understands it: a tokenizer, a recursive-descent parser, an evaluator.

Owns ``compile_filter(expression, entity_set) -> predicate`` and ``compile_query`` (the predicate
with the datetime ranges its top-level ``and`` chain implies, for the store's date index).
Supported: ``eq ne gt ge lt le``, ``and or not``, parentheses, ``substringof``, ``startswith``,
``endswith``, literals ``guid'…'``, ``datetime'…'``, ``'text'`` (quote doubled), numbers,
``true``/``false``/``null``, and ``cast(guid'…','Document_X')`` against composite fields. 1C's
quirks are kept: ``in`` is a syntax error (400), ``tolower``/``indexof`` are unknown (400), a bare
GUID against a composite field matches nothing, and an ordering comparison of GUIDs
(``Ref_Key gt guid'…'``) fails with 500.
Must not import anything of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bridge.simulator.schema import BOOLEAN, DATETIME, DOUBLE, GUID, INT64, NAMESPACE, EntitySet
from bridge.simulator.wire import WireError, parse_date

Row = dict[str, Any]


class FilterError(Exception):
    """A filter 1C refuses: ``status`` 400 (syntax, types) or 500 (what 1C's query engine fails on)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<typed>(?:guid|datetime|datetimeoffset|time|X|binary)'(?:[^']|'')*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?)
  | (?P<punct>[(),])
  | (?P<name>[^\W\d][\w/]*)
    """,
    re.VERBOSE,
)

_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
_ORDERING = {"gt", "ge", "lt", "le"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FilterError(f"Синтаксическая ошибка в позиции {pos}: {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    return tokens


@dataclass(frozen=True, slots=True)
class Composite:
    """A composite value: the value and its full type name (``StandardODATA.Document_X``)."""

    value: str
    type: str


@dataclass(slots=True)
class Node:
    """A compiled sub-expression: its static type and how to evaluate it on a row.

    ``field`` names the property a bare field reference reads; ``bounds`` are comparisons of a
    field with a literal that hold for every row on which a boolean node is true (the conjuncts of
    an ``and`` chain), as ``(field, op, value)`` with the field on the left.
    """

    type: str  # guid, string, number, bool, datetime, composite, null
    fn: Callable[[Row], Any]
    literal: bool = False
    field: str | None = None
    bounds: tuple[tuple[str, str, Any], ...] = ()
    exact: bool = False  # true exactly when every bound holds (an and-chain of bounds alone)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled ``$filter``: the predicate, and the range it implies for each datetime field
    compared with a literal at the top level of the filter's ``and`` chain (``(low, high)``,
    both inclusive, ``None`` for an open end). A row outside a field's range never matches, so
    an index on that field may serve the filter; the predicate must still be applied."""

    predicate: Callable[[Row], bool]
    ranges: dict[str, tuple[Any, Any]]
    window: Window | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """A filter that is nothing but bounds on one datetime field: it accepts a row whose field is a
    datetime exactly when ``low <(=) value <(=) high`` (``None`` ends are open)."""

    field: str
    low: Any
    low_strict: bool
    high: Any
    high_strict: bool


def _field_type(edm: str) -> str:
    return {GUID: "guid", DOUBLE: "number", INT64: "number", BOOLEAN: "bool", DATETIME: "datetime"}.get(
        edm, "string"
    )


class _Parser:
    def __init__(self, text: str, es: EntitySet) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.es = es

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def word(self) -> str:
        tok = self.peek()
        return tok.text if tok is not None and tok.kind == "name" else ""

    def take(self, text: str | None = None) -> Token:
        tok = self.peek()
        if tok is None or (text is not None and tok.text != text):
            raise FilterError(f"Синтаксическая ошибка: ожидается {text or 'выражение'}")
        self.i += 1
        return tok

    def parse(self) -> Callable[[Row], bool]:
        return self.compile().predicate

    def compile(self) -> Compiled:
        node = self.or_()
        if self.peek() is not None:
            tok = self.take()
            if tok.text == "in":
                raise FilterError("Синтаксическая ошибка: оператор 'in' не поддерживается")
            raise FilterError(f"Синтаксическая ошибка в позиции {tok.pos}: {tok.text!r}")
        if node.type != "bool":
            raise FilterError("Выражение отбора должно быть логическим")
        fn = node.fn
        return Compiled(lambda row: fn(row) is True, _ranges(node.bounds), _window(node))

    def or_(self) -> Node:
        left = self.and_()
        while self.word() == "or":
            self.take()
            right = self.and_()
            left = _logic(left, right, any)
        return left

    def and_(self) -> Node:
        left = self.not_()
        while self.word() == "and":
            self.take()
            right = self.not_()
            left = _logic(left, right, all)
        return left

    def not_(self) -> Node:
        if self.word() == "not":
            self.take()
            inner = self.not_()
            if inner.type != "bool":
                raise FilterError("Операнд 'not' должен быть логическим")
            fn = inner.fn
            return Node("bool", lambda row: not fn(row))
        return self.compare()

    def compare(self) -> Node:
        left = self.primary()
        op = self.word()
        if op == "in":
            raise FilterError("Синтаксическая ошибка: оператор 'in' не поддерживается")
        if op not in _COMPARE:
            return left
        self.take()
        return _compare(op, left, self.primary())

    def primary(self) -> Node:
        tok = self.take()
        if tok.text == "(":
            node = self.or_()
            self.take(")")
            return node
        if tok.kind == "string":
            value = tok.text[1:-1].replace("''", "'")
            return Node("string", lambda row: value, literal=True)
        if tok.kind == "number":
            num = Decimal(tok.text.rstrip("mMdDfFlL"))
            return Node("number", lambda row: num, literal=True)
        if tok.kind == "typed":
            return _typed_literal(tok.text)
        if tok.kind != "name":
            raise FilterError(f"Синтаксическая ошибка в позиции {tok.pos}: {tok.text!r}")
        if tok.text in ("true", "false"):
            flag = tok.text == "true"
            return Node("bool", lambda row: flag, literal=True)
        if tok.text == "null":
            return Node("null", lambda row: None, literal=True)
        nxt = self.peek()
        if nxt is not None and nxt.text == "(":
            return self.function(tok.text)
        return self.field(tok.text)

    def args(self) -> list[Node]:
        self.take("(")
        args = [self.or_()]
        while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
            self.take(",")
            args.append(self.or_())
        self.take(")")
        return args

    def function(self, name: str) -> Node:
        if name == "cast":
            self.take("(")
            guid = self.primary()
            self.take(",")
            type_tok = self.take()
            self.take(")")
            if guid.type != "guid" or type_tok.kind != "string":
                raise FilterError("cast: ожидается cast(guid'…','Тип')")
            type_name = type_tok.text[1:-1]
            if not type_name.startswith(NAMESPACE + "."):
                type_name = f"{NAMESPACE}.{type_name}"
            value = Composite(guid.fn({}), type_name)
            return Node("composite", lambda row: value, literal=True)
        args = self.args()
        if name in ("substringof", "startswith", "endswith"):
            if len(args) != 2 or any(a.type not in ("string", "null") for a in args):
                raise FilterError(f"{name}: ожидаются два строковых аргумента")
            a, b = args[0].fn, args[1].fn
            if name == "substringof":
                return Node("bool", lambda row: (a(row) or "") in (b(row) or ""))
            method = str.startswith if name == "startswith" else str.endswith
            return Node("bool", lambda row: method(a(row) or "", b(row) or ""))
        raise FilterError(f"Неизвестная функция {name!r}")

    def field(self, name: str) -> Node:
        if "/" in name:
            raise FilterError(f"Навигация в отборе не поддерживается: {name!r}")
        for f in self.es.fields:
            if f.kind == "composite" and name == f.name:
                return Node("composite", _composite_of(name))
            if f.kind == "composite" and name == f.name + "_Type":
                return Node("string", lambda row: row.get(name, ""))
            if f.name == name:
                return Node(_field_type(f.type), lambda row: row.get(name), field=name)
        raise FilterError(f"Неизвестное свойство {name!r} объекта {self.es.name}")


def _typed_literal(text: str) -> Node:
    prefix, _, rest = text.partition("'")
    body = rest[:-1].replace("''", "'")
    if prefix == "guid":
        try:
            value = str(uuid.UUID(body))
        except ValueError as exc:
            raise FilterError(f"Неверный GUID: {body!r}") from exc
        return Node("guid", lambda row: value, literal=True)
    if prefix in ("datetime", "datetimeoffset"):
        try:
            when = parse_date(body)
        except WireError as exc:
            raise FilterError(str(exc)) from exc
        return Node("datetime", lambda row: when, literal=True)
    raise FilterError(f"Литерал {prefix}'…' не поддерживается")


def _logic(left: Node, right: Node, combine: Callable[[Any], bool]) -> Node:
    if left.type != "bool" or right.type != "bool":
        raise FilterError("Операнды 'and'/'or' должны быть логическими")
    lf, rf = left.fn, right.fn
    if combine is any:
        return Node("bool", lambda row: bool(lf(row)) or bool(rf(row)))
    return Node(
        "bool",
        lambda row: bool(lf(row)) and bool(rf(row)),
        bounds=left.bounds + right.bounds,
        exact=left.exact and right.exact,
    )


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _compare(op: str, left: Node, right: Node) -> Node:
    types = {left.type, right.type}
    if "guid" in types and op in _ORDERING:
        # 1C's query engine cannot order references: the request fails on the server side.
        raise FilterError("Ошибка выполнения запроса: сравнение ссылок на больше/меньше недопустимо", 500)
    if "composite" in types:
        if types != {"composite"} or op not in ("eq", "ne"):
            return Node("bool", lambda row: False)  # a bare GUID never equals a composite value
    elif "null" in types:
        if op not in ("eq", "ne"):
            raise FilterError("Сравнение с null допустимо только через eq/ne")
    elif left.type != right.type:
        raise FilterError(f"Несовместимые типы в сравнении: {left.type} {op} {right.type}")
    compare, lf, rf = _OPS[op], left.fn, right.fn

    def evaluate(row: Row) -> bool:
        a, b = lf(row), rf(row)
        if a is None or b is None:
            return compare(a, b) if op in ("eq", "ne") else False
        return compare(a, b)

    bounds = _bound(op, left, right)
    return Node("bool", evaluate, bounds=bounds, exact=bool(bounds))


_FLIPPED = {"eq": "eq", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


def _bound(op: str, left: Node, right: Node) -> tuple[tuple[str, str, Any], ...]:
    """``field op literal`` (either way round) on a datetime field, as a bound; else none."""
    if left.literal and right.field is not None:
        left, right, op = right, left, _FLIPPED.get(op, "")
    if left.type != "datetime" or right.type != "datetime" or left.field is None or not right.literal:
        return ()
    if op not in _FLIPPED:
        return ()
    return ((left.field, op, right.fn({})),)


def _window(node: Node) -> Window | None:
    fields = {name for name, _, _ in node.bounds}
    if not node.exact or len(fields) != 1:
        return None
    low = high = None
    low_strict = high_strict = False
    for _, op, value in node.bounds:
        if op in ("eq", "ge", "gt") and (low is None or value > low or (value == low and op == "gt")):
            low, low_strict = value, op == "gt"
        if op in ("eq", "le", "lt") and (high is None or value < high or (value == high and op == "lt")):
            high, high_strict = value, op == "lt"
    return Window(fields.pop(), low, low_strict, high, high_strict)


def _ranges(bounds: tuple[tuple[str, str, Any], ...]) -> dict[str, tuple[Any, Any]]:
    ranges: dict[str, tuple[Any, Any]] = {}
    for name, op, value in bounds:
        low, high = ranges.get(name, (None, None))
        if op in ("eq", "ge", "gt") and (low is None or value > low):
            low = value
        if op in ("eq", "le", "lt") and (high is None or value < high):
            high = value
        ranges[name] = (low, high)
    return ranges


def compile_filter(expression: str, es: EntitySet) -> Callable[[Row], bool]:
    """A predicate over stored rows of ``es``; ``FilterError`` when 1C would refuse the filter."""
    return compile_query(expression, es).predicate


def compile_query(expression: str, es: EntitySet) -> Compiled:
    """:func:`compile_filter` with the datetime ranges the filter implies (see :class:`Compiled`)."""
    if not expression.strip():
        return Compiled(lambda row: True, {})
    return _Parser(expression, es).compile()


def _composite_of(name: str) -> Callable[[dict[str, Any]], Composite]:
    """Reads a composite field: its key and the ``…_Type`` naming the referenced entity set."""
    kind_field = name + "_Type"

    def composite(row: dict[str, Any]) -> Composite:
        return Composite(str(row.get(name, "")), row.get(kind_field, ""))

    return composite
