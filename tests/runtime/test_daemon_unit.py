"""The systemd unit shipped in packaging/: the directives the daemon's promises depend on."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
UNIT = PACKAGING / "loyalty-bridge.service"


def parse() -> configparser.ConfigParser:
    # strict=False: systemd allows a key several times (SystemCallFilter=, Environment=).
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_the_service_section_keeps_the_daemons_promises() -> None:
    service = parse()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecStart"] == (
        "/opt/loyalty-bridge/venv/bin/loyalty-bridge run --config /etc/loyalty-bridge/config.yaml"
    )
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "78"
    assert service["StateDirectory"] == "loyalty-bridge"
    assert service["User"] == "loyalty-bridge" and "DynamicUser" not in service
    assert service["EnvironmentFile"] == "/etc/loyalty-bridge/secrets.env"
    watchdog, stop = int(service["WatchdogSec"]), int(service["TimeoutStopSec"])
    # One call to 1C may retry for ~2.5 min (deadline 120 s + a 30 s timeout): the document in hand
    # must have time to finish, and a cycle that pings between documents must not be shot.
    assert stop >= 180 and watchdog >= 180


def test_the_service_is_hardened() -> None:
    service = parse()["Service"]
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
    }
    assert {key: service.get(key) for key in expected} == expected
    filters = [
        line.split("=", 1)[1]
        for line in UNIT.read_text(encoding="utf-8").splitlines()
        if line.startswith("SystemCallFilter=")
    ]
    assert "@system-service" in filters


def test_install_section_and_network_ordering() -> None:
    unit = parse()
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]
    assert "network-online.target" in unit["Unit"]["Wants"]


def test_the_secrets_example_names_the_default_env_variables() -> None:
    text = (PACKAGING / "loyalty-bridge.env.example").read_text(encoding="utf-8")
    for name in ("ONEC_PASSWORD", "SITE_WEBHOOK_SECRET", "SMS_TOKEN", "SMTP_PASSWORD", "PGPASSWORD"):
        assert f"{name}=" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_finds_nothing_but_the_missing_binary(tmp_path: Path) -> None:
    copy = tmp_path / "loyalty-bridge.service"
    copy.write_text(UNIT.read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=30, check=False
    )
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        # only what it says about this file (not about the host it runs on)
        if "loyalty-bridge.service" in line and "/opt/loyalty-bridge/venv/bin/loyalty-bridge" not in line
    ]
    assert complaints == []
