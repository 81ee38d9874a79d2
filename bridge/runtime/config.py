"""The config file: read, validated in full, returned as one frozen typed ``Config``.

Owns ``load_config`` (the file named by ``--config`` / ``$LOYALTY_BRIDGE_CONFIG``), ``config_from_data``
(the same from a mapping already in memory, e.g. an embedded default), ``read_document`` (the file
read but not validated) and the wording of every config problem. All problems are collected —
pydantic's type errors, unknown keys (with the closest valid key suggested), duplicate keys, rules
over several keys, missing secrets — and raised together as one ``ConfigError`` with one line per
problem, ``<key.path>: <what is wrong>; <what to do>``, in the order the keys appear in the file.
The models are in ``config_models``, single-value rules in ``config_rules``, the exact YAML loader
in ``config_yaml``.

Must not import anything of the bridge but ``bridge.errors``, ``bridge.domain.model`` and its own
``config_*`` modules.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bridge.errors import ConfigError
from bridge.runtime.config_channels import EmailConfig, NotifyConfig, SiteConfig, SmsConfig
from bridge.runtime.config_models import (
    Config,
    HttpConfig,
    LogConfig,
    OnecConfig,
    PollConfig,
    SoapConfig,
    StateConfig,
    model_fields_by_alias,
)
from bridge.runtime.config_programs import BonusConfig, CardsConfig, DiscountConfig, LevelConfig, TierConfig
from bridge.runtime.config_rules import RULE
from bridge.runtime.config_yaml import Document, format_path, parse

__all__ = [
    "BonusConfig",
    "CardsConfig",
    "Config",
    "DiscountConfig",
    "EmailConfig",
    "HttpConfig",
    "LevelConfig",
    "LogConfig",
    "NotifyConfig",
    "OnecConfig",
    "PollConfig",
    "SiteConfig",
    "SmsConfig",
    "SoapConfig",
    "StateConfig",
    "TierConfig",
    "config_from_data",
    "default_config_path",
    "load_config",
    "read_document",
]

CONFIG_ENV = "LOYALTY_BRIDGE_CONFIG"
DEFAULT_CONFIG = "config.yaml"
_EXAMPLE = "see config.example.yaml"


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``--config`` points when not given: ``$LOYALTY_BRIDGE_CONFIG``, else ``./config.yaml``."""
    env = os.environ if environ is None else environ
    named = env.get(CONFIG_ENV, "").strip()
    return Path(named) if named else Path(DEFAULT_CONFIG)


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None, *, secrets: bool = True
) -> Config:
    """Read and validate the config file at ``path``.

    Args:
        path: the YAML file; relative paths inside it (``onec.mapping``) resolve against its directory.
        environ: where ``*_env`` secrets are looked up (default ``os.environ``).
        secrets: False for a command that never contacts 1C, the site or a gateway (``db upgrade``,
            ``customer``, ``quote``, ``outbox``): a secret that is not set is then no problem (the
            config's secrets are left empty).

    Raises:
        ConfigError: the file is missing, unreadable, not YAML, or invalid; ``problems`` lists
            every problem found, each naming its key path.
    """
    file = Path(path).expanduser().absolute()
    return _validate(read_document(file), file, environ, secrets)


def read_document(path: str | os.PathLike[str]) -> Document:
    """Read the config file at ``path`` as YAML, not validated (``demo --config`` takes parts of it).

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8 or not YAML.
    """
    file = Path(path).expanduser().absolute()
    try:
        text = file.read_text(encoding="utf-8-sig")  # a BOM from Windows editors is harmless
    except FileNotFoundError:
        raise ConfigError(
            [
                f"{file}: config file not found; create it from config.example.yaml, "
                f"or pass --config PATH (or set {CONFIG_ENV})"
            ],
            path=str(file),
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{file}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"], path=str(file)
        ) from None
    except OSError as exc:
        raise ConfigError(
            [f"{file}: cannot read the config file ({exc.strerror}); check the path and its permissions"],
            path=str(file),
        ) from None
    return parse(text, str(file))


def config_from_data(
    data: Any,
    *,
    config_path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    secrets: bool = True,
) -> Config:
    """Validate config data already parsed (e.g. a built-in default) exactly as ``load_config`` does.

    Args:
        data: the mapping a config file would hold (use ``Decimal`` or strings for fractions).
        config_path: the file the data stands for; relative paths resolve against its directory.
        environ: where ``*_env`` secrets are looked up (default ``os.environ``).
        secrets: as ``load_config``.

    Raises:
        ConfigError: as ``load_config``.
    """
    file = Path(config_path).expanduser().absolute()
    return _validate(Document(data), file, environ, secrets)


