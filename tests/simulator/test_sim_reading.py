"""Reading over HTTP: 1C's JSON shape, paging, ``$inlinecount``, ordering, by key, auth, URL limit."""

from __future__ import annotations

import base64
import time

import requests

from bridge.simulator import EMPTY_GUID, SimStore, Simulator

ORDERS = "Document_ЗаказКлиента"


def test_values_in_1c_style(odata) -> None:
    body = odata.get(ORDERS, **{"$top": 50}).json()
    assert body["odata.metadata"].endswith("/$metadata#Document_ЗаказКлиента")
    order = next(o for o in body["value"] if o["Number"] == "УТ-00000101")
    assert order["Date"] == "2026-03-02T12:15:00"  # naive wall clock
    assert order["Статус"] == "КОтгрузке"
    assert order["СуммаДокумента"] == 14200 and isinstance(order["DataVersion"], str)
    line = order["Товары"][0]
    assert line["LineNumber"] == "1"  # Int64 as a string
    assert line["Ref_Key"] == order["Ref_Key"]
    assert isinstance(line["Сумма"], int | float)
    other = next(o for o in body["value"] if o["Number"] == "УТ-00000102")
    assert other["КартаЛояльности_Key"] == EMPTY_GUID
    props = {r["Свойство_Key"]: r for r in order["ДополнительныеРеквизиты"]}
    assert len(props) == 1
    (row,) = props.values()
    assert row["Значение"] == 500 and row["Значение_Type"] == "Edm.Double"


def test_decimal_precision_survives(odata) -> None:
    body = odata.get(ORDERS, **{"$top": 50}).text
    assert "3333.33" in body  # VAT extracted from 20 000 and kept exact


def test_select(odata) -> None:
    rows = odata.values(ORDERS, **{"$select": "Ref_Key,DataVersion", "$top": 3})
    assert len(rows) == 3 and all(set(r) == {"Ref_Key", "DataVersion"} for r in rows)
    bad = odata.get(ORDERS, **{"$select": "Ref_Key,Нет", "$top": 3})
    assert bad.status_code == 400 and "odata.error" in bad.json()


def test_select_by_key(odata) -> None:
    """One entity by key honours ``$select`` as a collection does, unknown names refused alike."""
    key = odata.values(ORDERS, **{"$top": 1})[0]["Ref_Key"]
    row = odata.get(f"{ORDERS}(guid'{key}')", **{"$select": "Ref_Key,DataVersion,Товары"}).json()
    assert set(row) == {"odata.metadata", "Ref_Key", "DataVersion", "Товары"} and row["Товары"]
    bad = odata.get(f"{ORDERS}(guid'{key}')", **{"$select": "Ref_Key,Нет"})
    assert bad.status_code == 400
    assert bad.json()["odata.error"]["message"]["value"] == "Неизвестное свойство 'Нет' в $select"


def test_paging_with_top_and_skip(odata) -> None:
    everything = [r["Ref_Key"] for r in odata.values(ORDERS, **{"$top": 100})]
    pages = []
    for skip in range(0, 8, 3):
        pages += [r["Ref_Key"] for r in odata.values(ORDERS, **{"$top": 3, "$skip": skip})]
    assert pages == everything and len(everything) == 8


def test_inlinecount_ignores_top_and_skip(odata) -> None:
    body = odata.get(ORDERS, **{"$top": 2, "$skip": 1, "$inlinecount": "allpages"}).json()
    assert body["odata.count"] == "8"
    assert len(body["value"]) == 8


def test_orderby_ref_key_is_not_guid_order(odata) -> None:
    keys = [r["Ref_Key"] for r in odata.values(ORDERS, **{"$orderby": "Ref_Key", "$top": 100})]
    assert sorted(keys) != keys
    desc = [r["Ref_Key"] for r in odata.values(ORDERS, **{"$orderby": "Ref_Key desc", "$top": 100})]
    assert desc == list(reversed(keys))


def test_orderby_fields(odata) -> None:
    dates = [r["Date"] for r in odata.values(ORDERS, **{"$orderby": "Date desc", "$top": 100})]
    assert dates == sorted(dates, reverse=True)
    rows = odata.values(ORDERS, **{"$orderby": "Статус asc, Date asc", "$top": 100})
    pairs = [(r["Статус"], r["Date"]) for r in rows]
    assert pairs == sorted(pairs)


def test_count_segment(odata) -> None:
    response = odata.http.get(
        odata.url(ORDERS + "/$count"), params={"$filter": "Статус eq 'Закрыт'"}, timeout=10
    )
    assert response.status_code == 200 and response.text == "4"


def test_get_without_top_works_and_is_counted_unbounded(odata, store: SimStore) -> None:
    assert len(odata.values(ORDERS)) == 8
    odata.values(ORDERS, **{"$top": 1})
    assert store.requests[("GET", "unbounded")] == 1
    assert store.requests[("GET", "collection")] == 1


