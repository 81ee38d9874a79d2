"""Answers' bodies as text: the charset the answer declares, else UTF-8 (a site's Russian error page
must read as Russian in ``outbox`` and the logs, not as ``Ð¢ÑÐµÐ±ÑÐµÑÑÑ``)."""

from __future__ import annotations

import pytest
import requests
import responses

from bridge.errors import FatalHTTPError
from bridge.net import response_text
from bridge.notify.sms import SmsSender
from bridge.site.webhook import WebhookSender
from tests.notify.notify_kit import outbox_message
from tests.site.site_kit import SECRET
from tests.site.test_webhook import message

RUSSIAN = "Требуется авторизация"


def answer(body: bytes, content_type: str | None) -> requests.Response:
    response = requests.Response()
    response.status_code = 401
    response._content = body
    if content_type is not None:
        response.headers["Content-Type"] = content_type
    return response


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/html", "application/json"])
def test_no_charset_means_utf8(content_type: str | None) -> None:
    assert response_text(answer(RUSSIAN.encode(), content_type)) == RUSSIAN


def test_a_declared_charset_is_honoured() -> None:
    assert response_text(answer(RUSSIAN.encode("cp1251"), "text/plain; charset=windows-1251")) == RUSSIAN


def test_undecodable_bytes_and_unknown_charsets_do_not_raise() -> None:
    assert response_text(answer(b"ok \xff", "text/plain")) == "ok \ufffd"
    assert response_text(answer(RUSSIAN.encode(), "text/plain; charset=x-no-such")) == RUSSIAN
    assert response_text(answer(b"", None)) == ""


@responses.activate
def test_the_webhooks_stored_error_reads_as_sent() -> None:
    url = "https://shop.example/loyalty/webhook"
    responses.add(responses.POST, url, status=401, body=RUSSIAN.encode(), content_type="text/plain")
    with pytest.raises(FatalHTTPError) as info:
        WebhookSender(url, SECRET).send(message())
    assert info.value.body == RUSSIAN


@responses.activate
def test_the_sms_gateways_error_reads_as_sent() -> None:
    url = "https://sms.example/api/send"
    responses.add(responses.POST, url, status=401, body=RUSSIAN.encode(), content_type="text/html")
    with pytest.raises(FatalHTTPError) as info:
        SmsSender(url, "token", "SHOP", timeout_s=5).send(
            outbox_message("sms", {"to": "+79161234567", "text": "Магазин", "sender": "SHOP"})
        )
    assert info.value.body == RUSSIAN