def _validate(doc: Document, file: Path, environ: Mapping[str, str] | None, secrets: bool = True) -> Config:
    if doc.data is None:
        raise ConfigError(
            [f"{file}: the config file is empty; start from config.example.yaml"], path=str(file)
        )
    if not isinstance(doc.data, Mapping):
        raise ConfigError(
            [f"{file}: the top level must be a mapping of keys (timezone:, state:, onec:, …); {_EXAMPLE}"],
            path=str(file),
        )
    problems: list[tuple[str, str]] = []
    context = {
        "problems": problems,
        "environ": os.environ if environ is None else environ,
        "base_dir": file.parent,
        "config_path": file,
        "secrets": secrets,
    }
    config: Config | None = None
    try:
        config = Config.model_validate(doc.data, context=context)
    except ValidationError as exc:
        problems.extend(_describe(error) for error in exc.errors(include_url=False))
    lines = [(path, f"{path}: {message}") for path, message in problems]
    lines += [(text.split(":", 1)[0], text) for text in doc.duplicates]
    if lines or config is None:
        ordered = _in_file_order(lines, doc.lines)
        raise ConfigError(ordered, path=str(file))
    return config


def _in_file_order(problems: list[tuple[str, str]], key_lines: Mapping[str, int]) -> list[str]:
    def line_of(path: str) -> int:
        while path:
            if path in key_lines:
                return key_lines[path]
            path = re.sub(r"(\.[^.\[]+|\[[^\]]*\])$", "", path) if re.search(r"[.\[]", path) else ""
        return 0

    unique = list(dict.fromkeys(text for _, text in problems))
    paths = {text: path for path, text in problems}
    return sorted(unique, key=lambda text: line_of(paths[text]))


# --- wording of pydantic's errors ------------------------------------------------------------------

_TYPE_WORDS = {
    "int_type": ("must be a whole number", "write it without a fraction, e.g. 14"),
    "int_parsing": ("must be a whole number", "write it without a fraction, e.g. 14"),
    "int_from_float": ("must be a whole number", "write it without a fraction, e.g. 14"),
    "float_type": ("must be a number", "write e.g. 30"),
    "float_parsing": ("must be a number", "write e.g. 30"),
    "decimal_type": ("must be a number", "write e.g. 0.03 or 30000"),
    "decimal_parsing": ("must be a number", "write e.g. 0.03 or 30000"),
    "finite_number": ("must be a finite number", "write an ordinary number"),
    "bool_type": ("must be true or false", "write true or false"),
    "bool_parsing": ("must be true or false", "write true or false"),
    "string_type": ("must be text", "put the value in quotes"),
    "model_type": ("must be a mapping of keys", f"write it as indented key: value lines; {_EXAMPLE}"),
    "model_attributes_type": (
        "must be a mapping of keys",
        f"write it as indented key: value lines; {_EXAMPLE}",
    ),
    "dict_type": ("must be a mapping", "write it as {name: value, …} or indented name: value lines"),
    "tuple_type": ("must be a list", "write it as [a, b] or as lines starting with '- '"),
    "list_type": ("must be a list", "write it as [a, b] or as lines starting with '- '"),
}


def _describe(error: ErrorDetails) -> tuple[str, str]:
    """Turn one pydantic error into ``(key path, "what is wrong; what to do")``."""
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if loc and loc[-1] == "[key]":
        return format_path(loc[:-1]), "the name must be text; put it in quotes"
    path = format_path(loc)
    # Never echo what sits under a *_env key: it may be a secret pasted by mistake.
    secret = any(isinstance(part, str) and part.endswith("_env") for part in loc)
    got = "" if secret else f" (got {_show(error.get('input'))})"
    if kind == RULE:
        return path, str(ctx["detail"])
    if kind == "missing":
        return path, f"required key is missing; add it ({_EXAMPLE})"
    if kind == "extra_forbidden":
        return path, _unknown_key(loc)
    if kind in _TYPE_WORDS:
        what, todo = _TYPE_WORDS[kind]
        return path, f"{what}{got}; {todo}"
    if kind == "literal_error":
        return path, f"must be one of {ctx.get('expected', '')}{got}; pick one of them"
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return path, f"must be {words} {ctx.get(key)}{got}; change the value"
    if kind in ("string_too_short", "string_too_long"):
        return path, f"{error['msg'].lower()}{got}; change the value"
    return path, f"{error['msg']}{got}; fix the value ({_EXAMPLE})"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int | Decimal):
        return str(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _unknown_key(loc: tuple[Any, ...]) -> str:
    parent, key = loc[:-1], str(loc[-1])
    valid = list(model_fields_by_alias(model)) if (model := _model_at(parent)) else []
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if match:
        return f"unknown key (did you mean {format_path((*parent, match[0]))}?); rename or remove it"
    hint = f"valid keys here: {', '.join(valid)}" if valid else _EXAMPLE
    return f"unknown key; remove it ({hint})"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (list indexes skipped)."""
    current: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        model = _as_model(current)
        if model is None:
            return None
        field = model_fields_by_alias(model).get(str(part))
        if field is None:
            return None
        current = field.annotation
    return _as_model(current)


def _as_model(annotation: Any) -> type[BaseModel] | None:
    """Unwrap ``X | None``, ``tuple[X, ...]`` and ``Annotated[X, …]`` down to a model class."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, tuple, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            if (found := _as_model(arg)) is not None:
                return found
    return None
