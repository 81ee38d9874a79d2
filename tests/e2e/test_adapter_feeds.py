"""The exchange-plan and SOAP change sources end to end against the simulator: 1C is told a
message arrived only after the cycle committed it; a crash before the commit gets the same changes
again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from bridge.onec.mapping import load_mapping
from bridge.onec.soap import SoapClient
from bridge.onec.sources import (
    EXCHANGE_MESSAGE_NO,
    SOAP_MESSAGE_NO,
    ExchangePlanSource,
    SoapSource,
)
from bridge.onec.translate import customer_from_row
from bridge.service.gateway import Gateway
from bridge.simulator import EXCHANGE_PLAN, SimStore, Simulator, load_sample
from bridge.simulator.soap import mount
from tests.e2e.test_adapter_kit import MSK, ORDERS, PARTNERS, ROOT, MemoryState, client, cycle, mapping

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=MSK)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    store = SimStore()
    load_sample(store)
    with Simulator(store) as simulator:
        yield simulator


def node(store: SimStore) -> str:
    return str(store.rows(EXCHANGE_PLAN)[0]["Ref_Key"])


def notified(store: SimStore) -> int:
    return sum(1 for r in store.log if r.path.endswith("/NotifyChangesReceived"))


def test_exchange_plan_acknowledges_only_after_the_commit(sim: Simulator) -> None:
    store = sim.store
    orders = [r["Ref_Key"] for r in store.rows(ORDERS)[:3]]
    for key in orders:
        store.patch(ORDERS, key, {"СуммаДокумента": Decimal("999.00")})
    partner = store.rows(PARTNERS)[0]["Ref_Key"]
    store.patch(PARTNERS, partner, {"Description": "Соколов Дмитрий Петрович"})
    state = MemoryState()

    # the cycle reads, then crashes before committing: nothing is acknowledged
    crashed = ExchangePlanSource(client(sim), mapping(), EXCHANGE_PLAN, node(store))
    first = list(crashed.read(state, NOW))
    assert {c.key for c in first if c.entity == "order"} == set(orders)
    assert ("customer", partner) in {(c.entity, c.key) for c in first}
    assert all(c.row and c.row["Ref_Key"] == c.key for c in first)  # rows from the feed's properties
    assert notified(store) == 0 and len(store.pending_changes(node(store))) >= 4

    # the restarted bridge reads the same message again
    src = ExchangePlanSource(client(sim), mapping(), EXCHANGE_PLAN, node(store))
    again = cycle(src, state, NOW, ack=False)
    assert [(c.entity, c.key) for c in again] == [(c.entity, c.key) for c in first]
    assert state.cursors[EXCHANGE_MESSAGE_NO] == "1"
    assert notified(store) == 0
    src.acknowledge()  # after the commit
    assert notified(store) == 1 and store.pending_changes(node(store)) == []
    assert store.get(EXCHANGE_PLAN, node(store))["ReceivedNo"] == 1  # type: ignore[index]

    # acknowledged: nothing comes again; a deletion comes as a row-less change
    assert cycle(src, state, NOW) == []
    store.delete(ORDERS, orders[0])
    gone = cycle(src, state, NOW)
    assert [(c.entity, c.key, c.row) for c in gone] == [("order", orders[0], None)]
    assert state.cursors[EXCHANGE_MESSAGE_NO] == "3"


def test_exchange_plan_skips_the_bridges_own_write_back(sim: Simulator) -> None:
    store = sim.store
    key = store.rows(ORDERS)[0]["Ref_Key"]
    state = MemoryState()
    src = ExchangePlanSource(client(sim), mapping(), EXCHANGE_PLAN, node(store))
    answer = src.client.patch(ORDERS, key, {"СуммаДокумента": Decimal("1.00")})  # as a write-back would
    state.docs.setdefault("order", {})[key] = (answer["DataVersion"], None, False)  # recorded with it
    state.docs.setdefault("customer", {}).update(
        {r["Ref_Key"]: (r["DataVersion"], None, False) for r in store.rows(PARTNERS)}
    )
    assert [c for c in cycle(src, state, NOW) if c.entity == "order"] == []


def test_soap_source_round_trip_confirms_after_the_commit(sim: Simulator) -> None:
    store = sim.store
    service = mount(sim)
    order = next(r for r in store.rows(ORDERS) if r["Number"] == "УТ-00000102")
    store.patch(ORDERS, order["Ref_Key"], {"СуммаДокумента": Decimal("14200.00")})
    soap = SoapClient(
        f"{sim.base_url}/ws/LoyaltyBridge.1cws?wsdl", sim.username, sim.password, timeout_s=10, tz=MSK
    )
    state = MemoryState()
    src = SoapSource(soap, mapping(), MSK)
    changes = list(src.read(state, NOW))
    orders = [c for c in changes if c.entity == "order"]
    assert [c.key for c in orders] == [order["Ref_Key"]]
    row = orders[0].row
    assert row is not None and row["СуммаДокумента"] == Decimal("14200.00")
    assert row["Date"].tzinfo is not None and row["Товары"] and row["ДополнительныеРеквизиты"] is not None
    customers = [c for c in changes if c.entity == "customer"]
    assert [c.key for c in customers] == [order["Партнер_Key"]]  # unknown to the state: read first
    assert changes.index(customers[0]) < changes.index(orders[0])
    assert "ConfirmChanges" not in service.calls  # crash here: nothing confirmed

    state.commit(src, changes)
    assert state.cursors[SOAP_MESSAGE_NO] == "1"
    src.acknowledge()
    assert service.calls[-1] == "ConfirmChanges"
    assert cycle(src, state, NOW) == []


def test_soap_rows_are_keyed_by_the_mappings_names(sim: Simulator, tmp_path: Path) -> None:
    """A modified configuration renames fields in a mapping that extends ut11.yaml: the rows the SOAP
    source builds carry those names (the service's own XML names stay the service's), so the
    translator finds the partner, the status, the goods and the attributes through the mapping."""
    renamed = {
        "version": 1,
        "extends": str(ROOT / "mappings" / "ut11.yaml"),
        "orders": {
            "fields": {"customer": "Контрагент_Key", "document_total": "СуммаЗаказа"},
            "status": {"field": "Состояние"},
            "lines": {"section": "Позиции", "fields": {"amount": "СуммаСтроки", "product": "Товар_Key"}},
        },
        "partners": {"fields": {"name": "Наименование"}, "contacts": {"phone_field": "Телефон"}},
        "attributes": {"value_field": "ЗначениеРеквизита"},
    }
    path = tmp_path / "renamed.yaml"
    path.write_text(yaml.safe_dump(renamed, allow_unicode=True), "utf-8")
    m = load_mapping(path)
    store = sim.store
    mount(sim)
    stored = next(r for r in store.rows(ORDERS) if r["Number"] == "УТ-00000101")
    store.patch(ORDERS, stored["Ref_Key"], {"Комментарий": "перезвонить"})  # registers the change
    soap = SoapClient(
        f"{sim.base_url}/ws/LoyaltyBridge.1cws?wsdl", sim.username, sim.password, timeout_s=10, tz=MSK
    )

    changes = list(SoapSource(soap, m, MSK).read(MemoryState(), NOW))

    row = next(c.row for c in changes if c.entity == "order")
    assert row is not None
    assert row["Контрагент_Key"] == stored["Партнер_Key"] and "Партнер_Key" not in row
    assert row["Состояние"] == stored["Статус"] and "Статус" not in row
    assert row["СуммаЗаказа"] == stored["СуммаДокумента"]
    assert [line["СуммаСтроки"] for line in row["Позиции"]] == [line["Сумма"] for line in stored["Товары"]]
    gateway = Gateway(client(sim), m, MSK, delivery_products=["Доставка"])
    order = gateway.order(row)
    assert order.customer_id == stored["Партнер_Key"]
    goods = stored["Товары"]
    assert [line.amount for line in order.lines] == [line["Сумма"] for line in goods]
    assert [line.product_id for line in order.lines] == [line["Номенклатура_Key"] for line in goods]
    assert order.redeem_requested == Decimal(500)  # an additional attribute, by the renamed value field
    assert order.document_total == stored["СуммаДокумента"]

    customer_row = next(c.row for c in changes if c.entity == "customer")
    assert customer_row is not None
    customer = customer_from_row(customer_row, m)
    partner = store.get(PARTNERS, stored["Партнер_Key"])
    assert partner is not None and customer.name == partner["Description"]
    assert customer.phone is not None and customer.phone.startswith("+7")
