"""Helpers for the config tests: a minimal valid config as data, edits by key path, YAML on disk."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.errors import ConfigError
from bridge.runtime.config import Config, load_config

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {"ONEC_PASSWORD": "onec-pass-123", "SITE_WEBHOOK_SECRET": SECRET}

MINIMAL: dict[str, Any] = {
    "timezone": "Europe/Moscow",
    "state": {"url": "sqlite:///state.db"},
    "onec": {
        "odata_url": "http://1c.example/ut11/odata/standard.odata",
        "username": "bridge",
        "mapping": "mappings/ut11.yaml",
    },
    "poll": {"start": "2026-01-01T00:00:00"},
    "bonus": {
        "tiers": [
            {"code": "silver", "name": "Серебряный", "threshold": 0, "rate": Decimal("0.02")},
            {"code": "gold", "name": "Золотой", "threshold": 30000, "rate": Decimal("0.03")},
        ]
    },
    "discount": {
        "levels": [
            {"code": "base", "name": "Новичок", "threshold": 0, "percent": 0, "term_days": None},
            {"code": "fan", "name": "Фанат животных", "threshold": 10000, "percent": 5, "term_days": 180},
        ]
    },
}


class _Dumper(yaml.SafeDumper):
    """Writes ``Decimal`` as a plain YAML number, the way an administrator would type it."""


_Dumper.add_representer(
    Decimal, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:float", str(value))
)


class _Delete:
    """Edit value meaning "remove the key" (a stable repr keeps test ids equal across workers)."""

    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()


def minimal() -> dict[str, Any]:
    return copy.deepcopy(MINIMAL)


def edit(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or with ``DELETE`` remove) ``path`` like ``bonus.tiers[1].rate``, creating mappings."""
    parts: list[str | int] = [
        int(index) if index else name for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
    ]
    node: Any = data
    for part in parts[:-1]:
        if isinstance(part, str) and (part not in node or node[part] is None):
            node[part] = {}
        node = node[part]
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return data


def write(tmp_path: Path, data: Mapping[str, Any] | str, name: str = "config.yaml") -> Path:
    """Write a config (data or YAML text) and the mapping file it names; return the config's path."""
    (tmp_path / "mappings").mkdir(exist_ok=True)
    (tmp_path / "mappings" / "ut11.yaml").write_text("version: 1\n", encoding="utf-8")
    text = (
        data
        if isinstance(data, str)
        else yaml.dump(dict(data), Dumper=_Dumper, allow_unicode=True, sort_keys=False)
    )
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, data: Mapping[str, Any] | str, env: Mapping[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, data), ENV if env is None else env)


def problems(
    tmp_path: Path, data: Mapping[str, Any] | str, env: Mapping[str, str] | None = None
) -> list[str]:
    """The problems ``load_config`` reports for this config (fails the test if it loads)."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, data, env)
    return caught.value.problems
