"""Loading the config file: exact numbers, paths, defaults, file-level errors, the domain's rules,
and ``config.example.yaml`` kept complete."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from bridge.domain.model import BonusRules, DiscountRules, Level, Tier
from bridge.errors import ConfigError
from bridge.runtime.config import Config, config_from_data, default_config_path, load_config
from bridge.runtime.config_models import model_fields_by_alias
from bridge.runtime.config_rules import Section
from tests.runtime.config_kit import ENV, MINIMAL, edit, load, minimal, problems, write

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def _load_example(tmp_path: Path) -> Config:
    shutil.copy(EXAMPLE, tmp_path / "config.yaml")
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "ut11.yaml").write_text("version: 1\n", encoding="utf-8")
    return load_config(tmp_path / "config.yaml", ENV)


def _key_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key path the models accept, lists written as ``[]``: ``bonus.tiers[].rate``."""
    paths = []
    for name, info in model_fields_by_alias(model).items():
        path = f"{prefix}{name}"
        paths.append(path)
        annotation = info.annotation
        args = getattr(annotation, "__args__", ())
        for candidate in (annotation, *args):
            if isinstance(candidate, type) and issubclass(candidate, Section):
                sub = f"{path}[]." if annotation is not candidate and args[-1] is Ellipsis else f"{path}."
                paths += _key_paths(candidate, sub)
    return paths


def _example_paths(data: Any, prefix: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            found.add(f"{prefix}{key}")
            found |= _example_paths(value, f"{prefix}{key}.")
    elif isinstance(data, list):
        for item in data:
            found |= _example_paths(item, prefix[:-1] + "[].")
    return found


def test_example_config_loads(tmp_path: Path) -> None:
    config = _load_example(tmp_path)
    assert config.bonus_enabled and config.discount_enabled and config.site is not None
    assert config.mapping_path == tmp_path / "mappings" / "ut11.yaml"


def test_example_config_shows_every_key_of_the_models() -> None:
    shown = _example_paths(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    accepted = _key_paths(Config)
    assert "bonus.tiers[].rate" in accepted and "notify.email.from" in accepted  # the walk itself works
    missing = [path for path in accepted if path not in shown]
    assert missing == [], f"config.example.yaml lacks {missing}"


def test_every_key_in_the_example_has_a_comment() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    lines = text.splitlines()
    uncommented = []

    def walk(node: yaml.Node) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                row = key.start_mark.line
                above = lines[row - 1].strip() if row else ""
                if "#" not in lines[row] and not above.startswith("#"):
                    uncommented.append(f"line {row + 1}: {key.value}")
                walk(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)

    walk(yaml.compose(text))
    assert uncommented == []


# --- exact numbers and YAML scalars ------------------------------------------------------------------

YAML_TEXT = """\
timezone: Europe/Moscow
state: {url: "sqlite://"}
onec: {odata_url: "http://1c/odata", username: bridge}
poll:
  start: 2026-03-01
  reconcile_at: 03:30
  interval_s: 0.5
bonus:
  point_value: 0.1
  max_redeem_share: 0.3
  default_coefficient: 1.10
  groups: {Одежда: 1.5, Велосипеды: 1, Распродажа: 0, Мелочи: 0.07}
  tiers:
    - {code: silver, name: Серебряный, threshold: 0, rate: 0.03}
    - {code: gold, name: Золотой, threshold: 30_000.50, rate: 0.035}
notify:
  sms: {sender: NO}
"""


@pytest.mark.parametrize(
    ("get", "expected"),
    [
        (lambda c: c.bonus.tiers[0].rate, "0.03"),
        (lambda c: c.bonus.tiers[1].rate, "0.035"),
        (lambda c: c.bonus.tiers[1].threshold, "30000.50"),
        (lambda c: c.bonus.point_value, "0.1"),
        (lambda c: c.bonus.max_redeem_share, "0.3"),
        (lambda c: c.bonus.default_coefficient, "1.10"),
        (lambda c: c.bonus.groups["Одежда"], "1.5"),
        (lambda c: c.bonus.groups["Мелочи"], "0.07"),
        (lambda c: c.bonus.groups["Велосипеды"], "1"),
    ],
)
def test_numbers_are_exact_decimals(tmp_path: Path, get: Any, expected: str) -> None:
    value = get(load(tmp_path, YAML_TEXT))
    assert type(value) is Decimal
    assert str(value) == expected  # not 0.0299999999999999988897769753748…


def test_yaml_scalars_are_not_guessed(tmp_path: Path) -> None:
    config = load(tmp_path, YAML_TEXT)
    assert config.poll.reconcile_at == time(3, 30)  # YAML 1.1 would read 03:30 as the number 210
    assert config.notify.sms.sender == "NO"  # YAML 1.1 would read it as false
    assert config.poll.start == datetime(2026, 3, 1)
    assert config.poll.interval_s == 0.5


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("2026-01-01", datetime(2026, 1, 1, 0, 0)),
        ("2026-01-01T08:15:00", datetime(2026, 1, 1, 8, 15)),
        ("2026-01-01 08:15", datetime(2026, 1, 1, 8, 15)),
    ],
)
def test_poll_start_is_local_time_in_the_config_zone(tmp_path: Path, start: str, expected: datetime) -> None:
    config = load(tmp_path, edit(minimal(), "poll.start", start))
    assert config.poll.start == expected
    assert config.poll_start == expected.replace(tzinfo=config.tz)
    assert config.poll_start.utcoffset() == timedelta(hours=3)


