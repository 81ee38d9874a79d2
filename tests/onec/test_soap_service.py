"""The WSDL contract and the simulator's SoapService handler, called directly (no HTTP)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import zeep
from lxml import etree

from bridge.onec.soap import BINDING, NAMESPACE, bundled_wsdl
from bridge.simulator import EXCHANGE_PLAN, SimStore, load_sample
from bridge.simulator.soap import SOAP11, SoapService, default_wsdl

FIXTURE_WSDL = Path(__file__).parents[2] / "fixtures" / "onec" / "LoyaltyBridge.wsdl"
WSDL_NS = {"w": "http://schemas.xmlsoap.org/wsdl/", "s": "http://schemas.xmlsoap.org/wsdl/soap/"}
XS = "{http://www.w3.org/2001/XMLSchema}"
ORDERS = "Document_ЗаказКлиента"


@pytest.fixture
def store() -> SimStore:
    store = SimStore()
    load_sample(store)
    return store


def envelope(operation: str, body: str = "", ns: str = SOAP11) -> bytes:
    return (
        f'<e:Envelope xmlns:e="{ns}"><e:Body><m:{operation} xmlns:m="{NAMESPACE}">{body}'
        f"</m:{operation}></e:Body></e:Envelope>"
    ).encode()


def fault_text(body: bytes) -> str:
    doc = etree.fromstring(body)
    return doc.findtext(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/faultstring")


def test_fixture_and_shipped_wsdl_are_the_same_file() -> None:
    assert FIXTURE_WSDL.read_bytes() == default_wsdl().read_bytes() == Path(bundled_wsdl()).read_bytes()


def test_wsdl_loads_in_zeep_with_both_1c_ports() -> None:
    client = zeep.Client(str(FIXTURE_WSDL), settings=zeep.Settings(strict=False, xml_huge_tree=True))
    service = client.wsdl.services["LoyaltyBridge"]
    assert set(service.ports) == {"LoyaltyBridgeSoap", "LoyaltyBridgeSoap12"}
    assert BINDING in client.wsdl.bindings
    bound = client.bind("LoyaltyBridge", "LoyaltyBridgeSoap")
    operations = bound._binding._operations
    assert set(operations) == {"GetChanges", "ConfirmChanges", "GetOrder", "GetCustomer", "WriteOrderLoyalty"}
    for name, operation in operations.items():
        assert operation.output.signature(as_output=True).startswith("return: "), name
        assert operation.soapaction == f"{NAMESPACE}#LoyaltyBridge:{name}"


def test_wsdl_types_money_is_decimal_and_dates_are_datetime() -> None:
    doc = etree.parse(str(FIXTURE_WSDL))
    schema = doc.find("w:types", WSDL_NS)[0]

    def element_type(complex_type: str, element: str) -> str:
        node = schema.find(f"{XS}complexType[@name='{complex_type}']//{XS}element[@name='{element}']")
        return node.get("type")

    for name in ("Quantity", "Price", "Amount", "AutoDiscountPercent", "AutoDiscountAmount", "VATAmount"):
        assert element_type("OrderLine", name) == "xs:decimal", name
    assert element_type("Order", "DocumentAmount") == "xs:decimal"
    assert element_type("Order", "Date") == "xs:dateTime"
    assert element_type("Changes", "MessageNo") == "xs:long"
    assert doc.getroot().get("targetNamespace") == NAMESPACE
    assert schema.get("elementFormDefault") == "qualified"


def test_get_wsdl_rewrites_every_port_address(store: SimStore) -> None:
    service = SoapService(store)
    status, headers, body = service(
        "GET", "/ut11/ws/LoyaltyBridge.1cws?wsdl", {"Host": "127.0.0.1:8123"}, b""
    )
    assert status == 200 and headers["Content-Type"].startswith("text/xml")
    doc = etree.fromstring(body)
    locations = [a.get("location") for a in doc.iter("{*}address")]
    assert locations == ["http://127.0.0.1:8123/ut11/ws/LoyaltyBridge.1cws"] * 2

    fixed = SoapService(store, address=lambda: "http://sim/ut11/ws/LoyaltyBridge.1cws")
    _, _, body = fixed("GET", "/ut11/ws/LoyaltyBridge.1cws?wsdl", {}, b"")
    assert b"srv-1c.internal" not in body and b'location="http://sim/ut11/ws/LoyaltyBridge.1cws"' in body


def test_get_changes_numbers_messages_and_confirm_forgets_them(store: SimStore) -> None:
    service = SoapService(store)
    order = store.rows(ORDERS)[0]["Ref_Key"]
    store.patch(ORDERS, order, {"Комментарий": "1"})
    status, _, body = service(
        "POST", "/ut11/ws/LoyaltyBridge.1cws", {}, envelope("GetChanges", "<m:MessageNo>0</m:MessageNo>")
    )
    assert status == 200
    ret = etree.fromstring(body).find(f".//{{{NAMESPACE}}}return")
    assert ret.findtext(f"{{{NAMESPACE}}}MessageNo") == "1"
    assert [e.text for e in ret.findall(f"{{{NAMESPACE}}}Orders")] == [order]

    # not confirmed: the next message repeats it under a new number
    _, _, body = service("POST", "/", {}, envelope("GetChanges", "<m:MessageNo>0</m:MessageNo>"))
    assert etree.fromstring(body).findtext(f".//{{{NAMESPACE}}}MessageNo") == "2"
    _, _, body = service("POST", "/", {}, envelope("ConfirmChanges", "<m:MessageNo>2</m:MessageNo>"))
    assert etree.fromstring(body).findtext(f".//{{{NAMESPACE}}}return") == "true"
    assert store.pending_changes(store.rows(EXCHANGE_PLAN)[0]["Ref_Key"]) == []


def test_write_number_is_stored_as_decimal(store: SimStore) -> None:
    service = SoapService(store)
    order = store.rows(ORDERS)[0]
    field = (
        "<m:Fields><m:Item><m:Name>Бонусы начислено</m:Name><m:Kind>Number</m:Kind>"
        "<m:Value>142.10</m:Value></m:Item></m:Fields>"
    )
    version = f"<m:ExpectedVersion>{order['DataVersion']}</m:ExpectedVersion>"
    body = f"<m:Ref>{order['Ref_Key']}</m:Ref>{field}{version}"
    status, _, _ = service("POST", "/", {}, envelope("WriteOrderLoyalty", body))
    assert status == 200
    assert store.attribute(ORDERS, order["Ref_Key"], "Бонусы начислено") == Decimal("142.10")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"not xml", "Ошибка разбора XML"),
        (envelope("GetChanges", ns="http://www.w3.org/2003/05/soap-envelope"), "SOAP 1.1"),
        (envelope("DropDatabase"), "Операция DropDatabase не найдена"),
        (envelope("GetOrder", "<m:Ref>не гуид</m:Ref>"), "Неверный уникальный идентификатор"),
    ],
)
def test_bad_requests_are_faults_in_russian(store: SimStore, payload: bytes, expected: str) -> None:
    status, headers, body = SoapService(store)("POST", "/", {}, payload)
    assert status == 500 and headers["Content-Type"].startswith("text/xml")
    assert expected in fault_text(body)


def test_missing_node_is_a_fault_not_a_crash() -> None:
    status, _, body = SoapService(SimStore())(
        "POST", "/", {}, envelope("GetChanges", "<m:MessageNo>0</m:MessageNo>")
    )
    assert status == 500 and "Не найден узел плана обмена" in fault_text(body)


def test_other_methods_are_refused(store: SimStore) -> None:
    assert SoapService(store)("GET", "/ut11/ws/LoyaltyBridge.1cws", {}, b"")[0] == 405
    assert SoapService(store)("PUT", "/ut11/ws/LoyaltyBridge.1cws", {}, b"")[0] == 405


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("bridge/onec/soap.py", {"bridge.errors", "bridge.net"}),
        ("bridge/onec/soap_rows.py", {"bridge.onec.soap", "bridge.onec.mapping"}),
        ("bridge/simulator/soap.py", {"bridge.simulator"}),
    ],
)
def test_soap_modules_import_only_what_their_docstrings_allow(path: str, allowed: set[str]) -> None:
    import ast

    tree = ast.parse((Path(__file__).parents[2] / path).read_text(encoding="utf-8"))
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {n for n in names if n == "bridge" or n.startswith("bridge.")}
    assert all(any(n == a or n.startswith(a + ".") for a in allowed) for n in ours), ours
