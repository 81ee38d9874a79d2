"""``SmsSender`` over real HTTP against a tiny gateway on 127.0.0.1: the request on the wire, and how
every kind of answer (or none) is classified by ``bridge.net``'s one policy."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import structlog

from bridge.errors import FatalHTTPError, TransientError
from bridge.net import OutcomeUnknownError
from bridge.notify.recipients import UndeliverableError
from bridge.notify.sms import SmsSender
from tests.notify.notify_kit import outbox_message

TOKEN = "sms-token-Zq81xT"
TEXT = "Магазин: начислено 639 бонусов, доступны с 16.03.2026."
PAYLOAD = {"to": "+79161234567", "text": TEXT, "sender": "SHOP"}


@dataclass
class Answer:
    status: int = 200
    body: str = '{"status": "queued"}'
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Gateway:
    """An SMS gateway on loopback that records requests and gives scripted answers (200 by default)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.answers: list[Answer] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                gateway.requests.append(Received("POST", self.path, dict(self.headers.items()), body))
                answer = gateway.answers.pop(0) if gateway.answers else Answer()
                time.sleep(answer.delay_s)
                data = answer.body.encode("utf-8")
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # do not wait for a handler still sleeping (timeout tests)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/send"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with Gateway() as gw:
        yield gw


def sender(url: str, timeout_s: float = 5.0) -> SmsSender:
    return SmsSender(url, TOKEN, "SHOP", timeout_s=timeout_s)


def send(gateway: Gateway, payload: dict[str, Any] | None = None, **kwargs: Any) -> None:
    sender(gateway.url, **kwargs).send(outbox_message("sms", payload or dict(PAYLOAD)))


def test_posts_json_with_bearer_token(gateway: Gateway) -> None:
    send(gateway)
    (req,) = gateway.requests
    assert req.path == "/api/send"
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Idempotency-Key"] == "msg_0001"
    assert json.loads(req.body.decode("utf-8")) == PAYLOAD


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_sent(gateway: Gateway, status: int) -> None:
    gateway.answers.append(Answer(status, body="" if status == 204 else "ok"))
    send(gateway)


def test_the_configured_sender_fills_a_payload_without_one(gateway: Gateway) -> None:
    send(gateway, {"to": "+79161234567", "text": TEXT})
    assert json.loads(gateway.requests[0].body)["sender"] == "SHOP"


@pytest.mark.parametrize("status", [500, 502, 504])
def test_5xx_is_transient_but_may_have_been_sent(gateway: Gateway, status: int) -> None:
    gateway.answers.append(Answer(status, body="gateway trouble"))
    with pytest.raises(OutcomeUnknownError) as caught:
        send(gateway)
    assert isinstance(caught.value, TransientError)
    assert caught.value.fields["status"] == status and caught.value.fields["message_id"] == "msg_0001"


@pytest.mark.parametrize("status", [408, 503])
def test_answers_that_prove_nothing_was_sent_are_plainly_transient(gateway: Gateway, status: int) -> None:
    gateway.answers.append(Answer(status))
    with pytest.raises(TransientError) as caught:
        send(gateway)
    assert not isinstance(caught.value, OutcomeUnknownError)


def test_429_honours_retry_after(gateway: Gateway) -> None:
    gateway.answers.append(Answer(429, body="slow down", headers={"Retry-After": "7"}))
    with pytest.raises(TransientError) as caught:
        send(gateway)
    assert caught.value.retry_after == 7.0
    assert not isinstance(caught.value, OutcomeUnknownError)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_is_fatal(gateway: Gateway, status: int) -> None:
    gateway.answers.append(Answer(status, body='{"error": "invalid number"}'))
    with pytest.raises(FatalHTTPError) as caught:
        send(gateway)
    assert caught.value.status == status
    assert "invalid number" in caught.value.body


def test_a_redirect_is_not_followed_and_not_sent(gateway: Gateway) -> None:
    gateway.answers.append(Answer(302, headers={"Location": "/elsewhere"}))
    with pytest.raises(FatalHTTPError) as caught:
        send(gateway)
    assert caught.value.status == 302 and len(gateway.requests) == 1


def test_gateway_down_is_transient_and_nothing_was_sent() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError) as caught:
        sender(f"http://127.0.0.1:{port}/send").send(outbox_message("sms", dict(PAYLOAD)))
    assert not isinstance(caught.value, OutcomeUnknownError)


def test_read_timeout_is_transient_and_explicit(gateway: Gateway) -> None:
    gateway.answers.append(Answer(200, delay_s=1.0))
    started = time.monotonic()
    with pytest.raises(OutcomeUnknownError):
        send(gateway, timeout_s=0.2)
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize("phone", ["89161234567", "+7 916 123-45-67", "", None, "+0123456789", 79161234567])
def test_a_recipient_not_in_e164_is_undeliverable_and_nothing_is_sent(gateway: Gateway, phone: Any) -> None:
    with pytest.raises(UndeliverableError) as caught:
        send(gateway, {**PAYLOAD, "to": phone})
    assert isinstance(caught.value, FatalHTTPError)
    assert "E.164" in str(caught.value) and gateway.requests == []


def test_an_empty_text_is_fatal_and_nothing_is_sent(gateway: Gateway) -> None:
    with pytest.raises(FatalHTTPError):
        send(gateway, {**PAYLOAD, "text": "  "})
    assert gateway.requests == []


def test_the_token_never_shows(gateway: Gateway) -> None:
    url = gateway.url + "?apikey=query-secret-9"
    errors: list[BaseException] = []
    gateway.answers += [Answer(500, body="boom"), Answer(400, body="bad"), Answer(200, delay_s=1.0)]
    with structlog.testing.capture_logs() as logs:
        for timeout_s in (5.0, 5.0, 0.2):
            with pytest.raises((TransientError, FatalHTTPError)) as caught:
                sender(url, timeout_s).send(outbox_message("sms", dict(PAYLOAD)))
            errors.append(caught.value)
        sender(url).send(outbox_message("sms", dict(PAYLOAD)))
    shown = [repr(sender(url)), repr(logs)]
    shown += [f"{e} {e!r} {getattr(e, 'fields', '')} {e.__cause__!r}" for e in errors]
    assert not any(TOKEN in text or "query-secret-9" in text for text in shown)
    assert any(log.get("event") == "sms sent" and log.get("to") == "+7916***4567" for log in logs)
