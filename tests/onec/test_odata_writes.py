"""ODataClient writes: PATCH with If-Match and whole sections, create idempotency, Post, actions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
import responses
import urllib3.exceptions

from bridge.errors import DocumentError, FatalHTTPError, OneCError, TransientError, UnavailableError
from bridge.net import OutcomeUnknownError, RetryPolicy
from bridge.onec.literals import encode
from bridge.onec.odata import ODataClient

MSK = ZoneInfo("Europe/Moscow")
BASE = "http://1c.local/ut/odata/standard.odata/"
ORDERS = "Document_ЗаказКлиента"
KEY = "9b3d6a7e-1c2d-11ee-8000-000c29aabbcc"
PROP = "5e1f0a0c-0000-11ee-8000-000c29aabbcc"
ANY = re.compile(re.escape(BASE) + ".*")
JSON_CT = "application/json;charset=utf-8"
ORDER_URL = BASE + encode(ORDERS) + f"(guid'{KEY}')"
CLOSED_PERIOD = "Ошибка при выполнении операции над данными: Дата запрета изменения данных"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def client(sleeps: Sleeps | None = None, **kwargs: Any) -> ODataClient:
    policy = RetryPolicy(max_attempts=3, base_s=1.0, cap_s=10.0, deadline_s=None)
    return ODataClient(
        BASE, "Администратор", "x", MSK, retry_policy=policy, sleep=sleeps or Sleeps(), **kwargs
    )


def odata_error(message: str, code: str = "-1") -> str:
    return json.dumps(
        {"odata.error": {"code": code, "message": {"lang": "ru", "value": message}}}, ensure_ascii=False
    )


def refused() -> requests.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


def attrs(*values: tuple[int, str]) -> list[dict[str, Any]]:
    return [
        {
            "LineNumber": str(n),
            "Свойство_Key": PROP,
            "Значение": v,
            "Значение_Type": "Edm.String",
            "ТекстоваяСтрока": "",
        }
        for n, v in values
    ]


@responses.activate
def test_patch_sends_if_match_json_body_and_returns_answer() -> None:
    responses.patch(ORDER_URL + "?$format=json", json={"Ref_Key": KEY, "DataVersion": "v2"})
    c = client()
    answer = c.patch(
        ORDERS,
        KEY,
        {"СуммаДокумента": Decimal("14200.10"), "Date": datetime(2026, 2, 28, 21, tzinfo=UTC)},
        if_match="v1",
    )
    request = responses.calls[0].request
    assert request.method == "PATCH"
    assert request.headers["If-Match"] == "v1"
    assert request.headers["Content-Type"] == "application/json;charset=utf-8"
    assert request.body == '{"СуммаДокумента":14200.10,"Date":"2026-03-01T00:00:00"}'.encode()
    assert answer == {"Ref_Key": KEY, "DataVersion": "v2"}


@responses.activate
def test_patch_reads_only_the_key_and_the_new_version_of_the_object_1c_echoes() -> None:
    echoed = {
        "Ref_Key": KEY,
        "DataVersion": "v3",
        "Date": "2026-03-01T00:00:00",
        "Товары": [{"LineNumber": "1", "Сумма": 100}] * 50,
    }
    responses.patch(ORDER_URL + "?$format=json", json=echoed)
    assert client().patch(ORDERS, KEY, {"Posted": True}) == {"Ref_Key": KEY, "DataVersion": "v3"}
    responses.patch(ORDER_URL + "?$format=json", json=[echoed])  # not an object: still refused
    with pytest.raises(FatalHTTPError, match="expected a JSON object"):
        client().patch(ORDERS, KEY, {"Posted": True})


@responses.activate
def test_a_redirected_write_is_not_followed() -> None:
    responses.patch(ANY, status=302, headers={"Location": BASE + "login"})
    responses.get(BASE + "login", body="<html>login</html>", content_type="text/html")
    with pytest.raises(FatalHTTPError, match="302"):
        client().patch(ORDERS, KEY, {"Posted": True})
    assert len(responses.calls) == 1


@responses.activate
def test_patch_without_if_match_and_204() -> None:
    responses.patch(ORDER_URL + "?$format=json", status=204)
    assert client().patch(ORDERS, KEY, {"Posted": True}) == {}
    assert "If-Match" not in responses.calls[0].request.headers


@responses.activate
def test_patch_with_version_rereads_and_sends_the_whole_section() -> None:
    current = {
        "Ref_Key": KEY,
        "DataVersion": "v7",
        "ДополнительныеРеквизиты": attrs((1, "Золото"), (2, "Старое")),
    }
    responses.get(ANY, json=current)
    responses.patch(ANY, json={"Ref_Key": KEY, "DataVersion": "v8"})

    def build(entity: dict[str, Any]) -> dict[str, Any]:
        rows = [dict(r) for r in entity["ДополнительныеРеквизиты"]]
        rows[1]["Значение"] = "Новое"
        return {"ДополнительныеРеквизиты": rows}

    answer = client().patch_with_version(ORDERS, KEY, build, select=["ДополнительныеРеквизиты"])
    get, patch = responses.calls
    assert parse_qs(urlsplit(get.request.url).query)["$select"] == [
        "Ref_Key,DataVersion,ДополнительныеРеквизиты"
    ]
    assert patch.request.headers["If-Match"] == "v7"
    sent = json.loads(patch.request.body)
    assert sent == {
        "ДополнительныеРеквизиты": [
            {
                "LineNumber": "1",
                "Свойство_Key": PROP,
                "Значение": "Золото",
                "Значение_Type": "Edm.String",
                "ТекстоваяСтрока": "",
            },
            {
                "LineNumber": "2",
                "Свойство_Key": PROP,
                "Значение": "Новое",
                "Значение_Type": "Edm.String",
                "ТекстоваяСтрока": "",
            },
        ]
    }
    assert answer["DataVersion"] == "v8"


@responses.activate
def test_patch_with_version_retries_the_round_on_412() -> None:
    responses.get(ANY, json={"Ref_Key": KEY, "DataVersion": "v1"})
    responses.patch(ANY, status=412, body=odata_error("Версия объекта изменилась"), content_type=JSON_CT)
    responses.get(ANY, json={"Ref_Key": KEY, "DataVersion": "v2"})
    responses.patch(ANY, json={"Ref_Key": KEY, "DataVersion": "v3"})
    seen: list[str] = []

    def build(entity: dict[str, Any]) -> dict[str, Any]:
        seen.append(entity["DataVersion"])
        return {"Posted": True}

    c = client()
    assert c.patch_with_version(ORDERS, KEY, build)["DataVersion"] == "v3"
    assert seen == ["v1", "v2"]
    assert [call.request.headers.get("If-Match") for call in responses.calls] == [None, "v1", None, "v2"]
    assert c.requests_made == 4


@responses.activate
def test_patch_with_version_gives_up_after_conflict_attempts() -> None:
    responses.get(ANY, json={"Ref_Key": KEY, "DataVersion": "v1"})
    responses.patch(ANY, status=412)
    with pytest.raises(FatalHTTPError) as info:
        client(conflict_attempts=2).patch_with_version(ORDERS, KEY, lambda e: {"Posted": True})
    assert info.value.status == 412
    assert len(responses.calls) == 4


@responses.activate
def test_patch_with_version_empty_body_writes_nothing_and_missing_entity() -> None:
    responses.get(ANY, json={"Ref_Key": KEY, "DataVersion": "v1"})
    c = client()
    assert c.patch_with_version(ORDERS, KEY, lambda e: {}) == {"Ref_Key": KEY, "DataVersion": "v1"}
    assert c.requests_made == 1
    responses.replace(responses.GET, ANY, status=404, body=odata_error("Не найдено"), content_type=JSON_CT)
    with pytest.raises(DocumentError):
        c.patch_with_version(ORDERS, KEY, lambda e: {"Posted": True})


@responses.activate
def test_business_failure_on_write_is_not_retried() -> None:
    responses.patch(ANY, status=500, body=odata_error(CLOSED_PERIOD), content_type=JSON_CT)
    sleeps = Sleeps()
    c = client(sleeps)
    with pytest.raises(OneCError) as info:
        c.patch(ORDERS, KEY, {"Posted": True})
    assert (info.value.status, info.value.code) == (500, "-1")
    assert info.value.onec_message == CLOSED_PERIOD
    assert c.requests_made == 1 and sleeps.delays == []


@responses.activate
def test_patch_is_retried_on_gateway_errors_and_refused_connections() -> None:
    responses.patch(ANY, status=502, body="<html>Bad Gateway</html>", content_type="text/html")
    responses.patch(ANY, body=refused())  # never reached 1C
    responses.patch(ANY, json={"DataVersion": "v2"})
    sleeps = Sleeps()
    c = client(sleeps)
    assert c.patch(ORDERS, KEY, {"Posted": True}) == {"DataVersion": "v2"}
    assert c.requests_made == 3 and len(sleeps.delays) == 2


@pytest.mark.parametrize(
    "failure",
    [
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError(
            urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
        ),
    ],
)
@responses.activate
def test_a_patch_without_an_answer_is_not_repeated_blind(failure: Any) -> None:
    """1C may still be applying it: a repeat built from the same read could land after it, or after
    an operator's change, and put back tabular rows the object no longer has. The caller re-reads
    (``patch_with_version``) after a read timeout."""
    responses.patch(ANY, body=failure)
    responses.patch(ANY, json={"DataVersion": "v2"})
    sleeps = Sleeps()
    c = client(sleeps)
    with pytest.raises(OutcomeUnknownError, match="may have been processed") as info:
        c.patch(ORDERS, KEY, {"Posted": True})
    assert c.requests_made == 1 and sleeps.delays == []
    assert info.value.retry_after == c.timeout[1]


@responses.activate
def test_create_returns_201_answer() -> None:
    responses.post(
        BASE + encode("Catalog_КартыЛояльности") + "?$format=json",
        status=201,
        json={"Ref_Key": KEY, "Штрихкод": "2000000000015"},
    )
    answer = client().create("Catalog_КартыЛояльности", {"Штрихкод": "2000000000015", "Партнер_Key": None})
    assert answer == {"Ref_Key": KEY, "Штрихкод": "2000000000015"}
    body = json.loads(responses.calls[0].request.body)
    assert body["Партнер_Key"] == "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    "failure",
    [
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError(
            urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
        ),
        500,
        502,
        504,
    ],
)
@responses.activate
def test_create_is_not_repeated_when_the_outcome_is_unknown(failure: Any) -> None:
    if isinstance(failure, int):
        responses.post(ANY, status=failure, body="<html>error</html>", content_type="text/html")
    else:
        responses.post(ANY, body=failure)
    responses.post(ANY, status=201, json={"Ref_Key": KEY})
    c = client()
    with pytest.raises(OutcomeUnknownError) as info:
        c.create(ORDERS, {"Комментарий": "x"})
    assert isinstance(info.value, TransientError)
    assert c.requests_made == 1  # never sent twice: 1C may already hold the new document
    # No answer: 1C may still be creating it, so the look-up waits a read timeout; an answer
    # (even 5xx) means 1C is done with the request.
    assert info.value.retry_after == (None if isinstance(failure, int) else c.timeout[1])


@responses.activate
def test_create_with_truncated_success_answer_is_not_repeated() -> None:
    responses.post(ANY, status=201, body='{"Ref_Key": "9b3d6a7e-1c2d', content_type=JSON_CT)
    c = client()
    with pytest.raises(OutcomeUnknownError):
        c.create(ORDERS, {"Комментарий": "x"})
    assert c.requests_made == 1


@pytest.mark.parametrize("failure", [requests.ConnectTimeout("connect timed out"), refused(), 503, 429, 408])
@responses.activate
def test_create_is_retried_when_1c_provably_did_not_process_it(failure: Any) -> None:
    if isinstance(failure, int):
        responses.post(ANY, status=failure, headers={"Retry-After": "1"})
    else:
        responses.post(ANY, body=failure)
    responses.post(ANY, status=201, json={"Ref_Key": KEY})
    c = client()
    assert c.create(ORDERS, {"Комментарий": "x"}) == {"Ref_Key": KEY}
    assert c.requests_made == 2


@responses.activate
def test_create_business_failure_is_onec_error() -> None:
    responses.post(ANY, status=500, body=odata_error("Не заполнено поле Партнер"), content_type=JSON_CT)
    with pytest.raises(OneCError, match="Партнер"):
        client().create(ORDERS, {})


@responses.activate
def test_post_document_sends_empty_body_with_content_length_zero() -> None:
    responses.post(ORDER_URL + "/Post?PostingModeOperational=false", status=200, body="")
    c = client()
    c.post_document(ORDERS, KEY)
    request = responses.calls[0].request
    assert request.url == ORDER_URL + "/Post?PostingModeOperational=false"
    assert request.headers["Content-Length"] == "0"
    assert not request.body
    responses.post(ORDER_URL + "/Post?PostingModeOperational=true", status=200)
    c.post_document(ORDERS, KEY, operational=True)
    assert responses.calls[1].request.url.endswith("PostingModeOperational=true")


@responses.activate
def test_post_document_business_failure_in_xml_is_onec_error() -> None:
    xml = (
        '<?xml version="1.0" encoding="utf-8"?><m:error xmlns:m="http://schemas.microsoft.com/ado/2007/08/'
        'dataservices/metadata"><m:code>-1</m:code>'
        f'<m:message xml:lang="ru">{CLOSED_PERIOD}</m:message></m:error>'
    )
    responses.post(ANY, status=500, body=xml, content_type="application/xml")
    c = client()
    with pytest.raises(OneCError) as info:
        c.post_document(ORDERS, KEY)
    assert info.value.onec_message == CLOSED_PERIOD
    assert c.requests_made == 1


@responses.activate
def test_post_action_returns_raw_atom_and_encodes_params() -> None:
    atom = b'\xef\xbb\xbf<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"></feed>'
    responses.post(ANY, body=atom, content_type="application/atom+xml")
    node = "ExchangePlan_Лояльность(guid'" + KEY + "')"
    params = {"DataExchangePoint": f"'{BASE}{node}'", "MessageNo": "5"}
    raw = client().post_action("SelectChanges", params)
    assert raw.startswith(b"<?xml")
    request = responses.calls[0].request
    assert request.headers["Content-Length"] == "0"
    parsed = parse_qs(urlsplit(request.url).query)
    assert parsed == {"DataExchangePoint": [f"'{BASE}{node}'"], "MessageNo": ["5"]}
    assert request.url.startswith(BASE + "SelectChanges?DataExchangePoint='http:")


@responses.activate
def test_post_action_exhaustion_is_unavailable() -> None:
    responses.post(ANY, status=503)
    with pytest.raises(UnavailableError):
        client().post_action("NotifyChangesReceived", {"MessageNo": "5"})


@responses.activate
def test_cells_a_write_back_leaves_alone_go_back_exactly_as_1c_sent_them() -> None:
    """A section is sent whole, so every other row and cell goes back too: as 1C sent it, not as
    the bridge read it. The empty date is ``0001-01-01T00:00:00`` and the empty reference the
    empty GUID (``null`` only appears under ``$expand``); another program's text keeps its control
    characters; a number keeps its form. Only the cells the write-back sets change."""
    other = "9e0c0000-0000-11ee-8000-000c29aabbcc"
    current = {
        "Ref_Key": KEY,
        "DataVersion": "v7",
        "Товары": [
            {
                "Ref_Key": KEY,
                "LineNumber": "1",
                "Номенклатура_Key": "11111111-0000-11ee-8000-000c29aabbcc",
                "ДатаОтгрузки": "0001-01-01T00:00:00",
                "Склад_Key": "00000000-0000-0000-0000-000000000000",
                "Комментарий": "упаковать\tотдельно\u0007",
                "Количество": 2,
                "Сумма": 1000.5,
            }
        ],
        "ДополнительныеРеквизиты": [
            {
                "LineNumber": "1",
                "Свойство_Key": other,
                "Значение": "00000000-0000-0000-0000-000000000000",
                "Значение_Type": "StandardODATA.Catalog_ЗначенияСвойствОбъектов",
                "ТекстоваяСтрока": "",
            },
            {
                "LineNumber": "2",
                "Свойство_Key": PROP,
                "Значение": "0001-01-01T00:00:00",
                "Значение_Type": "Edm.DateTime",
                "ТекстоваяСтрока": "",
            },
        ],
    }
    responses.get(ANY, json=current)
    responses.patch(ANY, json={"Ref_Key": KEY, "DataVersion": "v8"})

    def build(entity: dict[str, Any]) -> dict[str, Any]:
        goods = [{k: v for k, v in r.items() if k != "Ref_Key"} for r in entity["Товары"]]
        goods[0]["Сумма"] = Decimal("900.00")
        extra = [dict(r) for r in entity["ДополнительныеРеквизиты"]]
        extra.append(
            {"LineNumber": "3", "Свойство_Key": PROP, "Значение": "Новое", "Значение_Type": "Edm.String"}
        )
        return {"Товары": goods, "ДополнительныеРеквизиты": extra}

    client().patch_with_version(ORDERS, KEY, build, select=["Товары", "ДополнительныеРеквизиты"])
    sent = json.loads(responses.calls[-1].request.body, parse_float=Decimal)
    [row] = sent["Товары"]
    assert row == {
        "LineNumber": "1",
        "Номенклатура_Key": "11111111-0000-11ee-8000-000c29aabbcc",
        "ДатаОтгрузки": "0001-01-01T00:00:00",
        "Склад_Key": "00000000-0000-0000-0000-000000000000",
        "Комментарий": "упаковать\tотдельно\u0007",
        "Количество": 2,
        "Сумма": Decimal("900.00"),
    }
    first, second, third = sent["ДополнительныеРеквизиты"]
    assert first["Значение"] == "00000000-0000-0000-0000-000000000000"
    assert second["Значение"] == "0001-01-01T00:00:00" and second["Значение_Type"] == "Edm.DateTime"
    assert third["Значение"] == "Новое"
    assert "null" not in responses.calls[-1].request.body.decode()  # type: ignore[union-attr]


@responses.activate
def test_raw_control_characters_in_1c_data_are_read_not_retried_as_a_broken_body() -> None:
    """ONEC.md: control characters turn up in 1C's data, raw inside JSON strings (not escaped). A
    strict JSON parser calls that a broken body and the read would fail on every retry."""
    body = f'{{"Ref_Key": "{KEY}", "DataVersion": "v1", "Description": "Иван\x01ов\x1f"}}'
    responses.get(ANY, body=body.encode(), content_type=JSON_CT)
    row = client().get_entity(ORDERS, KEY)
    assert row is not None and row["Description"] == "Иванов"
    assert len(responses.calls) == 1
