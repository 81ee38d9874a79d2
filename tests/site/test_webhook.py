"""``WebhookSender`` over real HTTP against ``SiteReceiver``: headers, signatures, classification."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import replace
from datetime import timedelta

import pytest
import structlog
from standardwebhooks.webhooks import Webhook

from bridge.errors import ConfigError, FatalHTTPError, TransientError
from bridge.simulator.site import SiteReceiver
from bridge.site.signing import serialize
from bridge.site.webhook import WebhookSender
from bridge.store import outbox
from tests.site.site_kit import OLD_SECRET, SECRET, T0, body_for


def message(customer_id: str = "c1", sequence: int = 1, msg_id: str = "msg_0001") -> outbox.OutboxMessage:
    return outbox.OutboxMessage(
        id=1,
        message_id=msg_id,
        channel="webhook",
        kind="customer.updated",
        customer_id=customer_id,
        target=None,
        sequence=sequence,
        payload={"body": body_for(customer_id, T0, sequence)},
        status=outbox.PENDING,
        attempts=0,
        created_at=T0,
        next_attempt_at=T0,
    )


def test_delivers_a_verified_call_with_the_contract_headers(site: SiteReceiver) -> None:
    msg = message()
    WebhookSender(site.url, SECRET).send(msg)
    (got,) = site.deliveries
    assert got.verified and got.status == 200
    assert got.content_type == "application/json"
    assert got.webhook_id == "msg_0001"
    assert abs(got.timestamp - time.time()) < 5  # type: ignore[operator]
    assert got.body == serialize(msg.payload["body"])  # exactly the signed bytes
    # the independent library accepts what the site received
    headers = {"webhook-id": got.webhook_id, "webhook-timestamp": str(got.timestamp)}
    parsed = Webhook(SECRET).verify(got.body, {**headers, "webhook-signature": got.signature})
    assert parsed == msg.payload["body"]
    assert site.latest("c1") == msg.payload["body"]["data"]


def test_timestamp_is_the_real_clock_not_the_cycle_clock(site: SiteReceiver) -> None:
    # the cycle may run "as of" 2026-03-01 (--now); the header still carries the sender's clock
    with pytest.raises(FatalHTTPError):
        WebhookSender(site.url, SECRET, clock=lambda: 1_700_000_000.9).send(message())
    (got,) = site.deliveries
    assert got.timestamp == 1_700_000_000
    assert not got.verified and got.status == 401  # a site rejects a stale timestamp


@pytest.mark.parametrize("site_secret", [SECRET, OLD_SECRET], ids=["new", "old"])
def test_rotation_either_secret_verifies(site_secret: str) -> None:
    with SiteReceiver(site_secret) as site:
        WebhookSender(site.url, SECRET, previous_secret=OLD_SECRET).send(message())
        (got,) = site.deliveries
        assert got.verified and got.status == 200
        assert len(got.signature.split(" ")) == 2


def test_wrong_secret_is_a_401_and_dead(site: SiteReceiver) -> None:
    with pytest.raises(FatalHTTPError) as info:
        WebhookSender(site.url, OLD_SECRET).send(message())
    assert info.value.status == 401


def test_same_webhook_id_and_same_body_on_every_retry(site: SiteReceiver) -> None:
    sender = WebhookSender(site.url, SECRET)
    msg = message(msg_id="msg_same")
    site.down(until=2)
    for _ in range(2):
        with pytest.raises(TransientError):
            sender.send(msg)
    sender.send(msg)
    calls = site.deliveries
    assert [c.webhook_id for c in calls] == ["msg_same"] * 3
    assert [c.attempt for c in calls] == [1, 2, 3]
    assert [c.status for c in calls] == [503, 503, 200]
    assert len({c.body for c in calls}) == 1
    assert all(c.verified for c in calls)
    assert len(site.effective) == 1


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_transient(site: SiteReceiver, code: int) -> None:
    site.status(code)
    with pytest.raises(TransientError) as info:
        WebhookSender(site.url, SECRET).send(message())
    assert info.value.fields["status"] == code


def test_retry_after_is_carried_on_the_error(site: SiteReceiver) -> None:
    site.status(429)
    site.retry_after(120)
    with pytest.raises(TransientError) as info:
        WebhookSender(site.url, SECRET).send(message())
    assert info.value.retry_after == 120


@pytest.mark.parametrize("code", [400, 404, 410, 422])
def test_other_4xx_are_fatal(site: SiteReceiver, code: int) -> None:
    site.status(code)
    with pytest.raises(FatalHTTPError) as info:
        WebhookSender(site.url, SECRET).send(message())
    assert info.value.status == code


def test_a_redirect_is_fatal_not_followed(site: SiteReceiver) -> None:
    site.status(308)
    with pytest.raises(FatalHTTPError, match=r"site\.webhook_url"):
        WebhookSender(site.url, SECRET).send(message())
    assert len(site.deliveries) == 1


def test_a_slow_site_times_out_as_transient(site: SiteReceiver) -> None:
    site.delay(1.0)
    started = time.monotonic()
    with pytest.raises(TransientError):
        WebhookSender(site.url, SECRET, timeout_s=0.2).send(message())
    assert time.monotonic() - started < 0.9


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientError):
        WebhookSender(f"http://127.0.0.1:{port}/hook", SECRET, timeout_s=1).send(message())


def test_a_message_without_a_body_is_fatal(site: SiteReceiver) -> None:
    broken = replace(message(), payload={})
    with pytest.raises(FatalHTTPError, match="no webhook body"):
        WebhookSender(site.url, SECRET).send(broken)
    assert site.deliveries == []


def test_a_bad_secret_is_a_config_error_naming_the_key_not_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        WebhookSender("http://127.0.0.1:1/hook", "whsec_%%%secret-value%%%", previous_secret="also bad!")
    text = str(info.value)
    assert "site.secret_env" in text and "site.previous_secret_env" in text
    assert "secret-value" not in text and "also bad" not in text


def test_the_secret_never_reaches_logs_errors_or_repr(site: SiteReceiver) -> None:
    sender = WebhookSender(site.url, SECRET, previous_secret=OLD_SECRET)
    site.status(503)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(TransientError) as info:
            sender.send(message())
        sender.send(message())
    dumped = json.dumps(logs, default=str) + str(info.value) + repr(info.value.fields) + repr(sender)
    for secret in (SECRET, OLD_SECRET):
        assert secret not in dumped
        assert secret.removeprefix("whsec_") not in dumped
    assert any(entry.get("webhook_id") == "msg_0001" for entry in logs)


def test_receiver_drops_an_older_sequence_arriving_late(site: SiteReceiver) -> None:
    sender = WebhookSender(site.url, SECRET)
    newer, older = message(sequence=2, msg_id="msg_2"), message(sequence=1, msg_id="msg_1")
    sender.send(newer)
    sender.send(older)  # acknowledged (2xx) but ignored by the site
    assert site.latest("c1")["sequence"] == 2  # type: ignore[index]
    assert [d.webhook_id for d in site.dropped] == ["msg_1"]
    assert [d.status for d in site.deliveries] == [200, 200]


def test_receiver_treats_webhook_id_as_idempotency_key(site: SiteReceiver) -> None:
    sender = WebhookSender(site.url, SECRET)
    sender.send(message(msg_id="msg_dup"))
    sender.send(message(msg_id="msg_dup"))  # e.g. a manual `outbox retry` of a delivered message
    assert len(site.deliveries) == 2 and len(site.effective) == 1
    assert site.attempts("msg_dup") == 2
    assert site.dropped == []


def test_receiver_down_until_a_condition(site: SiteReceiver) -> None:
    clock = {"now": T0}
    back_at = T0 + timedelta(days=3)
    site.down(until=lambda: clock["now"] >= back_at)
    sender = WebhookSender(site.url, SECRET)
    with pytest.raises(TransientError):
        sender.send(message())
    clock["now"] = back_at
    sender.send(message())
    site.down()
    with pytest.raises(TransientError):
        sender.send(message())
    site.up()
    sender.send(message())
