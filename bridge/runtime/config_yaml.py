"""Reading the config file's YAML exactly: numbers stay exact, nothing is guessed.

Owns the loader behind ``bridge.runtime.config``. PyYAML's default (YAML 1.1) schema turns ``0.03``
into a binary float, ``03:30`` into the integer 210, ``no`` into ``False`` and silently keeps the last
of two equal keys. This loader resolves plain scalars closer to YAML 1.2's core schema instead:
fractional numbers become ``Decimal`` built from their text, only ``true``/``false`` are booleans,
dates stay text (the config models parse them), and duplicate keys are reported with their key path.
It also records the line of every key, so problems can be listed in file order.

Must not import anything of the bridge but ``bridge.errors``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from bridge.errors import ConfigError

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_REPLACED_TAGS = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
}


class ExactLoader(yaml.SafeLoader):
    """A safe loader with the core-schema scalars described in the module docstring."""


ExactLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ExactLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
ExactLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
ExactLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits[:2] in ("0x", "0o"):
        return sign * int(digits, 0)
    return sign * int(digits, 10)  # "0290" is 290, never octal


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    lowered = text.lower()
    if lowered.endswith(".inf"):
        text = "-Infinity" if lowered.startswith("-") else "Infinity"
    elif lowered == ".nan":
        text = "NaN"
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the resolver's pattern only admits numbers
        raise yaml.constructor.ConstructorError(
            None, None, f"not a number: {text!r}", node.start_mark
        ) from None


ExactLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
ExactLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed config file: its data, the line (1-based) of every key path, duplicate keys found."""

    data: Any
    lines: dict[str, int] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)


def format_path(loc: tuple[str | int, ...]) -> str:
    """Render a key path: ``("bonus", "tiers", 1, "rate")`` -> ``bonus.tiers[1].rate``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "a").isalnum():
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def parse(text: str, source: str) -> Document:
    """Parse config text; raise ``ConfigError`` naming line and column on invalid YAML."""
    loader = ExactLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        duplicates: list[str] = []
        if node is not None:
            _walk(node, (), lines, duplicates)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        raise ConfigError(
            [f"{source}: invalid YAML{where}: {what}; fix the syntax (check indentation and quotes)"],
            path=source,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}; fix the syntax"], path=source) from None
    finally:
        loader.dispose()
    return Document(data, lines, duplicates)


def _walk(node: yaml.Node, loc: tuple[str | int, ...], lines: dict[str, int], duplicates: list[str]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key: Any = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                continue
            path = (*loc, str(key))
            name = format_path(path)
            if key in seen:
                duplicates.append(
                    f"{name}: duplicate key (line {key_node.start_mark.line + 1}); "
                    "keep only one of them — YAML would silently use the last"
                )
            seen.add(key)
            lines.setdefault(name, key_node.start_mark.line + 1)
            _walk(value_node, path, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = (*loc, index)
            lines.setdefault(format_path(path), item.start_mark.line + 1)
            _walk(item, path, lines, duplicates)
