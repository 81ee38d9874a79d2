"""``notify.templates``: built-in Russian defaults, partial overrides, null switches a message off,
and every placeholder checked at load time against the names its event reason may use."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bridge.domain.ledger import Reason
from bridge.runtime.config_channels import (
    DEFAULT_TEMPLATES,
    TemplatesConfig,
    template_fields,
    template_problem,
)
from tests.runtime.config_kit import edit, load, minimal, problems

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def test_the_example_shows_exactly_the_built_in_defaults() -> None:
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["notify"]["templates"]
    assert example == DEFAULT_TEMPLATES
    assert TemplatesConfig.model_validate(example) == TemplatesConfig()


def test_defaults_apply_when_nothing_is_configured(tmp_path: Path) -> None:
    config = load(tmp_path, minimal())
    assert config.notify.shop_name == "Магазин"
    accrued = config.notify.templates.for_reason("points_accrued")
    assert accrued is not None and accrued.email is not None
    assert accrued.sms == DEFAULT_TEMPLATES["points_accrued"]["sms"]
    assert accrued.email.subject == "Начислено {points} {points_word}"


def test_every_notified_reason_has_a_default_and_card_issued_none() -> None:
    notified = {r.value for r in Reason} - {"card_issued"}
    assert set(DEFAULT_TEMPLATES) == notified
    assert TemplatesConfig().for_reason("card_issued") is None
    assert template_fields("card_issued") == ()


def test_a_partial_reason_keeps_the_defaults_of_what_it_leaves_out(tmp_path: Path) -> None:
    data = edit(minimal(), "notify.templates.points_accrued", {"email": {"subject": "Бонусы: {points}"}})
    config = load(tmp_path, data)
    accrued = config.notify.templates.points_accrued
    assert accrued is not None and accrued.email is not None
    assert accrued.sms == DEFAULT_TEMPLATES["points_accrued"]["sms"]
    assert accrued.email.subject == "Бонусы: {points}"
    assert accrued.email.body == DEFAULT_TEMPLATES["points_accrued"]["email"]["body"]
    assert config.notify.templates.points_expired == TemplatesConfig().points_expired


def test_null_turns_a_reason_or_one_channel_off(tmp_path: Path) -> None:
    data = edit(minimal(), "notify.templates.points_expired", None)
    data = edit(data, "notify.templates.tier_changed.sms", None)
    data = edit(data, "notify.templates.level_recomputed.email", None)
    templates = load(tmp_path, data).notify.templates
    assert templates.points_expired is None and templates.for_reason("points_expired") is None
    tier = templates.tier_changed
    assert tier is not None and tier.sms is None and tier.email is not None
    level = templates.level_recomputed
    assert level is not None and level.sms is not None and level.email is None


def test_templates_null_means_the_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, edit(minimal(), "notify.templates", None)).notify.templates == TemplatesConfig()


def test_unknown_placeholder_names_the_key_and_lists_the_allowed_names(tmp_path: Path) -> None:
    data = edit(minimal(), "notify.templates.points_accrued.sms", "Начислено {pionts}")
    (found,) = problems(tmp_path, data)
    assert found.startswith("notify.templates.points_accrued.sms: unknown placeholder {pionts}; use only ")
    for name in ("{points}", "{points_word}", "{date}", "{name}", "{shop}", "{total}", "{available}"):
        assert name in found


def test_every_bad_template_is_reported_at_once(tmp_path: Path) -> None:
    data = edit(minimal(), "notify.templates.tier_changed.sms", "{points} {tier}")  # no points here
    data = edit(data, "notify.templates.level_changed.email.body", "Уровень {level")
    data = edit(data, "notify.templates.card_created.email.subject", "Карта {card:>20}")
    found = problems(tmp_path, data)
    assert [line.split(":", 1)[0] for line in found] == [
        "notify.templates.tier_changed.sms",
        "notify.templates.level_changed.email.body",
        "notify.templates.card_created.email.subject",
    ]
    assert "unknown placeholder {points}" in found[0] and "{old_tier}" in found[0]
    assert "is not a valid template" in found[1] and "{{" in found[1]
    assert "takes no format or conversion" in found[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", "unknown placeholder {}"),
        ("{name.upper}", "unknown placeholder {name.upper}"),
        ("{name[0]}", "unknown placeholder {name[0]}"),
        ("{name!r}", "takes no format or conversion"),
        ("}", "is not a valid template"),
        ("{{literal}} {name}", None),
        ("Без подстановок", None),
    ],
)
def test_template_problem(text: str, expected: str | None) -> None:
    problem = template_problem(text, "points_accrued")
    assert (problem is None) if expected is None else (problem is not None and expected in problem)


def test_subject_must_be_one_line(tmp_path: Path) -> None:
    data = edit(minimal(), "notify.templates.points_redeemed.email.subject", "Строка\nвторая")
    (found,) = problems(tmp_path, data)
    assert found.startswith("notify.templates.points_redeemed.email.subject: must be one line")


def test_unknown_reason_is_an_unknown_key(tmp_path: Path) -> None:
    data = edit(minimal(), "notify.templates.points_acrued", {"sms": "x"})
    (found,) = problems(tmp_path, data)
    assert found.startswith("notify.templates.points_acrued: unknown key (did you mean")


def test_empty_text_is_rejected_use_null_instead(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, edit(minimal(), "notify.templates.points_accrued.sms", " "))
    assert found.startswith("notify.templates.points_accrued.sms: must not be empty")
