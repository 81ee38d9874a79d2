"""ODataClient reads and error handling, with ``responses`` standing in for 1C."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
import responses
import urllib3.exceptions

from bridge.errors import FatalHTTPError, OneCError, TransientError, UnavailableError
from bridge.net import OutcomeUnknownError, RetryPolicy
from bridge.onec.literals import encode
from bridge.onec.odata import ODataClient

MSK = ZoneInfo("Europe/Moscow")
BASE = "http://1c.local/ut/odata/standard.odata/"
ORDERS = "Document_ЗаказКлиента"
KEY = "9b3d6a7e-1c2d-11ee-8000-000c29aabbcc"
ANY = re.compile(re.escape(BASE) + ".*")
JSON_CT = "application/json;charset=utf-8"
ERR_RU = "Ошибка при выполнении операции над данными: Недостаточно прав"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class MaxRng:
    def random(self) -> float:
        return 1.0


def client(sleep: Sleeps | None = None, **kwargs: Any) -> ODataClient:
    kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=3, base_s=1.0, cap_s=10.0, deadline_s=None))
    return ODataClient(
        BASE,
        "Администратор",
        "пароль",
        MSK,
        sleep=sleep or Sleeps(),
        rng=MaxRng(),
        timeout_s=(3.0, 30.0),
        **kwargs,
    )


def odata_error(message: str, code: str = "-1") -> str:
    return json.dumps(
        {"odata.error": {"code": code, "message": {"lang": "ru", "value": message}}}, ensure_ascii=False
    )


def order_json(**extra: Any) -> dict[str, Any]:
    return {
        "odata.metadata": BASE + "$metadata#Document_ЗаказКлиента/@Element",
        "Ref_Key": KEY,
        "DataVersion": "AAAAAQAAAAA=",
        "Number": "УТ-000123",
        "Date": "2026-03-01T10:15:00",
        "Партнер_Key": "00000000-0000-0000-0000-000000000000",
        "СуммаДокумента": 14200.5,
        "Товары": [{"LineNumber": "1", "Количество": 1, "Сумма": 14200.5}],
        **extra,
    }


def query(call_index: int = 0) -> dict[str, list[str]]:
    return parse_qs(urlsplit(responses.calls[call_index].request.url).query)


@responses.activate
def test_get_entity_url_auth_timeout_and_normalisation() -> None:
    responses.get(
        ANY,
        body=b"\xef\xbb\xbf" + json.dumps(order_json(), ensure_ascii=False).encode(),
        content_type=JSON_CT,
    )
    c = client()
    row = c.get_entity(ORDERS, KEY.upper(), select=["Ref_Key", "DataVersion", "Товары"])
    request = responses.calls[0].request
    assert request.url == (
        BASE + encode(ORDERS) + f"(guid'{KEY}')?$format=json&$select=Ref_Key,DataVersion,"
        "%D0%A2%D0%BE%D0%B2%D0%B0%D1%80%D1%8B"
    )
    assert (
        request.headers["Authorization"]
        == "Basic " + base64.b64encode("Администратор:пароль".encode()).decode()
    )
    assert request.req_kwargs["timeout"] == (3.0, 30.0)  # type: ignore[attr-defined]
    assert row == {
        "Ref_Key": KEY,
        "DataVersion": "AAAAAQAAAAA=",
        "Number": "УТ-000123",
        "Date": datetime(2026, 3, 1, 10, 15, tzinfo=MSK),
        "Партнер_Key": None,
        "СуммаДокумента": Decimal("14200.5"),
        "Товары": [{"LineNumber": 1, "Количество": Decimal(1), "Сумма": Decimal("14200.5")}],
    }
    assert c.requests_made == 1


@responses.activate
def test_get_entity_404_with_odata_error_is_none() -> None:
    responses.get(ANY, status=404, body=odata_error("Объект не найден"), content_type=JSON_CT)
    assert client().get_entity(ORDERS, KEY) is None


@responses.activate
def test_get_entity_html_404_is_fatal_with_hint() -> None:
    responses.get(ANY, status=404, body="<html><title>404 - File or directory not found.</title></html>")
    with pytest.raises(FatalHTTPError, match="2048"):
        client().get_entity(ORDERS, KEY)


@responses.activate
def test_timeout_float_means_read_timeout_with_shorter_connect() -> None:
    assert ODataClient(BASE, "u", "p", MSK, timeout_s=45).timeout == (10.0, 45.0)
    assert ODataClient(BASE.rstrip("/"), "u", "p", MSK, timeout_s=5).timeout == (5.0, 5.0)
    assert ODataClient(BASE.rstrip("/"), "u", "p", MSK).base_url == BASE


# ------------------------------------------------ the classification table, through the client

OK_BODY = json.dumps({"value": []})
RESET = requests.ConnectionError(
    urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
)


@pytest.mark.parametrize(
    ("status", "body", "headers", "outcome"),
    [
        (200, OK_BODY, {}, "ok"),
        (201, OK_BODY, {}, "ok"),
        (204, "", {}, FatalHTTPError),  # a collection GET without "value" rows is unusable
        (400, odata_error("Неверный формат запроса"), {}, OneCError),
        (401, "", {}, FatalHTTPError),
        (403, odata_error(ERR_RU), {}, OneCError),
        (404, "<html>Not Found</html>", {"Content-Type": "text/html"}, FatalHTTPError),
        (405, "", {}, FatalHTTPError),
        (408, "", {}, UnavailableError),
        (409, "", {}, FatalHTTPError),
        (412, "", {}, FatalHTTPError),
        (429, "", {"Retry-After": "2"}, UnavailableError),
        (500, odata_error("Конфликт блокировок"), {}, UnavailableError),
        (502, "<html>Bad Gateway</html>", {"Content-Type": "text/html"}, UnavailableError),
        (503, "", {}, UnavailableError),
        (504, "", {}, UnavailableError),
        ("timeout", requests.ReadTimeout("read timed out"), {}, UnavailableError),
        ("reset", RESET, {}, UnavailableError),
        ("html-200", "<!DOCTYPE html><html><body>Вход в 1С</body></html>", {}, FatalHTTPError),
        ("bom-json", b"\xef\xbb\xbf" + OK_BODY.encode(), {}, "ok"),
        ("truncated", '{"value": [{"Ref_Key": "9b3d', {}, UnavailableError),
    ],
)
@responses.activate
def test_status_classification_table(status: Any, body: Any, headers: dict[str, str], outcome: Any) -> None:
    if isinstance(body, Exception):
        responses.get(ANY, body=body)
    else:
        code = status if isinstance(status, int) else 200
        extra = {k: v for k, v in headers.items() if k != "Content-Type"}
        content_type = headers.get("Content-Type", JSON_CT)
        responses.get(ANY, status=code, body=body, headers=extra, content_type=content_type)
    sleeps = Sleeps()
    c = client(sleeps)
    if outcome == "ok":
        assert list(c.iter_by_keys(ORDERS, [KEY])) == []
        assert c.requests_made == 1
        return
    with pytest.raises(outcome) as info:
        list(c.iter_by_keys(ORDERS, [KEY]))
    if outcome is UnavailableError:
        assert c.requests_made == 3 and len(sleeps.delays) == 2
        assert isinstance(info.value.__cause__, TransientError)
    else:
        assert c.requests_made == 1 and sleeps.delays == []


@responses.activate
def test_retry_after_is_honoured_then_success() -> None:
    responses.get(ANY, status=503, headers={"Retry-After": "7"})
    responses.get(ANY, status=429, headers={"Retry-After": "120"})
    responses.get(ANY, json=order_json())
    sleeps = Sleeps()
    c = client(sleeps)
    assert c.get_entity(ORDERS, KEY) is not None
    assert sleeps.delays == [7.0, 10.0]  # second one capped at cap_s
    assert c.requests_made == 3


@responses.activate
def test_exhaustion_carries_the_last_cause() -> None:
    responses.get(ANY, status=502, body="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html")
    sleeps = Sleeps()
    with pytest.raises(UnavailableError) as info:
        client(sleeps).get_entity(ORDERS, KEY)
    assert sleeps.delays == [1.0, 2.0]
    cause = info.value.fields["cause"]
    assert isinstance(cause, TransientError) and cause.fields["status"] == 502
    assert "502 Bad Gateway" in str(cause)
    assert info.value.fields["attempts"] == 3


@responses.activate
def test_odata_error_surfaces_russian_message() -> None:
    responses.get(ANY, status=403, body=odata_error(ERR_RU), content_type=JSON_CT)
    with pytest.raises(OneCError) as info:
        client().get_entity(ORDERS, KEY)
    assert (info.value.status, info.value.code, info.value.onec_message) == (403, "-1", ERR_RU)
    assert "Недостаточно прав" in str(info.value)


# ---------------------------------------------------------------- keys


@responses.activate
def test_get_by_keys_chunks_or_chains_within_budget() -> None:
    keys = [str(uuid.UUID(int=i + 1)) for i in range(70)]

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        flt = parse_qs(urlsplit(request.url).query)["$filter"][0]
        found = re.findall(r"Ref_Key eq guid'([^']+)'", flt)
        return 200, {}, json.dumps({"value": [{"Ref_Key": k, "DataVersion": "v"} for k in found]})

    responses.add_callback(responses.GET, ANY, callback=answer, content_type=JSON_CT)
    c = client(url_budget=1000)
    rows = c.get_by_keys(ORDERS, keys + keys[:5], select=["Ref_Key", "DataVersion"])
    assert [r["Ref_Key"] for r in rows] == keys
    assert c.requests_made == len(responses.calls) > 1
    for call in responses.calls:
        raw_query = urlsplit(call.request.url).query
        assert len(raw_query) <= 1000
        q = parse_qs(raw_query)
        assert int(q["$top"][0]) == q["$filter"][0].count("guid'")
        assert " in " not in q["$filter"][0]


@responses.activate
def test_get_by_keys_non_unique_field_pages() -> None:
    responses.get(ANY, json={"value": [{"Ref_Key": str(uuid.UUID(int=i))} for i in range(2)]})
    responses.get(ANY, json={"value": [{"Ref_Key": str(uuid.UUID(int=9))}]})
    c = client(page_size=2)
    rows = c.get_by_keys("Catalog_КартыЛояльности", [KEY], field="Партнер_Key")
    assert len(rows) == 3 and c.requests_made == 2
    assert query(1)["$skip"] == ["2"]
    assert query(0)["$filter"] == [f"Партнер_Key eq guid'{KEY}'"]


@responses.activate
def test_read_version_and_metadata() -> None:
    responses.get(ANY, json={"DataVersion": "AAAAAgAAAAA="})
    c = client()
    assert c.read_version(ORDERS, KEY) == "AAAAAgAAAAA="
    assert query(0)["$select"] == ["DataVersion"]
    responses.get(
        BASE + "$metadata",
        body=b'\xef\xbb\xbf<?xml version="1.0"?><edmx:Edmx/>',
        content_type="application/xml",
    )
    assert c.metadata() == b'<?xml version="1.0"?><edmx:Edmx/>'
    assert responses.calls[-1].request.url == BASE + "$metadata"


@responses.activate
def test_metadata_html_page_is_fatal() -> None:
    responses.get(BASE + "$metadata", body="<html><body>Login</body></html>", content_type="text/html")
    with pytest.raises(FatalHTTPError):
        client().metadata()


@responses.activate
def test_read_version_of_missing_entity_is_a_document_error() -> None:
    from bridge.errors import DocumentError

    responses.get(ANY, status=404, body=odata_error("Не найдено"), content_type=JSON_CT)
    with pytest.raises(DocumentError) as info:
        client().read_version(ORDERS, KEY)
    assert info.value.document == f"{ORDERS}({KEY})"


@responses.activate
def test_unexpected_shape_is_fatal() -> None:
    responses.get(ANY, json=[1, 2])
    with pytest.raises(FatalHTTPError):
        client().get_by_keys(ORDERS, [KEY])


def test_out_of_band_arguments() -> None:
    with pytest.raises(ValueError):
        ODataClient(BASE, "u", "p", MSK, page_size=0)
    assert unquote(encode(ORDERS)) == ORDERS
    assert OutcomeUnknownError.__mro__[1] is TransientError


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("bridge/net.py", ("bridge.store", "bridge.site", "bridge.service", "bridge.notify", "bridge.onec")),
        ("bridge/onec/literals.py", ("bridge.store", "bridge.site", "bridge.service", "requests")),
        ("bridge/onec/normalize.py", ("bridge.store", "bridge.site", "bridge.service", "requests")),
        ("bridge/onec/odata_windows.py", ("bridge.store", "bridge.site", "bridge.service", "requests")),
        ("bridge/onec/odata.py", ("bridge.store", "bridge.site", "bridge.service", "bridge.notify")),
    ],
)
def test_edge_modules_do_not_import_inward_or_sideways(module: str, forbidden: tuple[str, ...]) -> None:
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).parents[2] / module).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    bad = sorted(n for n in names for f in forbidden if n == f or n.startswith(f + "."))
    assert bad == []
