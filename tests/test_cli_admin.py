"""What a new administrator meets first: every command reports the same config problems, state the
service user cannot write, a `poll.start` far in the past, secrets only where they are used."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge.cli import main
from tests.test_cli import CONFIG, REPO


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONEC_PASSWORD", "secret")
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "state.db", mapping=REPO / "mappings" / "ut11.yaml"), "utf-8")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", [["check"], ["once"], ["db", "upgrade"], ["outbox"]])
def test_a_public_http_listen_is_refused_by_every_command(config_file: Path, command: list[str]) -> None:
    config_file.write_text(config_file.read_text("utf-8") + 'http: {listen: "0.0.0.0:9108"}\n', "utf-8")
    code, _, err = run(*command, "--config", str(config_file))
    assert code == 78, err
    assert "config: http.listen: 0.0.0.0 is not a loopback address" in err


SITE = "site: {webhook_url: 'https://shop.example/loyalty/webhook', secret_env: SITE_WEBHOOK_SECRET}\n"


@pytest.mark.parametrize(
    "command",
    [["db", "upgrade"], ["customer", "x"], ["quote", "1000"], ["outbox"], ["outbox", "retry", "--all-dead"]],
    ids=lambda c: " ".join(c),
)
def test_commands_that_contact_nothing_need_no_secrets(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    config_file.write_text(config_file.read_text("utf-8") + SITE, "utf-8")
    monkeypatch.setenv("ONEC_PASSWORD", "secret")
    assert run("db", "upgrade", "--config", str(config_file))[0] == 0
    monkeypatch.delenv("ONEC_PASSWORD")
    monkeypatch.delenv("SITE_WEBHOOK_SECRET", raising=False)
    code, _, err = run(*command, "--config", str(config_file))
    assert code != 78 and "config:" not in err, err


@pytest.mark.parametrize("command", [["once"], ["check"], ["backfill", "--from", "2026-01-01"]])
def test_commands_that_contact_1c_or_the_site_still_need_their_secrets(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    config_file.write_text(config_file.read_text("utf-8") + SITE, "utf-8")
    monkeypatch.delenv("ONEC_PASSWORD")
    monkeypatch.delenv("SITE_WEBHOOK_SECRET", raising=False)
    code, _, err = run(*command, "--config", str(config_file))
    assert code == 78
    assert err.splitlines() == [
        "loyalty-bridge: config: onec.password_env: environment variable ONEC_PASSWORD is not set or is "
        "empty, and the 1C connection needs it; set ONEC_PASSWORD in the service's environment "
        "(e.g. the systemd unit's EnvironmentFile)",
        "loyalty-bridge: config: site.secret_env: environment variable SITE_WEBHOOK_SECRET is not set or "
        "is empty, and signing the webhook needs it; set SITE_WEBHOOK_SECRET in the service's environment "
        "(e.g. the systemd unit's EnvironmentFile)",
    ]


def test_demo_without_keep_leaves_no_folder_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, out, err = run("demo")
    assert code == 0, err
    assert "all verified: True" in out
    assert list(tmp_path.iterdir()) == []


def test_alembic_says_nothing_at_info(tmp_path: Path) -> None:
    import io

    from bridge.runtime.logging import configure_logging
    from bridge.store.db import make_engine, require_current, upgrade

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade(engine)
    require_current(engine)
    assert "alembic" not in stream.getvalue()


def test_outbox_retry_with_nothing_dead(config_file: Path) -> None:
    assert run("db", "upgrade", "--config", str(config_file))[0] == 0
    code, out, err = run("outbox", "retry", "--all-dead", "--config", str(config_file))
    assert (code, out, err) == (0, "nothing to retry: no dead messages\n", "")
    code, out, err = run("outbox", "retry", "msg_nope", "--config", str(config_file))
    assert code == 1
    assert (
        err
        == "loyalty-bridge: outbox: no dead message msg_nope to retry (`loyalty-bridge outbox` lists them)\n"
    )