def test_poll_start_with_an_offset_keeps_it(tmp_path: Path) -> None:
    config = load(tmp_path, edit(minimal(), "poll.start", "2026-01-01T00:00:00+05:00"))
    assert config.poll_start.utcoffset() == timedelta(hours=5)


# --- defaults -------------------------------------------------------------------------------------------

DEFAULTS: list[tuple[str, Any]] = [
    ("delivery_products", ()),
    ("onec.password_env", "ONEC_PASSWORD"),
    ("onec.timeout_s", 30),
    ("onec.page_size", 500),
    ("onec.soap.wsdl", None),
    ("onec.url_budget", 2000),
    ("onec.verify_tls", True),
    ("onec.write_workers", 1),
    ("poll.interval_s", 60),
    ("poll.overlap_s", 600),
    ("poll.changes", "scan"),
    ("poll.track_days", 30),
    ("poll.reconcile_days", 90),
    ("poll.reconcile_at", time(3, 30)),
    ("poll.backfill_window_days", 7),
    ("bonus.enabled", True),
    ("bonus.point_value", Decimal(1)),
    ("bonus.point_precision", 0),
    ("bonus.hold_days", 14),
    ("bonus.expiry_days", 365),
    ("bonus.expiry_warning_days", 7),
    ("bonus.max_redeem_share", Decimal(1)),
    ("bonus.default_coefficient", Decimal(1)),
    ("bonus.groups", {}),
    ("bonus.volume_window_days", None),
    ("discount.enabled", True),
    ("discount.period_days", 365),
    ("cards.prefix", "2990"),
    ("cards.kind", None),
    ("site", None),
    ("notify.sms.url", None),
    ("notify.sms.token_env", "SMS_TOKEN"),
    ("notify.sms.sender", "SHOP"),
    ("notify.sms.timeout_s", 10),
    ("notify.email.smtp_host", None),
    ("notify.email.smtp_port", 587),
    ("notify.email.username", None),
    ("notify.email.password_env", "SMTP_PASSWORD"),
    ("notify.email.from_", None),
    ("notify.email.starttls", True),
    ("notify.email.timeout_s", 30),
    ("http.listen", None),
    ("log.level", "info"),
    ("log.format", "json"),
]


@pytest.mark.parametrize(("path", "expected"), DEFAULTS, ids=[p for p, _ in DEFAULTS])
def test_defaults(tmp_path: Path, path: str, expected: Any) -> None:
    value: Any = load(tmp_path, minimal())
    for part in path.split("."):
        value = getattr(value, part)
    assert value == expected


