"""Fault injection: every kind, matching, counts, and seeded random rates."""

from __future__ import annotations

import json
import time

import pytest
import requests

from bridge.simulator import SimStore, Simulator, load_sample

ORDERS = "Document_ЗаказКлиента"


def test_error500_is_a_russian_odata_error_once(odata, sim: Simulator) -> None:
    sim.faults.next("error500", message="Не удалось провести документ: период закрыт")
    first = odata.get(ORDERS, **{"$top": 1})
    assert first.status_code == 500
    error = first.json()["odata.error"]
    assert error["code"] == "-1" and error["message"] == {
        "lang": "ru",
        "value": "Не удалось провести документ: период закрыт",
    }
    assert odata.get(ORDERS, **{"$top": 1}).status_code == 200
    assert sim.faults.fired[0][0] == "error500"


def test_error503_and_error429(odata, sim: Simulator) -> None:
    sim.faults.next("error503")
    sim.faults.next("error429", retry_after=7)
    assert odata.get(ORDERS, **{"$top": 1}).status_code == 503
    throttled = odata.get(ORDERS, **{"$top": 1})
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"


def test_html_page_with_status_200(odata, sim: Simulator) -> None:
    sim.faults.next("html200")
    response = odata.get(ORDERS, **{"$top": 1})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        json.loads(response.text)


def test_bom_before_json(odata, sim: Simulator) -> None:
    sim.faults.next("bom")
    response = odata.get(ORDERS, **{"$top": 1})
    assert response.content.startswith(b"\xef\xbb\xbf")
    with pytest.raises(ValueError):
        json.loads(response.content.decode("utf-8"))
    assert len(json.loads(response.content.decode("utf-8-sig"))["value"]) == 1


def test_truncated_body(odata, sim: Simulator) -> None:
    sim.faults.next("truncated")
    with pytest.raises(requests.exceptions.RequestException):
        odata.get(ORDERS, **{"$top": 5})
    assert odata.get(ORDERS, **{"$top": 5}).status_code == 200


def test_truncated_json_with_clean_http(odata, sim: Simulator) -> None:
    sim.faults.next("truncated_json")
    response = odata.get(ORDERS, **{"$top": 5})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_delay(odata, sim: Simulator) -> None:
    sim.faults.next("delay", seconds=0.3)
    started = time.monotonic()
    assert odata.get(ORDERS, **{"$top": 1}).status_code == 200
    assert time.monotonic() - started >= 0.3
    sim.faults.next("delay", seconds=2)
    with pytest.raises(requests.exceptions.ReadTimeout):
        odata.http.get(odata.url(ORDERS), params={"$format": "json", "$top": 1}, timeout=0.3)


def test_connection_reset(odata, sim: Simulator) -> None:
    sim.faults.next("reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        odata.get(ORDERS, **{"$top": 1})
    assert odata.get(ORDERS, **{"$top": 1}).status_code == 200


def test_timeout_after_send_applies_the_write(odata, sim: Simulator, store: SimStore) -> None:
    order = store.rows(ORDERS)[0]
    url = odata.url(f"{ORDERS}(guid'{order['Ref_Key']}')")
    sim.faults.next("timeout_after_send", seconds=5)
    # Reads pass through untouched: the fault waits for a write.
    assert odata.get(ORDERS, **{"$top": 1}).status_code == 200
    with pytest.raises(requests.exceptions.Timeout):
        odata.http.patch(url, json={"Комментарий": "записано, ответа нет"}, timeout=0.5)
    assert store.get(ORDERS, order["Ref_Key"])["Комментарий"] == "записано, ответа нет"
    assert sim.faults.pending() == 0


def test_wait_settled_waits_for_a_delayed_write_not_for_a_hanging_answer(
    odata, sim: Simulator, store: SimStore
) -> None:
    order = store.rows(ORDERS)[0]
    url = odata.url(f"{ORDERS}(guid'{order['Ref_Key']}')")
    assert sim.wait_settled(0.01)  # nothing in flight
    sim.faults.next("delay", seconds=0.6)
    with pytest.raises(requests.exceptions.Timeout):
        odata.http.patch(url, json={"Комментарий": "поздно"}, timeout=0.2)
    assert not sim.wait_settled(0.05)  # 1C is still working on it: not written yet
    assert store.get(ORDERS, order["Ref_Key"])["Комментарий"] != "поздно"
    assert sim.wait_settled(5)
    assert store.get(ORDERS, order["Ref_Key"])["Комментарий"] == "поздно"
    # A write that is done but whose answer hangs is settled: its effects have happened.
    sim.faults.next("timeout_after_send", seconds=5)
    with pytest.raises(requests.exceptions.Timeout):
        odata.http.patch(url, json={"Комментарий": "записано"}, timeout=0.3)
    started = time.monotonic()
    assert sim.wait_settled(5) and time.monotonic() - started < 1


def test_match_by_callable_and_substring(odata, sim: Simulator) -> None:
    sim.faults.next("error503", count=2, match="Catalog_Партнеры")
    sim.faults.next("error500", match=lambda r: r.method == "GET" and "$metadata" in r.path)
    assert odata.get(ORDERS, **{"$top": 1}).status_code == 200
    assert odata.get("Catalog_Партнеры", **{"$top": 1}).status_code == 503
    assert odata.http.get(odata.url("$metadata"), timeout=10).status_code == 500
    assert odata.get("Catalog_Партнеры", **{"$top": 1}).status_code == 503
    assert odata.get("Catalog_Партнеры", **{"$top": 1}).status_code == 200


def test_unknown_kind_is_refused(sim: Simulator) -> None:
    with pytest.raises(ValueError):
        sim.faults.next("meteor")


def _run_with_rate(seed: int) -> list[str]:
    store = SimStore()
    load_sample(store)
    with Simulator(store) as sim:
        sim.faults.rate(0.5, kinds=["error500", "error503", "error429", "html200", "bom"], seed=seed)
        session = requests.Session()
        session.auth = sim.auth
        statuses = []
        for _ in range(30):
            statuses.append(
                session.get(
                    sim.odata_url + "/" + ORDERS, params={"$format": "json", "$top": 1}, timeout=10
                ).status_code
            )
        sim.faults.clear()
        assert session.get(sim.odata_url + "/" + ORDERS, params={"$format": "json", "$top": 1}, timeout=10).ok
        return [kind for kind, _ in sim.faults.fired] + [str(s) for s in statuses]


def test_rate_is_seeded_and_mixed() -> None:
    first, second = _run_with_rate(42), _run_with_rate(42)
    assert first == second
    kinds = {k for k in first if not k.isdigit()}
    assert len(kinds) >= 3
    assert 5 < sum(1 for k in first if not k.isdigit()) < 25


def test_control_characters_in_data(odata, sim: Simulator) -> None:
    sim.faults.next("control_chars")
    response = odata.get(ORDERS, **{"$top": 2})
    with pytest.raises(ValueError):
        json.loads(response.text)
    assert len(json.loads(response.text, strict=False)["value"]) == 2
