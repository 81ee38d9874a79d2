"""Secrets: read from the environment named by ``*_env`` keys, required only when their feature is on,
stripped of surrounding whitespace, and never shown in ``repr``, ``str``, dumps or error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.runtime.config_kit import ENV, SECRET, edit, load, minimal, problems

SITE = {"webhook_url": "https://shop.example/loyalty/webhook"}
EMAIL = {"notify.email.smtp_host": "smtp.example.ru", "notify.email.from": "shop@example.ru"}


def _env(**changes: str | None) -> dict[str, str]:
    env = dict(ENV)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@pytest.mark.parametrize(
    ("raw", "stripped"),
    [("onec-pass\n", "onec-pass"), ("  onec-pass \r\n", "onec-pass"), ("\tp w\t", "p w")],
)
def test_secret_is_stripped_of_surrounding_whitespace(tmp_path: Path, raw: str, stripped: str) -> None:
    config = load(tmp_path, minimal(), _env(ONEC_PASSWORD=raw))
    assert config.onec.password.get_secret_value() == stripped


@pytest.mark.parametrize("value", [None, "", "  \n"], ids=["unset", "empty", "blank"])
def test_onec_password_is_always_required(tmp_path: Path, value: str | None) -> None:
    found = problems(tmp_path, minimal(), _env(ONEC_PASSWORD=value))
    assert found == [
        "onec.password_env: environment variable ONEC_PASSWORD is not set or is empty, and the 1C "
        "connection needs it; set ONEC_PASSWORD in the service's environment (e.g. the systemd unit's "
        "EnvironmentFile)"
    ]


def test_password_env_names_another_variable(tmp_path: Path) -> None:
    data = edit(minimal(), "onec.password_env", "UT_PASS")
    config = load(tmp_path, data, {"UT_PASS": "x1"})
    assert config.onec.password.get_secret_value() == "x1"


# (config edits, environment changes, problem paths expected)
FEATURE_SECRETS: list[tuple[dict[str, Any], dict[str, str | None], list[str]]] = [
    ({}, {"SITE_WEBHOOK_SECRET": None}, []),  # no site section: no webhook, no secret
    ({"site": SITE}, {"SITE_WEBHOOK_SECRET": None}, ["site.secret_env"]),
    ({"site": SITE}, {"SITE_WEBHOOK_SECRET": "not base64!"}, ["site.secret_env"]),
    ({"site": SITE}, {"SITE_WEBHOOK_SECRET": SECRET.removeprefix("whsec_")}, []),  # prefix optional
    ({"site": {**SITE, "previous_secret_env": "OLD_SECRET"}}, {}, ["site.previous_secret_env"]),
    ({"site": {**SITE, "previous_secret_env": "OLD_SECRET"}}, {"OLD_SECRET": SECRET + "\n"}, []),
    ({"notify.sms.url": None}, {}, []),  # SMS off: no token needed
    ({"notify.sms.url": "https://sms.example/send"}, {}, ["notify.sms.token_env"]),
    ({"notify.sms.url": "https://sms.example/send"}, {"SMS_TOKEN": "t"}, []),
    ({"notify.email.smtp_host": None, "notify.email.username": "shop"}, {}, []),  # e-mail off
    (EMAIL, {}, []),  # no login, no password
    (
        {**EMAIL, "notify.email.username": "u"},
        {},
        ["notify.email.password_env"],
    ),
    (
        {**EMAIL, "notify.email.username": "u"},
        {"SMTP_PASSWORD": "p"},
        [],
    ),
    ({"notify.email.smtp_host": "smtp.example.ru"}, {}, ["notify.email.from"]),
    ({"notify.email.from": "not-an-address"}, {}, ["notify.email.from"]),
]


@pytest.mark.parametrize(("edits", "env_changes", "paths"), FEATURE_SECRETS)
def test_a_secret_is_required_only_when_its_feature_is_on(
    tmp_path: Path, edits: dict[str, Any], env_changes: dict[str, str | None], paths: list[str]
) -> None:
    data = minimal()
    for path, value in edits.items():
        edit(data, path, value)
    env = _env(**env_changes)
    if paths:
        assert [p.split(":")[0] for p in problems(tmp_path, data, env)] == paths
    else:
        load(tmp_path, data, env)


def test_resolved_secrets_are_reachable_but_never_shown(tmp_path: Path) -> None:
    data = minimal()
    data["site"] = {**SITE, "previous_secret_env": "OLD_SECRET"}
    edit(data, "notify.sms.url", "https://sms.example/send")
    edit(data, "notify.email.smtp_host", "smtp.example.ru")
    edit(data, "notify.email.username", "shop")
    edit(data, "notify.email.from", "shop@example.ru")
    old = "whsec_" + "QUJD" * 8
    env = _env(OLD_SECRET=old, SMS_TOKEN="sms-token-777", SMTP_PASSWORD="smtp-pass-888")
    config = load(tmp_path, data, env)

    assert config.site is not None and config.site.previous_secret is not None
    assert config.site.secret.get_secret_value() == SECRET
    assert config.site.previous_secret.get_secret_value() == old
    assert (
        config.notify.sms.token is not None and config.notify.sms.token.get_secret_value() == "sms-token-777"
    )
    assert config.notify.email.password is not None
    assert config.notify.email.password.get_secret_value() == "smtp-pass-888"
    shown = " ".join(
        [repr(config), str(config), str(config.model_dump()), config.model_dump_json(), repr(config.site)]
    )
    for secret in (SECRET, old, "onec-pass-123", "sms-token-777", "smtp-pass-888"):
        assert secret not in shown
    assert "ONEC_PASSWORD" in shown  # the variable's name is shown, only its value is not


def test_a_value_under_an_env_key_is_never_echoed_in_errors(tmp_path: Path) -> None:
    data = edit(minimal(), "onec.password_env", "hunter2 is my password")
    (problem,) = problems(tmp_path, data)
    assert problem.startswith("onec.password_env: is not an environment variable name")
    assert "hunter2" not in problem
    data = edit(minimal(), "onec.password_env", ["hunter2"])
    (problem,) = problems(tmp_path, data)
    assert problem.startswith("onec.password_env: must be text;") and "hunter2" not in problem
