"""The CLI as administrators use it: real config files, a real SQLite state, sysexits codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.domain.model import OrderStatus
from bridge.service.wiring import build_engine, load
from tests.domain.factories import at, line, order

REPO = Path(__file__).resolve().parents[1]
CONFIG = """\
timezone: Europe/Moscow
state: {{url: "sqlite:///{db}"}}
onec:
  odata_url: http://1c.example/ut11/odata/standard.odata
  username: bridge
  password_env: ONEC_PASSWORD
  mapping: {mapping}
poll: {{start: 2026-01-01T00:00:00}}
bonus:
  groups: {{apparel: 1.5, sale: 0}}
  tiers:
    - {{code: silver, name: Серебряный, threshold: 0, rate: 0.02}}
    - {{code: gold, name: Золотой, threshold: 30000, rate: 0.03}}
    - {{code: platinum, name: Платиновый, threshold: 100000, rate: 0.05}}
    - {{code: vip, name: VIP, threshold: 300000, rate: 0.07}}
discount:
  levels:
    - {{code: base, name: Новичок, threshold: 0, percent: 0, term_days: null}}
    - {{code: fan, name: Фанат животных, threshold: 10000, percent: 5, term_days: 180}}
    - {{code: king, name: Царь зверей, threshold: 50000, percent: 10, term_days: 180}}
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONEC_PASSWORD", "secret\n")
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "state.db", mapping=REPO / "mappings" / "ut11.yaml"), "utf-8")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_db_upgrade_then_customer_report(config_file: Path) -> None:
    code, out, _ = run("db", "upgrade", "--config", str(config_file))
    assert code == 0 and "revision" in out
    engine = build_engine(load(config_file))
    engine.apply_order(order("a", "dmitry", [line(25000)]), at(2026, 1, 5))
    engine.apply_order(order("b", "dmitry", [line(5000, group="sale")]), at(2026, 1, 6))
    engine.apply_order(
        order("j", "dmitry", [line(14200, group="apparel")], redeem=500, status=OrderStatus.CLOSED),
        at(2026, 3, 2),
    )
    code, out, err = run("customer", "dmitry", "--config", str(config_file), "--now", "2026-03-02T13:00:00")
    assert code == 0, err
    assert "Золотой (gold)" in out and "total 639, available 0, pending 639" in out
    code, out, _ = run(
        "customer", "dmitry", "--json", "--config", str(config_file), "--now", "2026-03-02T13:00:00"
    )
    data = json.loads(out)
    assert data["bonus"]["tier"] == {"code": "gold", "name": "Золотой"}
    assert (data["bonus"]["total"], data["bonus"]["available"], data["bonus"]["pending"]) == (
        "639",
        "0",
        "639",
    )
    assert data["bonus"]["volume"] == "44200.00"
    assert data["discount"]["level"]["code"] == "fan"
    card = data["customer"]["card_number"]
    assert card.startswith("2990") and len(card) == 13
    code, out2, _ = run(
        "customer", card, "--json", "--config", str(config_file), "--now", "2026-03-02T13:00:00"
    )
    assert code == 0 and json.loads(out2)["customer"]["id"] == "dmitry"


def test_unknown_customer_exits_1_with_a_clear_line(config_file: Path) -> None:
    run("db", "upgrade", "--config", str(config_file))
    code, _, err = run("customer", "nobody", "--config", str(config_file))
    assert code == 1 and "customer 'nobody'" in err


def test_quote_per_tier_and_for_guests(config_file: Path) -> None:
    code, out, _ = run("quote", "14700:apparel", "--json", "--config", str(config_file))
    assert code == 0
    data = json.loads(out)
    assert [t["points"] for t in data["by_tier"]] == ["441", "661", "1102", "1543"]
    assert data["guest_up_to"] == "1543"


def test_quote_with_points_redeemed(config_file: Path) -> None:
    code, out, _ = run("quote", "14700:apparel", "--redeem", "500", "--json", "--config", str(config_file))
    assert code == 0
    assert json.loads(out)["by_tier"][1]["points"] == "639"  # SPEC example 1 from the gross price