def test_by_key_and_missing_key(odata, store: SimStore) -> None:
    key = store.rows(ORDERS)[0]["Ref_Key"]
    body = odata.get(f"{ORDERS}(guid'{key}')").json()
    assert body["Ref_Key"] == key and body["odata.metadata"].endswith("/@Element")
    missing = odata.get(f"{ORDERS}(guid'{EMPTY_GUID}')")
    assert missing.status_code == 404
    assert missing.json()["odata.error"]["message"]["lang"] == "ru"


def test_unknown_entity_set_and_atom_default(odata) -> None:
    assert odata.get("Document_НетТакого", **{"$top": 1}).status_code == 404
    atom = odata.http.get(odata.url(ORDERS), params={"$top": 1}, timeout=10)
    assert atom.status_code == 406


def test_cyrillic_basic_auth(sim: Simulator) -> None:
    url = sim.odata_url + "/Catalog_Партнеры"
    params = {"$format": "json", "$top": 1}
    assert requests.get(url, params=params, auth=sim.auth, timeout=10).status_code == 200
    token = base64.b64encode("Администратор:пароль".encode()).decode()
    assert (
        requests.get(url, params=params, headers={"Authorization": f"Basic {token}"}, timeout=10).status_code
        == 200
    )
    wrong = requests.get(url, params=params, auth=("Администратор".encode(), b"wrong"), timeout=10)
    assert wrong.status_code == 401 and "Basic" in wrong.headers["WWW-Authenticate"]
    assert requests.get(url, params=params, timeout=10).status_code == 401
    latin1 = base64.b64encode("Администратор:пароль".encode("cp1251")).decode()
    assert (
        requests.get(url, params=params, headers={"Authorization": f"Basic {latin1}"}, timeout=10).status_code
        == 401
    )


def test_long_query_string_gets_iis_html_404(odata, sim: Simulator) -> None:
    keys = " or ".join(f"Ref_Key eq guid'{EMPTY_GUID}'" for _ in range(40))
    response = odata.get(ORDERS, **{"$filter": keys, "$top": 40})
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "404.15" in response.text
    short = " or ".join(f"Ref_Key eq guid'{EMPTY_GUID}'" for _ in range(5))
    assert odata.get(ORDERS, **{"$filter": short, "$top": 5}).status_code == 200
    assert (
        len(requests.Request("GET", odata.url(ORDERS), params={"$filter": short}).prepare().url)
        < sim.max_query_bytes
    )


def test_service_root(odata) -> None:
    body = odata.http.get(odata.sim.odata_url + "/", params={"$format": "json"}, timeout=10).json()
    assert "Document_ЗаказКлиента" in {v["name"] for v in body["value"]}


def test_deep_skip_can_be_made_slow(store: SimStore) -> None:
    with Simulator(store, skip_cost=0.5) as sim:
        url = sim.odata_url + "/" + ORDERS
        started = time.monotonic()
        requests.get(url, params={"$format": "json", "$top": 1, "$skip": 600}, auth=sim.auth, timeout=10)
        assert time.monotonic() - started >= 0.3


def test_user_edits_are_not_counted_as_client_writes(store: SimStore) -> None:
    order = store.rows(ORDERS)[0]
    touched = store.touch(ORDERS, order["Ref_Key"])
    assert touched["DataVersion"] != order["DataVersion"]
    store.set_attribute(ORDERS, order["Ref_Key"], "Бонусы к списанию", 100)
    assert not store.writes and not store.effective_writes


def test_refused_requests_are_counted(odata, sim: Simulator, store: SimStore) -> None:
    requests.get(sim.odata_url + "/" + ORDERS, params={"$format": "json", "$top": 1}, timeout=10)
    odata.get(ORDERS, **{"$filter": "x" * 3000, "$top": 1})
    assert store.requests[("GET", "unauthorized")] == 1
    assert store.requests[("GET", "too_long")] == 1
    assert store.request_count() == 2


def test_a_chain_of_keys_is_served_by_key_with_the_same_answer_as_a_scan(odata) -> None:
    rows = odata.values(ORDERS, **{"$select": "Ref_Key,DataVersion,Number", "$top": 50})
    keys = [r["Ref_Key"] for r in rows[::2]] + ["0f8fad5b-d9cb-469f-a165-70867728950e"]  # one unknown
    chain = " or ".join(f"Ref_Key eq guid'{k.upper()}'" for k in keys)
    by_key = odata.values(ORDERS, **{"$select": "Ref_Key,Number", "$filter": chain, "$top": 100})
    # The same condition the fast path does not recognise (a trailing always-true term): a full scan.
    scanned = odata.values(
        ORDERS,
        **{"$select": "Ref_Key,Number", "$filter": f"({chain}) and Number ne 'нет'", "$top": 100},
    )
    assert by_key == scanned
    assert sorted(r["Ref_Key"] for r in by_key) == sorted(k for k in keys[:-1])
