"""Signing and the body, checked against the independent ``standardwebhooks`` library and CONTRACT.md."""

from __future__ import annotations

import ast
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bridge.service.snapshot import snapshot_data
from bridge.site.signing import decode_secret, serialize, sign, signature_header, verify
from bridge.site.webhook import REASONS, build_body
from tests.site.site_kit import MSK, OLD_SECRET, SECRET, T0, body_for, view

CONTRACT_REASONS = {
    "points_accrued",
    "points_available",
    "points_redeemed",
    "points_released",
    "points_reversed",
    "points_expired",
    "points_expiring",
    "tier_changed",
    "level_changed",
    "level_recomputed",
    "card_created",
    "card_issued",
}


def _headers(msg_id: str, ts: int, body: bytes, secrets: list[str | None]) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header(secrets, msg_id, ts, body),
    }


def test_signature_matches_the_reference_library() -> None:
    body = serialize(body_for("c1", T0, 1))
    ts = 1_772_345_600
    reference = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(ts, UTC), body.decode("utf-8"))
    assert sign(SECRET, "msg_1", ts, body) == reference
    assert sign(SECRET, "msg_1", ts, body).startswith("v1,")


def test_the_reference_library_verifies_a_signed_body() -> None:
    body = serialize(body_for("c1", T0, 7))
    now = int(time.time())
    parsed = Webhook(SECRET).verify(body, _headers("msg_abc", now, body, [SECRET]))
    assert parsed["data"]["sequence"] == 7


@pytest.mark.parametrize("site_secret", [SECRET, OLD_SECRET], ids=["new", "old"])
def test_rotation_sends_two_signatures_either_verifies(site_secret: str) -> None:
    body = serialize(body_for("c1", T0, 1))
    now = int(time.time())
    headers = _headers("msg_rot", now, body, [SECRET, OLD_SECRET])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(site_secret).verify(body, headers)
    assert verify([site_secret], "msg_rot", now, body, headers["webhook-signature"], now=now)


def test_a_tampered_body_or_wrong_secret_fails() -> None:
    body = serialize(body_for("c1", T0, 1))
    now = int(time.time())
    headers = _headers("msg_x", now, body, [SECRET])
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"639", b"999"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(body, headers)
    assert not verify([SECRET], "msg_x", now - 301, body, headers["webhook-signature"], now=now)


def test_secret_prefix_and_padding_are_optional_and_garbage_is_refused() -> None:
    key = decode_secret(SECRET)
    assert decode_secret(SECRET.removeprefix("whsec_")) == key
    assert decode_secret(SECRET.rstrip("=")) == key
    for bad in ("", "whsec_", "whsec_not base64!"):
        with pytest.raises(ValueError) as info:
            decode_secret(bad)
        assert "base64" in str(info.value) or "empty" in str(info.value)
        assert "not base64!" not in str(info.value)  # the value itself is never repeated
    with pytest.raises(ValueError):
        signature_header([None, ""], "m", 1, b"{}")


def test_body_is_exactly_the_contract() -> None:
    body = body_for("c1", T0, 42, ("tier_changed", "points_accrued"))
    assert body == {
        "type": "customer.updated",
        "timestamp": "2026-03-01T12:00:00+03:00",
        "data": {
            "sequence": 42,
            "reasons": ["tier_changed", "points_accrued"],
            "customer": {"id": "c1", "card_number": "2990000000019", "card_status": "virtual"},
            "bonus": {
                "tier": {"code": "gold", "name": "Золотой"},
                "volume": "40000.00",
                "total": "639",
                "available": "0",
                "pending": "639",
                "next_available_at": "2026-03-15T12:00:00+03:00",
                "next_tier": {"code": "platinum", "missing": "60000.00"},
            },
            "discount": {
                "level": {"code": "fan", "name": "Фанат животных", "percent": "5"},
                "valid_until": "2026-07-31T00:00:00+03:00",
                "period_sum": "11000.00",
                "next_level": {"code": "king", "missing": "39000.00"},
            },
        },
    }
    assert list(body) == ["type", "timestamp", "data"]
    assert list(body["data"])[:2] == ["sequence", "reasons"]


def test_times_in_the_body_are_whole_seconds_on_a_clock_with_microseconds() -> None:
    """The real clock has microseconds; the body's times do not (CONTRACT.md's example form)."""
    now = T0.replace(microsecond=608648)
    data = snapshot_data(
        replace(view("c1", now), next_available_at=now + timedelta(days=14), valid_until=now), MSK
    )
    body = build_body(timestamp=now, tz=MSK, data=data, sequence=1, reasons=["points_accrued"])
    assert body["timestamp"] == "2026-03-01T12:00:00+03:00"
    assert body["data"]["bonus"]["next_available_at"] == "2026-03-15T12:00:00+03:00"
    assert body["data"]["discount"]["valid_until"] == "2026-03-01T12:00:00+03:00"


def test_serialisation_is_utf8_compact_and_stable() -> None:
    body = body_for("c1", T0, 1)
    raw = serialize(body)
    assert "Золотой".encode() in raw  # not \\u0417...
    assert b", " not in raw and b": " not in raw
    assert json.loads(raw) == body
    assert serialize(json.loads(raw)) == raw  # a JSON round trip (the outbox column) keeps the bytes


def test_body_refuses_what_the_contract_forbids() -> None:
    data = {"customer": {"id": "c1"}, "bonus": None, "discount": None}
    with pytest.raises(ValueError, match="unknown webhook reason"):
        build_body(timestamp=T0, data=data, sequence=1, reasons=["points_gifted"])
    with pytest.raises(ValueError, match="timezone-aware"):
        build_body(timestamp=datetime(2026, 3, 1, 12), data=data, sequence=1, reasons=[])
    with pytest.raises(ValueError, match="as strings"):
        build_body(timestamp=T0, data={**data, "bonus": {"total": 639.0}}, sequence=1, reasons=[])
    with pytest.raises(ValueError, match="positive integer"):
        build_body(timestamp=T0, data=data, sequence=0, reasons=[])
    body = build_body(timestamp=T0, tz=MSK, data=data, sequence=3, reasons=["card_created", "card_created"])
    assert body["data"]["reasons"] == ["card_created"]
    assert body["timestamp"] == "2026-03-01T12:00:00+03:00"


def test_reasons_are_the_contract_list() -> None:
    assert REASONS == CONTRACT_REASONS


def test_site_package_imports_no_forbidden_layer() -> None:
    forbidden = ("bridge.onec", "bridge.notify", "bridge.service")
    root = Path(__file__).resolve().parents[2] / "bridge" / "site"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_simulator_site_imports_nothing_of_the_bridge() -> None:
    path = Path(__file__).resolve().parents[2] / "bridge" / "simulator" / "site.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bridge"):
            assert node.module.startswith("bridge.simulator"), node.module
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("bridge") for a in node.names)
