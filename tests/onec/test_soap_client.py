"""SoapClient against the simulator's LoyaltyBridge service over real HTTP (zeep end to end)."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from zeep.wsdl.bindings.soap import Soap11Binding

from bridge.errors import FatalHTTPError, OneCError, TransientError, UnavailableError
from bridge.net import OutcomeUnknownError, RetryPolicy
from bridge.onec.mapping import load_mapping
from bridge.onec.soap import AttributeValue, SoapClient, bundled_wsdl
from bridge.onec.soap_rows import customer_as_odata_row, order_as_odata_row
from bridge.simulator import EXCHANGE_PLAN, SimStore, Simulator, load_sample
from bridge.simulator.soap import SoapService, mount

FIXTURE_WSDL = Path(__file__).parents[2] / "fixtures" / "onec" / "LoyaltyBridge.wsdl"
ORDERS = "Document_ЗаказКлиента"
PARTNERS = "Catalog_Партнеры"
USER, PASSWORD = "Кассир Мария", "пароль№1"
MSK = ZoneInfo("Europe/Moscow")
UT11 = load_mapping(Path(__file__).parents[2] / "mappings" / "ut11.yaml")


@pytest.fixture
def store() -> SimStore:
    store = SimStore()
    load_sample(store)
    return store


@pytest.fixture
def sim(store: SimStore) -> Iterator[Simulator]:
    with Simulator(store, username=USER, password=PASSWORD) as simulator:
        simulator.soap = mount(simulator, store)  # type: ignore[attr-defined]
        yield simulator


def ws_url(sim: Simulator) -> str:
    return f"{sim.base_url}/ws/LoyaltyBridge.1cws"


def client(sim: Simulator, **kwargs: object) -> SoapClient:
    kwargs.setdefault("timeout_s", 5)
    return SoapClient(ws_url(sim) + "?wsdl", USER, PASSWORD, **kwargs)  # type: ignore[arg-type]


def order_by_number(store: SimStore, number: str) -> dict:
    return next(r for r in store.rows(ORDERS) if r["Number"] == number)


def node_key(store: SimStore) -> str:
    return store.rows(EXCHANGE_PLAN)[0]["Ref_Key"]


def test_round_trip_changes_order_write_confirm(sim: Simulator, store: SimStore) -> None:
    order = order_by_number(store, "УТ-00000102")
    store.patch(ORDERS, order["Ref_Key"], {"Комментарий": "закрыт кассиром"})  # registers the change
    partner = store.rows(PARTNERS)[0]["Ref_Key"]
    store.patch(PARTNERS, partner, {"Description": "Соколов Дмитрий"})
    c = client(sim)

    changes = c.get_changes(0)
    assert changes.message_no == 1
    assert changes.orders == (order["Ref_Key"],)
    assert changes.customers == (partner,)
    assert changes.deleted == ()

    got = c.get_order(order["Ref_Key"])
    stored = store.get(ORDERS, order["Ref_Key"])
    assert got.version == stored["DataVersion"]
    assert got.number == "УТ-00000102" and got.status == "Закрыт" and got.posted
    assert got.date == datetime(*stored["Date"].timetuple()[:6])
    assert got.document_amount == Decimal("20000") and isinstance(got.document_amount, Decimal)
    assert [line.amount for line in got.lines] == [r["Сумма"] for r in stored["Товары"]]
    assert all(isinstance(line.quantity, Decimal) for line in got.lines)

    version = c.write_order_loyalty(
        got.ref,
        {
            "Бонусы начислено": Decimal("1400.50"),
            "Бонусы доступны с": datetime(2026, 3, 15, 0, 0),
            "Выдать дисконтную карту": True,
            "Лояльность: сообщение": "",
        },
        expected_version=got.version,
    )
    after = store.get(ORDERS, got.ref)
    assert version == after["DataVersion"] != got.version
    assert store.attribute(ORDERS, got.ref, "Бонусы начислено") == Decimal("1400.50")
    assert store.attribute(ORDERS, got.ref, "Бонусы доступны с") == datetime(2026, 3, 15)
    assert store.attribute(ORDERS, got.ref, "Выдать дисконтную карту") is True
    assert store.attribute(ORDERS, got.ref, "Лояльность: сообщение") == ""

    assert c.confirm(changes.message_no) is True
    assert store.pending_changes(node_key(store)) == []  # own write not echoed back to the node
    assert store.get(EXCHANGE_PLAN, node_key(store))["ReceivedNo"] == 1
    assert sim.soap.calls == ["GetChanges", "GetOrder", "WriteOrderLoyalty", "ConfirmChanges"]  # type: ignore[attr-defined]

    reread = c.get_order(got.ref)
    values = {a.name: a.value for a in reread.attributes}
    assert values["Бонусы начислено"] == Decimal("1400.50")
    assert values["Бонусы доступны с"] == datetime(2026, 3, 15)
    assert values["Выдать дисконтную карту"] is True
    assert c.get_changes(changes.message_no).message_no == 2


def test_stale_expected_version_is_a_onec_error_with_russian_text(sim: Simulator, store: SimStore) -> None:
    order = order_by_number(store, "УТ-00000101")
    c = client(sim)
    got = c.get_order(order["Ref_Key"])
    store.set_attribute(ORDERS, got.ref, "Бонусы к списанию", Decimal(300))  # an operator edits it

    with pytest.raises(OneCError) as caught:
        c.write_order_loyalty(got.ref, {"Бонусы списано": Decimal(300)}, expected_version=got.version)
    error = caught.value
    assert error.onec_message.startswith("Заказ клиента УТ-00000101 изменен другим пользователем")
    assert not error.onec_message.startswith("{")  # 1C's module position is stripped
    assert error.code == "soap:Server" and error.status == 500
    assert store.attribute(ORDERS, got.ref, "Бонусы списано") is None


def test_soap_fault_maps_to_onec_error(sim: Simulator) -> None:
    c = client(sim)
    with pytest.raises(OneCError, match="не найден") as caught:
        c.get_order("6f1c2a4e-0000-4000-8000-00000000dead")
    assert "Заказ клиента с идентификатором" in caught.value.onec_message
    with pytest.raises(OneCError, match="Не найден дополнительный реквизит «Нет такого»"):
        c.write_order_loyalty(_any_order(sim), {"Нет такого": "x"})


def _any_order(sim: Simulator) -> str:
    return sim.store.rows(ORDERS)[0]["Ref_Key"]


def test_customer_and_odata_row_shapes(sim: Simulator, store: SimStore) -> None:
    partner = store.rows(PARTNERS)[0]
    c = client(sim)
    customer = c.get_customer(partner["Ref_Key"])
    assert customer.name == "Соколов Дмитрий Андреевич"
    assert customer.phone == "+79161234567" and customer.email == "d.sokolov@mail.ru"
    row = customer_as_odata_row(customer, UT11)
    assert row["Ref_Key"] == partner["Ref_Key"] and row["DataVersion"] == partner["DataVersion"]
    assert [(r["Тип"], r["НомерТелефона"], r["АдресЭП"]) for r in row["КонтактнаяИнформация"]] == [
        ("Телефон", "+79161234567", ""),
        ("АдресЭлектроннойПочты", "", "d.sokolov@mail.ru"),
    ]
    assert row["ДополнительныеРеквизиты"][0]["Свойство"]["Description"] == "Статус бонусной карты"
    assert row["ДополнительныеРеквизиты"][0]["Значение"] == "Золотой"

    stored = order_by_number(store, "УТ-00000101")
    odata = order_as_odata_row(c.get_order(stored["Ref_Key"]), UT11)
    assert odata["Date"] == stored["Date"].strftime("%Y-%m-%dT%H:%M:%S")
    assert odata["Партнер_Key"] == stored["Партнер_Key"]
    assert odata["КартаЛояльности_Key"] == stored["КартаЛояльности_Key"]
    line, stored_line = odata["Товары"][0], stored["Товары"][0]
    assert line["LineNumber"] == "1"
    for name in ("Количество", "Цена", "Сумма", "СуммаНДС", "СуммаСНДС", "СтавкаНДС_Key", "Номенклатура_Key"):
        assert line[name] == stored_line[name], name
    attribute = odata["ДополнительныеРеквизиты"][0]
    assert attribute["Свойство_Key"] == stored["ДополнительныеРеквизиты"][0]["Свойство_Key"]
    assert (attribute["Значение"], attribute["Значение_Type"]) == (Decimal(500), "Edm.Double")
    assert attribute["Свойство"]["Description"] == "Бонусы к списанию"


def test_line_discounts_and_document_amount_are_written(sim: Simulator, store: SimStore) -> None:
    stored = order_by_number(store, "УТ-00000104")
    c = client(sim)
    got = c.get_order(stored["Ref_Key"])
    first = got.lines[0]
    discounted = dataclasses.replace(
        first,
        auto_discount_percent=Decimal(5),
        auto_discount_amount=(first.amount * Decimal("0.05")).quantize(Decimal("0.01")),
        amount=(first.amount * Decimal("0.95")).quantize(Decimal("0.01")),
    )
    total = got.document_amount - discounted.auto_discount_amount
    c.write_order_loyalty(got.ref, {}, got.version, lines=[discounted], document_amount=total)
    after = store.get(ORDERS, got.ref)
    assert after["Товары"][0]["ПроцентАвтоматическойСкидки"] == Decimal(5)
    assert after["Товары"][0]["Сумма"] == discounted.amount
    assert after["Товары"][1] == stored["Товары"][1]
    assert after["СуммаДокумента"] == total


def test_timezone_makes_dates_aware_and_writes_wall_clock(sim: Simulator, store: SimStore) -> None:
    stored = order_by_number(store, "УТ-00000103")
    c = client(sim, tz=MSK)
    got = c.get_order(stored["Ref_Key"])
    assert got.date.tzinfo is MSK and got.date.replace(tzinfo=None) == stored["Date"]
    assert order_as_odata_row(got, UT11)["Date"] == stored["Date"].strftime("%Y-%m-%dT%H:%M:%S")
    available = datetime(2026, 3, 14, 21, 0, tzinfo=ZoneInfo("UTC"))  # 00:00 on the 15th in Moscow
    c.write_order_loyalty(got.ref, [AttributeValue("Бонусы доступны с", available, "Date")])
    assert store.attribute(ORDERS, got.ref, "Бонусы доступны с") == datetime(2026, 3, 15)


def test_deleted_and_cleared_values(sim: Simulator, store: SimStore) -> None:
    stored = order_by_number(store, "УТ-00000101")
    c = client(sim)
    c.write_order_loyalty(stored["Ref_Key"], {"Бонусы к списанию": None})
    assert store.attribute(ORDERS, stored["Ref_Key"], "Бонусы к списанию") is None
    store.delete(ORDERS, stored["Ref_Key"])
    assert c.get_changes(0).deleted == (stored["Ref_Key"],)


def test_float_never_reaches_1c(sim: Simulator, store: SimStore) -> None:
    c = client(sim)
    with pytest.raises(TypeError, match="Decimal"):
        c.write_order_loyalty(_any_order(sim), {"Бонусы начислено": 1.5})  # type: ignore[dict-item]


def test_address_override_with_wsdl_naming_an_internal_host(sim: Simulator) -> None:
    assert b"srv-1c.internal" in FIXTURE_WSDL.read_bytes()
    plain = SoapClient(str(FIXTURE_WSDL), USER, PASSWORD, timeout_s=5)
    assert plain._bind()._binding_options["address"] == "http://srv-1c.internal/ut11/ws/LoyaltyBridge.1cws"

    c = SoapClient(str(FIXTURE_WSDL), USER, PASSWORD, address=ws_url(sim), timeout_s=5)
    assert c._bind()._binding_options["address"] == ws_url(sim)
    assert isinstance(c._bind()._binding, Soap11Binding)
    assert c.get_changes(0).message_no == 1

    shipped = SoapClient(bundled_wsdl(), USER, PASSWORD, address=ws_url(sim), timeout_s=5)
    assert shipped.confirm(1) is True


def test_fetched_wsdl_is_bound_to_the_soap11_port_at_the_real_address(sim: Simulator) -> None:
    c = client(sim)
    service = c._bind()
    assert isinstance(service._binding, Soap11Binding)
    assert service._binding.name.localname == "LoyaltyBridgeSoapBinding"
    assert service._binding_options["address"] == ws_url(sim)


def test_cyrillic_basic_auth_is_utf8(sim: Simulator) -> None:
    c = client(sim)
    assert c.get_changes(0).message_no == 1
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    prepared = c.transport.session.prepare_request(requests.Request("GET", ws_url(sim)))
    assert prepared.headers["Authorization"] == f"Basic {token}"

    wrong = SoapClient(ws_url(sim) + "?wsdl", USER, "не тот", timeout_s=5)
    with pytest.raises(FatalHTTPError) as caught:
        wrong.get_changes(0)
    assert caught.value.status == 401


def test_timeouts_are_explicit(sim: Simulator) -> None:
    c = client(sim, timeout_s=7)
    assert c.transport.load_timeout == 7
    assert c.transport.operation_timeout == 7
    assert c.settings.strict is False and c.settings.xml_huge_tree is True

    slow = client(sim, timeout_s=0.3)
    slow._bind()
    sim.faults.next("delay", seconds=1.5, match="POST /ut11/ws/")
    with pytest.raises(TransientError, match="ReadTimeout"):
        slow.get_changes(0)


def test_503_is_transient_and_retried(sim: Simulator) -> None:
    c = client(sim)
    c._bind()
    sim.faults.next("error503", match="POST /ut11/ws/")
    with pytest.raises(TransientError) as caught:
        c.get_changes(0)
    assert caught.value.fields["status"] == 503
    assert not isinstance(caught.value, OneCError)

    retried = client(sim, retry_policy=RetryPolicy(max_attempts=3, base_s=0, cap_s=0))
    sim.faults.next("error503", count=2)
    assert retried.get_changes(0).message_no >= 1

    sim.faults.next("error503", count=3)
    with pytest.raises(UnavailableError):
        retried.confirm(1)


def test_500_without_fault_on_a_checked_write_is_outcome_unknown(sim: Simulator, store: SimStore) -> None:
    c = client(sim)
    got = c.get_order(_any_order(sim))
    sim.faults.next("error500", match="POST /ut11/ws/")
    with pytest.raises(OutcomeUnknownError):
        c.write_order_loyalty(got.ref, {"Бонусы начислено": Decimal(1)}, got.version)


def test_a_standalone_service_can_be_mounted_on_a_custom_node(store: SimStore) -> None:
    node = store.put(EXCHANGE_PLAN, {"Code": "LOYALTY", "Description": "Мост лояльности"}, track=False)
    with Simulator(store, username=USER, password=PASSWORD) as simulator:
        simulator.add_route("/ut11/ws/LoyaltyBridge.1cws", SoapService(store, node=node["Ref_Key"]))
        store.patch(ORDERS, _any_order(simulator), {"Комментарий": "x"})
        c = client(simulator)
        changes = c.get_changes(0)
        assert len(changes.orders) == 1
        c.confirm(changes.message_no)
        assert store.get(EXCHANGE_PLAN, node["Ref_Key"])["ReceivedNo"] == changes.message_no


def test_order_row_normalises_like_the_odata_row_of_the_same_order(sim: Simulator, store: SimStore) -> None:
    from bridge.onec.normalize import normalize_row
    from bridge.simulator.wire import dumps, parse_json, render_row

    for stored in store.rows(ORDERS):
        odata = parse_json(dumps(render_row(store.schema[ORDERS], stored, nav_links=False)))
        expected = normalize_row(odata, MSK)
        ours = normalize_row(order_as_odata_row(client(sim, tz=MSK).get_order(stored["Ref_Key"]), UT11), MSK)
        for rows in ("Товары", "ДополнительныеРеквизиты"):
            for row in expected[rows]:
                row.pop("Ref_Key", None)
            for row in ours[rows]:
                row.pop("Свойство", None)
        assert {k: v for k, v in expected.items() if k in ours} == ours, stored["Number"]