def test_bad_config_exits_78_naming_every_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEC_PASSWORD", raising=False)
    path = tmp_path / "config.yaml"
    text = CONFIG.format(db=tmp_path / "s.db", mapping="m.yaml").replace("Europe/Moscow", "Europe/Moskva")
    path.write_text(text.replace("rate: 0.03", "rate: 3"), "utf-8")
    code, _, err = run("check", "--config", str(path))
    assert code == 78
    assert "timezone" in err and "bonus.tiers[1].rate" in err and "ONEC_PASSWORD" in err
    assert all(line.startswith("loyalty-bridge: config: ") for line in err.strip().splitlines())


def test_state_not_migrated_exits_78_saying_what_to_run(config_file: Path) -> None:
    code, _, err = run("customer", "x", "--config", str(config_file))
    assert code == 78 and "loyalty-bridge db upgrade" in err


def test_unusable_state_path_exits_69(config_file: Path, tmp_path: Path) -> None:
    text = config_file.read_text("utf-8").replace(str(tmp_path / "state.db"), "/nonexistent/dir/state.db")
    config_file.write_text(text, "utf-8")
    code, _, err = run("db", "upgrade", "--config", str(config_file))
    assert code == 69 and "/nonexistent/dir" in err


def test_bad_now_is_a_usage_error(config_file: Path) -> None:
    run("db", "upgrade", "--config", str(config_file))
    code, _, err = run("customer", "x", "--now", "yesterday", "--config", str(config_file))
    assert code == 2 and "ISO-8601" in err


def test_config_from_environment_variable(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALTY_BRIDGE_CONFIG", str(config_file))
    code, out, _ = run("db", "upgrade")
    assert code == 0 and "revision" in out


def test_demo_runs_on_a_fresh_machine(tmp_path: Path) -> None:
    code, out, err = run("demo", "--keep", str(tmp_path / "demo"))
    assert code == 0, err
    assert "Доступно 0 бонусов, запрошено 100" in out  # a redemption refused
    assert "spent 500, earned 639" in out  # SPEC example 1, through 1C
    assert "level discount 5 % → 2850" in out  # a level promotion, its discount on an open order
    assert "all verified: True" in out
    assert (tmp_path / "demo" / "state.db").exists()


def test_demo_plays_the_story_with_the_programs_of_a_given_config(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``demo --config``: that file's programs (no group matches the simulator's folders, levels
    from 10 000) on the demo's own 1C, state and site; the file's 1C secret is not needed."""
    monkeypatch.delenv("ONEC_PASSWORD")
    code, out, err = run("demo", "--config", str(config_file), "--keep", str(tmp_path / "demo"))
    assert code == 0, err
    assert f"from {config_file}" in out
    # (14 700 − its 5 % level discount − 500 points) × 3 %: no coefficient, the group does not match
    assert "spent 500, earned 403" in out
    assert "level Фанат животных" in out and "Король дорог" not in out
    assert not (tmp_path / "state.db").exists()  # the file's state database is not touched


def test_demo_with_a_bad_config_exits_78_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("bonus:\n  tiers:\n    - {code: silver, name: S, threshold: 0, rate: -1}\n", "utf-8")
    code, _, err = run("demo", "--config", str(path))
    assert code == 78
    assert "bonus.tiers[0].rate" in err
    code, _, err = run("demo", "--config", str(tmp_path / "missing.yaml"))
    assert code == 78 and "config file not found" in err


def test_python_dash_m_is_the_same_cli() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "bridge", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "customer" in done.stdout


def test_config_and_mapping_problems_come_in_one_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new administrator adapting both files sees every problem of both at once, not the
    # mapping's only after the config is fixed.
    monkeypatch.setenv("ONEC_PASSWORD", "x")
    mapping = (REPO / "mappings" / "ut11.yaml").read_text("utf-8")
    mapping = mapping.replace("    field: Статус\n", "    feild: Статус\n")
    (tmp_path / "m.yaml").write_text(mapping, "utf-8")
    text = CONFIG.format(db=tmp_path / "s.db", mapping="m.yaml").replace("Europe/Moscow", "Europe/Moskva")
    (tmp_path / "config.yaml").write_text(text, "utf-8")
    code, _, err = run("check", "--config", str(tmp_path / "config.yaml"))
    assert code == 78
    assert "timezone" in err and "m.yaml" in err and "orders.status.feild" in err, err
    # A config that names no usable mapping file reports only its own problems.
    (tmp_path / "config.yaml").write_text(text.replace("m.yaml", "missing.yaml"), "utf-8")
    code, _, err = run("check", "--config", str(tmp_path / "config.yaml"))
    assert code == 78 and "timezone" in err and "feild" not in err, err
