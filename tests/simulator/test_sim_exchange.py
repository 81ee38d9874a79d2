"""The exchange plan over OData: SelectChanges (Atom, deletions as tombstones) and NotifyChangesReceived."""

from __future__ import annotations

from lxml import etree

from bridge.simulator import EXCHANGE_PLAN, SimStore, Simulator

ATOM = "{http://www.w3.org/2005/Atom}"
TOMB = "{http://purl.org/atompub/tombstone/1.0}"
D = "{http://schemas.microsoft.com/ado/2007/08/dataservices}"
ORDERS = "Document_ЗаказКлиента"


def _node(store: SimStore) -> str:
    return store.rows(EXCHANGE_PLAN)[0]["Ref_Key"]


def _call(odata, sim: Simulator, function: str, node: str, number: int):
    point = f"'{sim.odata_url}/{EXCHANGE_PLAN}(guid'{node}')'"
    return odata.http.post(
        odata.url(function), params={"DataExchangePoint": point, "MessageNo": number}, timeout=10
    )


def _feed(response) -> etree._Element:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/atom+xml")
    return etree.fromstring(response.content)


def test_select_notify_cycle(odata, sim: Simulator, store: SimStore) -> None:
    node = _node(store)
    assert _feed(_call(odata, sim, "SelectChanges", node, 1)).findall(f"{ATOM}entry") == []
    order = store.rows(ORDERS)[0]
    odata.http.patch(
        odata.url(f"{ORDERS}(guid'{order['Ref_Key']}')"), json={"Комментарий": "изменен"}, timeout=10
    )
    card = store.rows("Catalog_КартыЛояльности")[-1]["Ref_Key"]
    odata.http.delete(odata.url(f"Catalog_КартыЛояльности(guid'{card}')"), timeout=10)
    feed = _feed(_call(odata, sim, "SelectChanges", node, 1))
    (entry,) = feed.findall(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}id").endswith(f"{ORDERS}(guid'{order['Ref_Key']}')")
    props = entry.find(f"{ATOM}content").find(
        "{http://schemas.microsoft.com/ado/2007/08/dataservices/metadata}properties"
    )
    assert props.findtext(f"{D}Ref_Key") == order["Ref_Key"]
    assert props.findtext(f"{D}Комментарий") == "изменен"
    assert props.find(f"{D}Товары").findall(f"{D}element")
    (tomb,) = feed.findall(f"{TOMB}deleted-entry")
    assert tomb.get("ref").endswith(f"Catalog_КартыЛояльности(guid'{card}')")
    # Changed again before the notify: it must come again in the next message.
    odata.http.patch(
        odata.url(f"{ORDERS}(guid'{order['Ref_Key']}')"), json={"Комментарий": "снова"}, timeout=10
    )
    assert _call(odata, sim, "NotifyChangesReceived", node, 1).status_code == 200
    assert store.get(EXCHANGE_PLAN, node)["ReceivedNo"] == 1
    again = _feed(_call(odata, sim, "SelectChanges", node, 2))
    assert len(again.findall(f"{ATOM}entry")) == 1 and again.findall(f"{TOMB}deleted-entry") == []
    _call(odata, sim, "NotifyChangesReceived", node, 2)
    assert _feed(_call(odata, sim, "SelectChanges", node, 3)).findall(f"{ATOM}entry") == []


def test_unacknowledged_changes_are_sent_again(odata, sim: Simulator, store: SimStore) -> None:
    node = _node(store)
    order = store.rows(ORDERS)[1]
    store.patch(ORDERS, order["Ref_Key"], {"Статус": "Закрыт"})
    assert len(_feed(_call(odata, sim, "SelectChanges", node, 1)).findall(f"{ATOM}entry")) == 1
    # The reader crashed before committing: the same message number is asked again.
    assert len(_feed(_call(odata, sim, "SelectChanges", node, 1)).findall(f"{ATOM}entry")) == 1


def test_bad_exchange_point(odata, sim: Simulator, store: SimStore) -> None:
    response = odata.http.post(
        odata.url("SelectChanges"), params={"DataExchangePoint": "'x'", "MessageNo": 1}, timeout=10
    )
    assert response.status_code == 400
    missing = _call(odata, sim, "SelectChanges", "00000000-0000-0000-0000-0000000000aa", 1)
    assert missing.status_code == 500 and "odata.error" in missing.json()


def test_store_api(store: SimStore) -> None:
    node = _node(store)
    order = store.rows(ORDERS)[0]["Ref_Key"]
    store.set_attribute(ORDERS, order, "Бонусы к списанию", 300)
    assert store.attribute(ORDERS, order, "Бонусы к списанию") == 300
    changes = store.changes_since(node, 5)
    assert [(c.entity_set, c.key, c.message_no) for c in changes] == [(ORDERS, order, 5)]
    assert store.acknowledge(node, 5) == 1
    assert store.pending_changes(node) == []
