"""Notifications through the whole cycle: a real local SMS gateway (HTTP) and a real SMTP server
(aiosmtpd) on loopback. Each message is sent once, names its figure, and never goes to a customer
without that contact."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.e2e.cycle_kit import MSK, world

BIKE = "Велосипед городской Forward Dortmund 28 2.0"


def t(m: int, d: int, h: int = 12) -> datetime:
    return datetime(2026, m, d, h, tzinfo=MSK)


class Gateway:
    """An SMS gateway: records every POST, answers 200."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append(json.loads(body))
                outer.headers.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/send"

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.letters: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.letters.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port, ready_timeout=5.0)
    controller.start()
    yield box, port
    controller.stop()


def test_accrual_and_availability_are_sent_once_by_sms_and_email(
    tmp_path: Path, smtp: tuple[Mailbox, int]
) -> None:
    box, port = smtp
    with Gateway() as gateway:
        notify = {
            "shop_name": "Велосклад",
            "sms": {"url": gateway.url, "token_env": "SMS_TOKEN", "sender": "VELO"},
            "email": {
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "from": "shop@example.ru",
                "starttls": False,
            },
        }
        with world(tmp_path, start=t(3, 1), discount=None, notify=notify, env={"SMS_TOKEN": "tok-123"}) as w:
            both = w.op.partner("Соколов Дмитрий Андреевич", phone="+7 (916) 123-45-67", email="d@example.ru")
            nothing = w.op.partner("Безконтактный Пётр")
            for who in (both, nothing):
                w.op.order(who, [(BIKE, 1, 20000)], date=t(3, 1, 10), status="Закрыт")
            w.once(t(3, 1, 12))
            for _ in range(2):
                w.once(t(3, 1, 13))  # nothing new: nothing sent again
            texts = [m["text"] for m in gateway.received]
            accrued = [x for x in texts if "начислено 400 бонусов" in x]
            assert len(accrued) == 1 and "15.03.2026" in accrued[0] and "Велосклад" in accrued[0]
            assert all(m["to"] == "+79161234567" and m["sender"] == "VELO" for m in gateway.received)
            assert gateway.headers[0]["Authorization"] == "Bearer tok-123"
            subjects = [str(make_header(decode_header(letter["Subject"]))) for letter in box.letters]
            assert len(box.letters) == len(subjects) >= 1
            assert all(letter["To"] == "d@example.ru" for letter in box.letters)
            before = (len(gateway.received), len(box.letters))
            w.once(t(3, 15, 13))  # the hold is over
            assert len(gateway.received) > before[0]
            assert any(
                "400" in m["text"] and "доступн" in m["text"].lower() for m in gateway.received[before[0] :]
            )
            w.once(t(3, 15, 14))
            assert len(gateway.received) == len({json.dumps(m, sort_keys=True) for m in gateway.received})
