"""Every config key the docs name exists: `a.b` key paths in README's sections, config.example.yaml
and packaging/ are resolved against the config models (a reader who types `onec.timezone` gets exit
78, "unknown key")."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.runtime.config import Config, _as_model
from bridge.runtime.config_models import model_fields_by_alias

ROOT = Path(__file__).resolve().parents[1]
FILES = [*sorted((ROOT / "docs" / "readme").glob("*.md")), ROOT / "config.example.yaml"]
FILES += sorted((ROOT / "packaging").iterdir())
# Dotted names that are not config keys: the webhook body's `bonus.debt`, the config chapter's
# example of a misspelt key, Python names in code samples.
NOT_KEYS = {"bonus.debt", "bonus.hold_dayz", "http.server", "site.url", "site.effective", "site.deliveries"}
FILE_NAMES = (".db", ".lock", ".md", ".py", ".yaml", ".env", ".service")
TOKEN = re.compile(r"(?<![\w./-])([a-z_]+(?:\.[a-z_]+(?:\[\d*\])?)+)(?![\w/(-])")


def resolves(path: str) -> bool:
    model: object = Config
    for part in path.split("."):
        fields = model_fields_by_alias(model) if isinstance(model, type) else {}
        name = re.sub(r"\[\d*\]$", "", part)
        if name not in fields:
            return False
        model = _as_model(fields[name].annotation)
        if model is None:
            return True  # a value (or a mapping of names to values): nothing further to check
    return True


def test_every_dotted_config_key_in_the_docs_exists() -> None:
    sections = set(model_fields_by_alias(Config))
    unknown = []
    for file in FILES:
        for number, line in enumerate(file.read_text("utf-8").splitlines(), start=1):
            for match in TOKEN.finditer(line):
                key = match.group(1)
                if key.endswith(FILE_NAMES):  # state.db.lock, config.yaml: files, not keys
                    continue
                if key.split(".")[0] in sections and key not in NOT_KEYS and not resolves(key):
                    unknown.append(f"{file.relative_to(ROOT)}:{number}: {key}")
    assert unknown == []