def test_site_defaults_when_the_section_is_given(tmp_path: Path) -> None:
    config = load(tmp_path, edit(minimal(), "site", {"webhook_url": "https://shop.example/hook"}))
    assert config.site is not None
    assert (config.site.secret_env, config.site.previous_secret_env) == ("SITE_WEBHOOK_SECRET", None)
    assert (config.site.max_retry_hours, config.site.timeout_s, config.site.webhook_workers) == (72, 10, 1)


def test_absent_program_sections_mean_disabled(tmp_path: Path) -> None:
    data = minimal()
    del data["bonus"]
    config = load(tmp_path, data)
    assert config.bonus is None and not config.bonus_enabled and config.discount_enabled
    with pytest.raises(ConfigError, match="bonus: the bonus program is not enabled"):
        config.bonus_rules()


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, minimal())
    with pytest.raises(ValueError, match="frozen"):
        config.timezone = "UTC"  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        config.onec.page_size = 1  # type: ignore[misc]


# --- paths ------------------------------------------------------------------------------------------------


def test_mapping_path_is_relative_to_the_config_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc" / "loyalty"
    etc.mkdir(parents=True)
    (etc / "maps").mkdir()
    (etc / "maps" / "shop.yaml").write_text("version: 1\n", encoding="utf-8")
    data = edit(minimal(), "onec.mapping", "maps/shop.yaml")
    (etc / "config.yaml").write_text(yaml.safe_dump(_plain(data), allow_unicode=True), encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    config = load_config(Path("etc/loyalty/config.yaml"), ENV)

    assert config.config_path == etc / "config.yaml"
    assert config.config_path.is_absolute()
    assert config.mapping_path == etc / "maps" / "shop.yaml"


def test_absolute_mapping_path_is_kept(tmp_path: Path) -> None:
    mapping = tmp_path / "elsewhere.yaml"
    mapping.write_text("version: 1\n", encoding="utf-8")
    config = load(tmp_path, edit(minimal(), "onec.mapping", str(mapping)))
    assert config.mapping_path == mapping


def test_wsdl_file_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load(tmp_path, edit(minimal(), "onec.soap.wsdl", "ws/loyalty.wsdl"))
    assert config.wsdl_location == str(tmp_path / "ws" / "loyalty.wsdl")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Path("config.yaml")),
        (
            {"LOYALTY_BRIDGE_CONFIG": "/etc/loyalty-bridge/config.yaml"},
            Path("/etc/loyalty-bridge/config.yaml"),
        ),
        ({"LOYALTY_BRIDGE_CONFIG": " /etc/lb.yaml\n"}, Path("/etc/lb.yaml")),
        ({"LOYALTY_BRIDGE_CONFIG": "  "}, Path("config.yaml")),
    ],
)
def test_default_config_path(environ: dict[str, str], expected: Path) -> None:
    assert default_config_path(environ) == expected


def test_default_config_path_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALTY_BRIDGE_CONFIG", "/srv/lb.yaml")
    assert default_config_path() == Path("/srv/lb.yaml")


