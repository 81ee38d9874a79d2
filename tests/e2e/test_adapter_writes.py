"""PATCH of an order's additional attributes end to end: ``order_attribute_patch`` with a real
``OrderView`` through ``ODataClient.patch_with_version`` into the simulator, read back from its
store; the same view again writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest

from bridge.domain.views import OrderView
from bridge.onec.mapping import resolve_attributes
from bridge.onec.writes import order_attribute_patch
from bridge.simulator import SimStore, Simulator, load_sample
from tests.e2e.test_adapter_kit import MSK, ORDERS, client, mapping


@pytest.fixture
def sim() -> Iterator[Simulator]:
    store = SimStore()
    load_sample(store)
    with Simulator(store) as simulator:
        yield simulator


def sample_view(key: str) -> OrderView:
    return OrderView(
        order_id=key,
        points_spent=Decimal(500),
        points_earned=Decimal(284),
        available_from=datetime(2026, 3, 15, 12, 0, tzinfo=MSK),
        message="",
        issue_card=True,
    )


def test_order_attributes_round_trip_and_an_unchanged_view_writes_nothing(sim: Simulator) -> None:
    m, c, store = mapping(), client(sim), sim.store
    chart = m.attributes
    keys = resolve_attributes(m, c.iter_all(chart.entity_set))
    order = next(r for r in store.rows(ORDERS) if r["Статус"] != "Закрыт")
    key, before = order["Ref_Key"], order["DataVersion"]
    view = sample_view(key)
    select = list(m.select_fields("orders"))

    def body(row: dict) -> dict:
        return order_attribute_patch(row, view, m, keys, MSK) or {}

    answer = c.patch_with_version(ORDERS, key, body, select=select)
    after = store.get(ORDERS, key)
    assert after is not None and after["DataVersion"] != before
    assert answer["DataVersion"] == after["DataVersion"]  # the version to record as the bridge's own
    assert store.attribute(ORDERS, key, "Бонусы списано") == Decimal(500)
    assert store.attribute(ORDERS, key, "Бонусы начислено") == Decimal(284)
    assert store.attribute(ORDERS, key, "Выдать дисконтную карту") is True
    assert str(store.attribute(ORDERS, key, "Бонусы доступны с")).startswith("2026-03-15")
    assert store.effective_writes[(ORDERS, key)] == 1
    assert store.if_match[-1] == (ORDERS, key, before)
    # attribute rows the bridge does not own survive (the section is sent whole)
    others = {r["Свойство_Key"] for r in order.get("ДополнительныеРеквизиты", [])}
    assert others <= {r["Свойство_Key"] for r in after["ДополнительныеРеквизиты"]}

    fresh = c.get_entity(ORDERS, key, select=select)
    assert fresh is not None and order_attribute_patch(fresh, view, m, keys, MSK) is None
    writes = store.writes[(ORDERS, key)]
    again = c.patch_with_version(ORDERS, key, body, select=select)
    assert store.writes[(ORDERS, key)] == writes  # no PATCH went out
    assert again["DataVersion"] == after["DataVersion"] == store.get(ORDERS, key)["DataVersion"]  # type: ignore[index]
