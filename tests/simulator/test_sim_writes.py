"""Writes over HTTP: PATCH (DataVersion, whole sections, If-Match ignored), POST, posting, routes."""

from __future__ import annotations

import base64
import http.client
import json
import socket
from urllib.parse import quote, urlsplit

import pytest

from bridge.simulator import SimStore, Simulator

ORDERS = "Document_ЗаказКлиента"


def _first_open(store: SimStore) -> dict:
    return next(o for o in store.rows(ORDERS) if o["Number"] == "УТ-00000101")


def test_patch_bumps_data_version_and_replaces_sections(odata, store: SimStore) -> None:
    order = _first_open(store)
    url = odata.url(f"{ORDERS}(guid'{order['Ref_Key']}')")
    spent = store.property_key("Бонусы списано")
    rows = [
        {"Свойство_Key": spent, "Значение": 500, "Значение_Type": "Edm.Double", "ТекстоваяСтрока": ""},
    ]
    response = odata.http.patch(
        url,
        params={"$format": "json"},
        json={"ДополнительныеРеквизиты": rows, "Комментарий": "ok"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["DataVersion"] != order["DataVersion"]
    assert body["Комментарий"] == "ok"
    # The section was replaced whole: the redeem request row (not re-sent) is gone.
    assert [r["Свойство_Key"] for r in body["ДополнительныеРеквизиты"]] == [spent]
    assert body["ДополнительныеРеквизиты"][0]["LineNumber"] == "1"
    assert body["Товары"] == json.loads(odata.get(f"{ORDERS}(guid'{order['Ref_Key']}')").text)["Товары"]
    assert store.effective_writes[(ORDERS, order["Ref_Key"])] == 1


def test_patch_without_change_still_bumps_version_but_is_not_effective(odata, store: SimStore) -> None:
    order = _first_open(store)
    url = odata.url(f"{ORDERS}(guid'{order['Ref_Key']}')")
    response = odata.http.patch(
        url, params={"$format": "json"}, json={"Комментарий": order["Комментарий"]}, timeout=10
    )
    assert response.json()["DataVersion"] != order["DataVersion"]
    assert store.effective_writes[(ORDERS, order["Ref_Key"])] == 0
    assert store.writes[(ORDERS, order["Ref_Key"])] == 1


def test_if_match_is_recorded_but_ignored(odata, store: SimStore) -> None:
    order = _first_open(store)
    url = odata.url(f"{ORDERS}(guid'{order['Ref_Key']}')")
    response = odata.http.patch(
        url, params={"$format": "json"}, json={"Комментарий": "x"}, headers={"If-Match": "stale"}, timeout=10
    )
    assert response.status_code == 200
    assert store.if_match == [(ORDERS, order["Ref_Key"], "stale")]


def test_patch_line_discounts(odata, store: SimStore) -> None:
    order = _first_open(store)
    lines = order["Товары"]
    line = {k: v for k, v in lines[0].items() if k != "LineNumber"}
    line.update({"ПроцентАвтоматическойСкидки": 5, "СуммаАвтоматическойСкидки": "710.00"})
    url = odata.url(f"{ORDERS}(guid'{order['Ref_Key']}')")
    odata.http.patch(url, data=json.dumps({"Товары": [line]}, default=str), timeout=10).raise_for_status()
    stored = store.get(ORDERS, order["Ref_Key"])
    assert str(stored["Товары"][0]["СуммаАвтоматическойСкидки"]) == "710.00"


def test_patch_errors(odata, store: SimStore) -> None:
    order = _first_open(store)
    url = odata.url(f"{ORDERS}(guid'{order['Ref_Key']}')")
    unknown = odata.http.patch(url, json={"НетТакогоПоля": 1}, timeout=10)
    assert unknown.status_code == 400 and unknown.json()["odata.error"]["message"]["lang"] == "ru"
    bad_enum = odata.http.patch(url, json={"Статус": "Отгружен"}, timeout=10)
    assert bad_enum.status_code == 400
    missing = odata.http.patch(
        odata.url(f"{ORDERS}(guid'{'0' * 8}-0000-0000-0000-{'0' * 12}')"), json={}, timeout=10
    )
    assert missing.status_code == 404


def test_post_creates_with_201(odata, store: SimStore) -> None:
    partner = store.rows("Catalog_Партнеры")[0]["Ref_Key"]
    response = odata.http.post(
        odata.url("Catalog_КартыЛояльности"),
        params={"$format": "json"},
        json={
            "Description": "2000000000046",
            "Штрихкод": "2000000000046",
            "Статус": "Действует",
            "Партнер_Key": partner,
        },
        timeout=10,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["Штрихкод"] == "2000000000046" and body["DataVersion"]
    assert response.headers["Location"].endswith(f"(guid'{body['Ref_Key']}')")
    assert store.get("Catalog_КартыЛояльности", body["Ref_Key"])["Партнер_Key"] == partner


def _raw_post(sim: Simulator, path_and_query: str, *, content_length: bool) -> int:
    parts = urlsplit(sim.odata_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    token = base64.b64encode(f"{sim.username}:{sim.password}".encode()).decode()
    conn.putrequest("POST", parts.path + "/" + path_and_query)
    conn.putheader("Authorization", f"Basic {token}")
    if content_length:
        conn.putheader("Content-Length", "0")
    conn.endheaders()
    status = conn.getresponse().status
    conn.close()
    return status


def test_post_action_needs_content_length(sim: Simulator, store: SimStore) -> None:
    order = next(o for o in store.rows(ORDERS) if not o["Posted"])
    path = quote(f"{ORDERS}(guid'{order['Ref_Key']}')/Post") + "?PostingModeOperational=false"
    assert _raw_post(sim, path, content_length=False) == 411
    assert store.get(ORDERS, order["Ref_Key"])["Posted"] is False
    assert _raw_post(sim, path, content_length=True) == 200
    after = store.get(ORDERS, order["Ref_Key"])
    assert after["Posted"] is True and after["DataVersion"] != order["DataVersion"]


def test_posting_a_deleted_document_fails_like_1c(odata, store: SimStore) -> None:
    order = next(o for o in store.rows(ORDERS) if o["DeletionMark"])
    response = odata.http.post(odata.url(f"{ORDERS}(guid'{order['Ref_Key']}')/Post"), timeout=10)
    assert response.status_code == 500
    assert "помечен на удаление" in response.json()["odata.error"]["message"]["value"]


def test_delete(odata, store: SimStore) -> None:
    card = store.rows("Catalog_КартыЛояльности")[-1]["Ref_Key"]
    assert (
        odata.http.delete(odata.url(f"Catalog_КартыЛояльности(guid'{card}')"), timeout=10).status_code == 200
    )
    assert store.get("Catalog_КартыЛояльности", card) is None


def test_mounted_route_gets_method_path_headers_body(sim: Simulator, http) -> None:
    seen = []

    def handler(method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        seen.append((method, path, headers.get("SOAPAction"), body))
        return 200, {"Content-Type": "text/xml; charset=utf-8"}, "<ответ/>".encode()

    sim.add_route("/ut11/ws/LoyaltyBridge.1cws", handler)
    url = sim.base_url + "/ws/LoyaltyBridge.1cws"
    response = http.post(url, data=b"<x/>", headers={"SOAPAction": "urn:a"}, timeout=10)
    assert response.status_code == 200 and response.text == "<ответ/>"
    assert http.get(url + "?wsdl", timeout=10).status_code == 200
    assert seen[0] == ("POST", "/ut11/ws/LoyaltyBridge.1cws", "urn:a", b"<x/>")
    assert seen[1][1] == "/ut11/ws/LoyaltyBridge.1cws?wsdl"
    import requests

    assert requests.get(url, timeout=10).status_code == 401
    assert sim.store.requests[("POST", "route")] == 1


def test_a_body_cut_short_is_never_applied(sim: Simulator, store: SimStore) -> None:
    """A client killed mid-body (``Content-Length`` promised more than came): like IIS, nothing
    reaches 1C — no card created from the half it got, not even a request recorded."""
    parts = urlsplit(sim.odata_url)
    cards = "Catalog_КартыЛояльности"
    before = len(store.rows(cards)), sum(store.requests.values())
    body = json.dumps({"Штрихкод": "2000000000091", "Description": "cut"}).encode()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    token = base64.b64encode(f"{sim.username}:{sim.password}".encode()).decode()
    conn.putrequest("POST", parts.path + "/" + quote(cards) + "?$format=json")
    conn.putheader("Authorization", f"Basic {token}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[:10])
    conn.sock.shutdown(socket.SHUT_WR)  # the client is gone: no more bytes will come
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()
    conn.close()
    assert sim.wait_settled(5)
    assert (len(store.rows(cards)), sum(store.requests.values())) == before