# --- file-level errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml", ENV)
    assert caught.value.problems == [
        f"{tmp_path / 'nope.yaml'}: config file not found; create it from config.example.yaml, "
        "or pass --config PATH (or set LOYALTY_BRIDGE_CONFIG)"
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path, ENV)  # a directory


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_file_without_read_permission(tmp_path: Path) -> None:
    path = write(tmp_path, "timezone: UTC\n")
    path.chmod(0)
    with pytest.raises(ConfigError, match="Permission denied"):
        load_config(path, ENV)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timezone: [Europe/Moscow\nstate: 1\n", "invalid YAML at line 2, column 6: expected ',' or ']'"),
        ("a: 1\n  b: 2\n", "invalid YAML at line 2, column 4: mapping values are not allowed here"),
        ("a: 'x\n", "invalid YAML at line 2, column 1: found unexpected end of stream"),
        ("", "the config file is empty"),
        ("# only a comment\n", "the config file is empty"),
        ("- timezone\n", "the top level must be a mapping of keys"),
    ],
)
def test_bad_yaml_is_a_config_error_with_line_and_column(tmp_path: Path, text: str, expected: str) -> None:
    (problem,) = problems(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'config.yaml'}: {expected}")


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes("timezone: Европа\n".encode("cp1251"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text .*save the file as UTF-8"):
        load_config(path, ENV)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, minimal())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_config(path, ENV).timezone == "Europe/Moscow"


# --- the domain's rules ----------------------------------------------------------------------


@pytest.mark.parametrize("net", [True, False])
def test_bonus_rules(tmp_path: Path, net: bool) -> None:
    config = load(tmp_path, YAML_TEXT)
    assert config.bonus_rules(lines_net_of_points=net) == BonusRules(
        tiers=(
            Tier("silver", "Серебряный", Decimal(0), Decimal("0.03")),
            Tier("gold", "Золотой", Decimal("30000.50"), Decimal("0.035")),
        ),
        point_value=Decimal("0.1"),
        point_precision=0,
        hold_days=14,
        expiry_days=365,
        expiry_warning_days=7,
        max_redeem_share=Decimal("0.3"),
        default_coefficient=Decimal("1.10"),
        groups={
            "Одежда": Decimal("1.5"),
            "Велосипеды": Decimal(1),
            "Распродажа": Decimal(0),
            "Мелочи": Decimal("0.07"),
        },
        volume_window_days=None,
        lines_net_of_points=net,
    )


def test_bonus_rules_carry_the_additions(tmp_path: Path) -> None:
    data = edit(edit(minimal(), "bonus.point_precision", 2), "bonus.volume_window_days", 365)
    rules = load(tmp_path, data).bonus_rules()
    assert (rules.point_precision, rules.volume_window_days) == (2, 365)
    assert rules.coefficient("Нет такой") == Decimal(1)


def test_discount_rules(tmp_path: Path) -> None:
    config = load(tmp_path, edit(minimal(), "discount.period_days", 180))
    assert config.discount_rules() == DiscountRules(
        levels=(
            Level("base", "Новичок", Decimal(0), Decimal(0), None),
            Level("fan", "Фанат животных", Decimal(10000), Decimal(5), 180),
        ),
        period_days=180,
    )


def test_disabled_discount_gives_no_rules(tmp_path: Path) -> None:
    config = load(tmp_path, edit(minimal(), "discount.enabled", False))
    assert not config.discount_enabled
    with pytest.raises(ConfigError, match="discount: the discount program is not enabled"):
        config.discount_rules()


# --- helpers on the sections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "opened_as"),
    [
        ("postgresql://bridge@db/loyalty", "postgresql+psycopg://bridge@db/loyalty"),
        ("postgresql+psycopg://bridge@db/loyalty", "postgresql+psycopg://bridge@db/loyalty"),
        ("sqlite:////var/lib/lb/state.db", "sqlite:////var/lib/lb/state.db"),
    ],
)
def test_state_url_opens_postgresql_with_psycopg3(tmp_path: Path, url: str, opened_as: str) -> None:
    config = load(tmp_path, edit(minimal(), "state.url", url))
    assert config.state.sqlalchemy_url.render_as_string() == opened_as


@pytest.mark.parametrize(
    ("listen", "address"),
    [(None, None), ("127.0.0.1:9108", ("127.0.0.1", 9108)), ("[::1]:9100", ("::1", 9100))],
)
def test_http_listen_address(tmp_path: Path, listen: str | None, address: tuple[str, int] | None) -> None:
    assert load(tmp_path, edit(minimal(), "http.listen", listen)).http.address == address


def test_config_from_data_validates_like_a_file(tmp_path: Path) -> None:
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "ut11.yaml").write_text("version: 1\n", encoding="utf-8")
    config = config_from_data(MINIMAL, config_path=tmp_path / "builtin.yaml", environ=ENV)
    assert config.mapping_path == tmp_path / "mappings" / "ut11.yaml"
    with pytest.raises(ConfigError) as caught:
        config_from_data(edit(minimal(), "bonus.hold_dayz", 1), config_path=tmp_path / "x.yaml", environ=ENV)
    assert caught.value.problems[0].startswith("bonus.hold_dayz: unknown key (did you mean bonus.hold_days?)")


def _plain(data: Any) -> Any:
    """Data with ``Decimal`` as text, for ``yaml.safe_dump``."""
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    return str(data) if isinstance(data, Decimal) else data
