"""1C not answering: one short line an administrator can act on (the entity set as 1C names it, the
host, why, what to check), not the percent-encoded URL twice."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
import urllib3.exceptions

from bridge.errors import UnavailableError
from bridge.net import RetryPolicy, short_reason
from bridge.onec.odata import ODataClient

MSK = ZoneInfo("Europe/Moscow")
ORDERS = "Document_ЗаказКлиента"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_1c_down_is_one_short_line_naming_the_set_the_host_and_what_to_check() -> None:
    port = closed_port()
    client = ODataClient(
        f"http://127.0.0.1:{port}/ut11/odata/standard.odata",
        "Администратор",
        "пароль",
        MSK,
        timeout_s=2,
        retry_policy=RetryPolicy(max_attempts=2, base_s=0.0, cap_s=0.0, deadline_s=None),
        sleep=lambda s: None,
    )
    start = datetime(2026, 1, 1, tzinfo=MSK)
    with pytest.raises(UnavailableError) as info:
        list(client.iter_windows(ORDERS, "Date", start, start + timedelta(days=30), timedelta(days=7)))
    text = str(info.value)
    assert ORDERS in text and f"127.0.0.1:{port}" in text and "connection refused" in text
    assert "is 1C / its web server up? check onec.odata_url" in text
    assert "%D0" not in text and len(text) < 300, text


def unresolved(cause: BaseException | None) -> requests.ConnectionError:
    gaierror = socket.gaierror(-2, "Name or service not known")
    reason = urllib3.exceptions.NameResolutionError("1c.local", None, gaierror)  # type: ignore[arg-type]
    reason.__cause__ = cause  # as urllib3 raises it: ``from`` the resolver's error
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", reason))  # type: ignore[arg-type]


def refused() -> requests.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] boom"
    )  # type: ignore[arg-type]
    reason.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", reason))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (
            unresolved(socket.gaierror(-2, "Name or service not known")),
            "host name not found (Name or service not known)",
        ),
        (unresolved(None), "host name not found"),
        (refused(), "connection refused"),
        (requests.ConnectTimeout("HTTPConnectionPool(host=...): connect timeout=10"), "connection timed out"),
        (
            requests.ReadTimeout("HTTPConnectionPool(host=...): read timeout=30"),
            "no answer within the read timeout",
        ),
        (
            requests.ConnectionError(
                urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
            ),
            "connection reset",
        ),
    ],
)
def test_short_reasons(error: requests.RequestException, words: str) -> None:
    assert short_reason(error) == words
