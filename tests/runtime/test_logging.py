"""Structured logs: JSON/console lines on stderr, bound context, and secrets redacted everywhere."""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from bridge.runtime import logging as bridge_logging
from bridge.runtime.logging import (
    REDACTED,
    bound_contextvars,
    config_secrets,
    configure_logging,
    get_logger,
    redact,
    register_secrets,
)
from tests.runtime.config_kit import ENV, SECRET, edit, load, minimal


@pytest.fixture(autouse=True)
def pristine_logging() -> Iterator[None]:
    secrets = bridge_logging._SECRETS._values
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    bridge_logging._SECRETS._values = secrets
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_redact_blanks_secret_named_keys_at_any_depth() -> None:
    event = redact(
        None,
        "info",
        {
            "event": "sending",
            "password": "p",
            "Authorization": "Bearer x",
            "site_secret": "whsec_x",
            "sms_token": "t",
            "token_env": "SMS_TOKEN",  # names a variable, not a secret
            "headers": {"authorization": "Basic abc", "Accept": "json"},
            "attempts": [{"api_key": "k"}, 3],
            "missing_token": None,
            "customer": "C-1",
        },
    )
    assert event == {
        "event": "sending",
        "password": REDACTED,
        "Authorization": REDACTED,
        "site_secret": REDACTED,
        "sms_token": REDACTED,
        "token_env": "SMS_TOKEN",
        "headers": {"authorization": REDACTED, "Accept": "json"},
        "attempts": [{"api_key": REDACTED}, 3],
        "missing_token": None,
        "customer": "C-1",
    }


def test_registered_secret_values_are_replaced_wherever_they_appear() -> None:
    register_secrets("pa55-Word-91", None, "  ")
    with capture_logs(processors=[redact]) as logs:
        get_logger().error(
            "login failed for http://bridge:pa55-Word-91@1c/odata",
            value="pa55-Word-91",
            nested={"note": ["x pa55-Word-91 y"]},
            error=ValueError("bad credentials pa55-Word-91"),
            count=1,
        )
    assert logs == [
        {
            "event": f"login failed for http://bridge:{REDACTED}@1c/odata",
            "value": REDACTED,
            "nested": {"note": [f"x {REDACTED} y"]},
            "error": f"bad credentials {REDACTED}",
            "count": 1,
            "log_level": "error",
        }
    ]


def test_real_json_output_has_timestamp_level_event_context_and_no_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json", secrets=["Zq9-secret-value"])
    log = get_logger(component="daemon")
    with bound_contextvars(cycle=7, doc="Заказ 0001", customer="c-42"):
        log.info("accrued", points=12, note="key Zq9-secret-value", password="hunter2")
        try:
            raise RuntimeError("1C said: Zq9-secret-value rejected")
        except RuntimeError:
            log.exception("document failed")
    log.debug("not shown at info")
    logging.getLogger("urllib3.connectionpool").warning("retrying with %s", "Zq9-secret-value")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Zq9-secret-value" not in captured.err and "hunter2" not in captured.err
    first, second, third = lines(captured.err)
    assert list(first)[:3] == ["timestamp", "level", "event"]
    assert datetime.fromisoformat(str(first["timestamp"])).utcoffset() is not None
    assert first["level"] == "info" and first["event"] == "accrued"
    assert (first["cycle"], first["doc"], first["customer"]) == (7, "Заказ 0001", "c-42")
    assert first["component"] == "daemon" and first["points"] == 12
    assert first["note"] == f"key {REDACTED}" and first["password"] == REDACTED
    assert second["level"] == "error" and "RuntimeError: 1C said: [REDACTED] rejected" in str(
        second["exception"]
    )
    assert third["logger"] == "urllib3.connectionpool" and third["event"] == f"retrying with {REDACTED}"


def test_console_format_is_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "console", secrets=["Kp2-other-secret"])
    get_logger().debug("connecting", url="http://u:Kp2-other-secret@host", cycle=1)
    err = capsys.readouterr().err
    assert "connecting" in err and "cycle=1" in err and "debug" in err
    assert "Kp2-other-secret" not in err and REDACTED in err
    assert not err.lstrip().startswith("{")


def test_reconfiguring_replaces_the_stdlib_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    configure_logging("warning", "json")
    logging.getLogger("alembic").warning("once")
    get_logger().info("filtered")
    assert [entry["event"] for entry in lines(capsys.readouterr().err)] == ["once"]


def test_bad_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError):
        configure_logging("verbose", "json")
    with pytest.raises(ValueError):
        configure_logging("info", "xml")


def test_config_secrets_collects_every_secret_a_config_holds() -> None:
    config = types.SimpleNamespace(
        onec=types.SimpleNamespace(password=SecretStr("onec-pw")),
        site=types.SimpleNamespace(secret=SecretStr("whsec_c2VjcmV0a2V5"), previous_secret=None),
        notify=types.SimpleNamespace(
            sms=types.SimpleNamespace(token=SecretStr("sms-token")),
            email=types.SimpleNamespace(password=None),
        ),
        state=types.SimpleNamespace(sqlalchemy_url=types.SimpleNamespace(password="db-pw")),
    )
    assert config_secrets(config) == ["onec-pw", "whsec_c2VjcmV0a2V5", "sms-token", "db-pw", "c2VjcmV0a2V5"]
    assert config_secrets(types.SimpleNamespace(site=None)) == []


def test_config_secrets_on_a_real_config(tmp_path: Path) -> None:
    data = edit(minimal(), "site", {"webhook_url": "https://shop.example/hook"})
    config = load(tmp_path, data, ENV)
    assert config_secrets(config) == ["onec-pass-123", SECRET, SECRET.removeprefix("whsec_")]
