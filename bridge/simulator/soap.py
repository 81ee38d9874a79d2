"""``SoapService``: the ``LoyaltyBridge`` web service of the 1C extension, simulated over ``SimStore``.

Owns the server side of ``fixtures/onec/LoyaltyBridge.wsdl`` as a route handler
(``handler(method, path, headers, body) -> (status, headers, body)``): ``GET …?wsdl`` answers the
WSDL with both ports' addresses rewritten to where the simulator actually listens; ``POST`` takes
SOAP 1.1 envelopes (parsed with lxml, entities off) and implements ``GetChanges``,
``ConfirmChanges``, ``GetOrder``, ``GetCustomer`` and ``WriteOrderLoyalty`` the way
``docs/onec-extension.bsl`` does in a real infobase. Errors are ``soap:Fault`` with HTTP 500 and a
Russian ``faultstring`` prefixed by the module position, as 1C writes them. Authentication, faults
injection and request accounting are the server's (``Simulator.add_route``); :func:`mount` wires it.
Must not import anything of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from lxml import etree

from bridge.simulator.schema import EMPTY_GUID, PROPERTIES, UNDEFINED_TYPE
from bridge.simulator.store import ATTRIBUTES, EXCHANGE_PLAN, SimStore

NS = "http://onec-loyalty-bridge.org/ws/loyalty"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
PATH = "/ws/LoyaltyBridge.1cws"
ORDERS = "Document_ЗаказКлиента"
PARTNERS = "Catalog_Партнеры"
XML_TYPE = "text/xml; charset=utf-8"
# Where a real extension would raise: 1C prefixes the fault string with the module position.
MODULE = "{ВебСервис.LoyaltyBridge.Модуль(%d)}: "
# Goods row: (SOAP element, stored property, optional in the answer); matches the WSDL's order.
LINE_FIELDS = (
    ("Quantity", "Количество"),
    ("Price", "Цена"),
    ("Amount", "Сумма"),
    ("ManualDiscountPercent", "ПроцентРучнойСкидки"),
    ("ManualDiscountAmount", "СуммаРучнойСкидки"),
    ("AutoDiscountPercent", "ПроцентАвтоматическойСкидки"),
    ("AutoDiscountAmount", "СуммаАвтоматическойСкидки"),
)
WRITABLE_LINE_FIELDS = {
    "AutoDiscountPercent": "ПроцентАвтоматическойСкидки",
    "AutoDiscountAmount": "СуммаАвтоматическойСкидки",
    "Amount": "Сумма",
    "VATAmount": "СуммаНДС",
    "AmountWithVAT": "СуммаСНДС",
}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
SOAP_BIND = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP12_BIND = "http://schemas.xmlsoap.org/wsdl/soap12/"

Reply = tuple[int, dict[str, str], bytes]


class SoapFault(Exception):
    """An exception the 1C module raises (``ВызватьИсключение``): becomes a ``soap:Fault``."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def default_wsdl() -> Path:
    """The WSDL the package ships (``bridge/simulator/data/LoyaltyBridge.wsdl``)."""
    return Path(__file__).with_name("data") / "LoyaltyBridge.wsdl"


class SoapService:
    """The route handler. ``address`` (a URL or a callable giving one) is written into the WSDL;
    without it the request's ``Host`` header is used. ``node`` is the exchange plan node the
    service reads for (the extension's constant); by default the plan's first node.
    """

    def __init__(
        self,
        store: SimStore,
        wsdl_path: str | Path | None = None,
        *,
        address: str | Callable[[], str] | None = None,
        node: str | None = None,
    ) -> None:
        self.store = store
        self.wsdl = Path(wsdl_path or default_wsdl()).read_bytes()
        self.address = address
        self.node = node
        self.calls: list[str] = []  # operation names, in order (tests assert on them)

    def __call__(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        if method == "GET":
            if path.lower().endswith("?wsdl"):
                return 200, {"Content-Type": XML_TYPE}, self._wsdl(path, headers)
            return 405, {"Content-Type": "text/plain; charset=utf-8"}, "Метод не поддерживается".encode()
        if method != "POST":
            return 405, {"Content-Type": "text/plain; charset=utf-8"}, "Метод не поддерживается".encode()
        try:
            envelope = etree.fromstring(body, parser=_PARSER)
        except etree.XMLSyntaxError:
            return _fault("soap:Client", "Ошибка разбора XML: сообщение не является SOAP-конвертом")
        if envelope.tag != f"{{{SOAP11}}}Envelope":
            return _fault("soap:VersionMismatch", "Поддерживается только SOAP 1.1 (порт LoyaltyBridgeSoap)")
        request = envelope.find(f"{{{SOAP11}}}Body/*")
        if request is None or etree.QName(request).namespace != NS:
            return _fault("soap:Client", "Операция не найдена")
        operation = etree.QName(request).localname
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            return _fault("soap:Client", f"Операция {operation} не найдена")
        self.calls.append(operation)
        try:
            result = handler(request)
        except SoapFault as fault:
            return _fault("soap:Server", MODULE % fault.line + fault.message)
        except Exception as exc:  # a simulator bug must still look like a 1C fault, not a dead socket
            return _fault("soap:Server", MODULE % 1 + f"Внутренняя ошибка симулятора: {exc!r}")
        response = etree.Element(f"{{{NS}}}{operation}Response", nsmap={"m": NS})
        result.tag = f"{{{NS}}}return"
        response.append(result)
        return 200, {"Content-Type": XML_TYPE}, _envelope(response)

    # -- operations (each returns the ``return`` element) ----------------------------------------

    def op_GetChanges(self, request: etree._Element) -> etree._Element:
        confirmed = _int(_text(request, "MessageNo"))
        node = self._node()
        row = self.store.get(EXCHANGE_PLAN, node) or {}
        number = max(int(row.get("SentNo", 0)), int(row.get("ReceivedNo", 0)), confirmed) + 1
        changes = self.store.changes_since(node, number)
        groups: dict[str, list[str]] = {"Orders": [], "Customers": [], "Deleted": []}
        for change in changes:  # the node also registers returns, sales, cards: not in this contract
            if change.entity_set in (ORDERS, PARTNERS):
                kind = (
                    "Deleted" if change.deleted else "Orders" if change.entity_set == ORDERS else "Customers"
                )
                groups[kind].append(change.key)
        out = _el("return")
        _add(out, "MessageNo", str(number))
        for name, keys in groups.items():  # the XSD sequence: Orders, Customers, Deleted
            for key in keys:
                _add(out, name, key)
        return out

    def op_ConfirmChanges(self, request: etree._Element) -> etree._Element:
        self.store.acknowledge(self._node(), _int(_text(request, "MessageNo")))
        return _el("return", "true")

    def op_GetOrder(self, request: etree._Element) -> etree._Element:
        ref = _guid(_text(request, "Ref"))
        row = self.store.get(ORDERS, ref)
        if row is None:
            raise SoapFault(f"Заказ клиента с идентификатором {ref} не найден", 40)
        out = _el("return")
        for name, value in (
            ("Ref", row["Ref_Key"]),
            ("DataVersion", row["DataVersion"]),
            ("Number", row.get("Number", "")),
            ("Date", _lexical(row.get("Date"))),
            ("Posted", _lexical(bool(row.get("Posted")))),
            ("DeletionMark", _lexical(bool(row.get("DeletionMark")))),
            ("Status", row.get("Статус", "")),
        ):
            _add(out, name, value)
        for name, field in (("Partner", "Партнер_Key"), ("LoyaltyCard", "КартаЛояльности_Key")):
            if row.get(field, EMPTY_GUID) != EMPTY_GUID:
                _add(out, name, row[field])
        _add(out, "DocumentAmount", _lexical(row.get("СуммаДокумента", Decimal(0))))
        _add(out, "PriceIncludesVAT", _lexical(bool(row.get("ЦенаВключаетНДС"))))
        for line in row.get("Товары", []):
            goods = _add(out, "Goods")
            _add(goods, "LineNumber", str(line["LineNumber"]))
            _add(goods, "Product", line.get("Номенклатура_Key", EMPTY_GUID))
            for element, field in LINE_FIELDS:
                _add(goods, element, _lexical(line.get(field, Decimal(0))))
            vat = line.get("СтавкаНДС_Key", line.get("СтавкаНДС"))
            if vat not in (None, "", EMPTY_GUID):
                _add(goods, "VATRate", vat)
            for element, field in (("VATAmount", "СуммаНДС"), ("AmountWithVAT", "СуммаСНДС")):
                if field in line:
                    _add(goods, element, _lexical(line[field]))
            _add(goods, "Cancelled", _lexical(bool(line.get("Отменено"))))
        self._attributes(out, row)
        return out

    def op_GetCustomer(self, request: etree._Element) -> etree._Element:
        ref = _guid(_text(request, "Ref"))
        row = self.store.get(PARTNERS, ref)
        if row is None:
            raise SoapFault(f"Партнер с идентификатором {ref} не найден", 75)
        out = _el("return")
        _add(out, "Ref", row["Ref_Key"])
        _add(out, "DataVersion", row["DataVersion"])
        _add(out, "Description", row.get("Description", ""))
        _add(out, "DeletionMark", _lexical(bool(row.get("DeletionMark"))))
        _add(out, "IsClient", _lexical(bool(row.get("Клиент", True))))
        contacts = row.get("КонтактнаяИнформация", [])
        phone = next((c for c in contacts if c.get("Тип") == "Телефон"), None)
        email = next((c for c in contacts if c.get("Тип") == "АдресЭлектроннойПочты"), None)
        if phone is not None:
            _add(out, "Phone", phone.get("НомерТелефона") or phone.get("Представление", ""))
        if email is not None:
            _add(out, "Email", email.get("АдресЭП") or email.get("Представление", ""))
        self._attributes(out, row)
        return out

    def op_WriteOrderLoyalty(self, request: etree._Element) -> etree._Element:
        ref = _guid(_text(request, "Ref"))
        row = self.store.get(ORDERS, ref)
        if row is None:
            raise SoapFault(f"Заказ клиента с идентификатором {ref} не найден", 110)
        expected = _text(request, "ExpectedVersion")
        if expected and expected != row["DataVersion"]:
            raise SoapFault(
                f"Заказ клиента {row.get('Number', '')} изменен другим пользователем после чтения: "
                f"версия данных {row['DataVersion']}, ожидалась {expected}. "
                "Перечитайте заказ и повторите запись.",
                118,
            )
        section = [dict(r) for r in row.get(ATTRIBUTES, [])]
        for item in request.findall(f"{{{NS}}}Fields/{{{NS}}}Item"):
            section = self._set_attribute(section, item)
        changes: dict[str, Any] = {
            ATTRIBUTES: [{k: v for k, v in r.items() if k != "LineNumber"} for r in section]
        }
        lines = request.findall(f"{{{NS}}}Lines/{{{NS}}}Item")
        if lines:
            goods = [dict(r) for r in row.get("Товары", [])]
            for item in lines:
                number = _int(_text(item, "LineNumber"))
                target = next((g for g in goods if int(g["LineNumber"]) == number), None)
                if target is None:
                    raise SoapFault(f"В заказе {row.get('Number', '')} нет строки товаров № {number}", 131)
                for element, field in WRITABLE_LINE_FIELDS.items():
                    text = _text(item, element)
                    if text is not None:
                        target[field] = _decimal(text)
            changes["Товары"] = [{k: v for k, v in g.items() if k != "LineNumber"} for g in goods]
        amount = _text(request, "DocumentAmount")
        if amount is not None:
            changes["СуммаДокумента"] = _decimal(amount)
        # The extension writes with ОбменДанными.Отправитель = the bridge's node, so 1C does not
        # register the bridge's own write back to it (the simulator has that one node: no tracking).
        written = self.store.patch(ORDERS, ref, changes, track=False)
        out = _el("return")
        _add(out, "DataVersion", written["DataVersion"])
        return out

    # -- helpers ---------------------------------------------------------------------------------

    def _node(self) -> str:
        if self.node:
            return self.node.lower()
        nodes = self.store.rows(EXCHANGE_PLAN)
        if not nodes:
            raise SoapFault("Не найден узел плана обмена ОбменСайтом для обмена с мостом лояльности", 20)
        return str(nodes[0]["Ref_Key"])

    def _attributes(self, out: etree._Element, row: Mapping[str, Any]) -> None:
        for r in row.get(ATTRIBUTES, []):
            prop = self.store.get(PROPERTIES, r["Свойство_Key"]) or {}
            item = _add(out, "Attributes")
            _add(item, "Name", prop.get("Description", ""))
            _add(item, "Property", r["Свойство_Key"])
            value, type_name = r.get("Значение"), r.get("Значение_Type", UNDEFINED_TYPE)
            kind = _kind(type_name, value)
            _add(item, "Kind", kind)
            value_el = _add(item, "Value", None if kind == "Empty" else _lexical(value))
            if kind == "Empty":
                value_el.set(f"{{{XSI}}}nil", "true")
            if kind == "Ref":
                _add(item, "RefType", type_name.removeprefix("StandardODATA."))

    def _set_attribute(self, section: list[dict[str, Any]], item: etree._Element) -> list[dict[str, Any]]:
        name = _text(item, "Name") or ""
        prop = _text(item, "Property") or self.store.property_key(name)
        if prop is None or self.store.get(PROPERTIES, prop) is None:
            raise SoapFault(
                f"Не найден дополнительный реквизит «{name}». Создайте его в разделе "
                "НСИ и администрирование - Общие настройки - Дополнительные реквизиты",
                150,
            )
        prop = prop.lower()
        kind, text = _text(item, "Kind") or "String", _text(item, "Value")
        section = [r for r in section if r["Свойство_Key"] != prop]
        if kind == "Empty" or text is None:
            return section
        value: Any
        type_name = {"Number": "Edm.Double", "Boolean": "Edm.Boolean", "Date": "Edm.DateTime"}.get(
            kind, "Edm.String"
        )
        if kind == "Number":
            value = _decimal(text)
        elif kind == "Boolean":
            value = text.strip().lower() in ("true", "1")
        elif kind == "Date":
            value = _date(text)
        elif kind == "Ref":
            value, type_name = _guid(text), "StandardODATA." + (_text(item, "RefType") or "Undefined")
        else:
            value = text
        long_text = value if isinstance(value, str) and len(value) > 1024 else ""
        section.append(
            {
                "Свойство_Key": prop,
                "Значение": value,
                "Значение_Type": type_name,
                "ТекстоваяСтрока": long_text,
            }
        )
        return section

    def _wsdl(self, path: str, headers: Mapping[str, str]) -> bytes:
        address = self.address() if callable(self.address) else self.address
        if not address:
            host = next((v for k, v in headers.items() if k.lower() == "host"), "127.0.0.1")
            address = f"http://{host}{path.split('?', 1)[0]}"
        doc = etree.fromstring(self.wsdl, parser=_PARSER)
        for ns in (SOAP_BIND, SOAP12_BIND):
            for element in doc.iter(f"{{{ns}}}address"):
                element.set("location", address)
        return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")


def mount(simulator: Any, store: SimStore | None = None, **options: Any) -> SoapService:
    """Serve the web service at ``/<infobase>/ws/LoyaltyBridge.1cws`` of a ``Simulator``.

    Returns the :class:`SoapService` (its ``calls`` list records the operations served).
    """
    service = SoapService(
        store if store is not None else simulator.store, address=lambda: simulator.base_url + PATH, **options
    )
    simulator.add_route(f"/{simulator.infobase}{PATH}", service)
    return service


# -- XML ----------------------------------------------------------------------------------------


def _el(name: str, text: str | None = None) -> etree._Element:
    element = etree.Element(f"{{{NS}}}{name}", nsmap={"m": NS})
    element.text = text
    return element


def _add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, f"{{{NS}}}{name}")
    child.text = text
    return child


def _text(parent: etree._Element, name: str) -> str | None:
    child = parent.find(f"{{{NS}}}{name}")
    if child is None or child.get(f"{{{XSI}}}nil") in ("true", "1"):
        return None
    return child.text or ""


def _envelope(payload: etree._Element) -> bytes:
    envelope = etree.Element(f"{{{SOAP11}}}Envelope", nsmap={"soap": SOAP11, "xsi": XSI})
    etree.SubElement(envelope, f"{{{SOAP11}}}Body").append(payload)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _fault(code: str, message: str) -> Reply:
    fault = etree.Element(f"{{{SOAP11}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = message
    etree.SubElement(fault, "detail")
    return 500, {"Content-Type": XML_TYPE}, _envelope(fault)


# -- values -------------------------------------------------------------------------------------


def _lexical(value: Any) -> str:
    """``XMLСтрока``: numbers without exponent or grouping, dates as the wall clock."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return str(int(value))
        return format(value.normalize(), "f")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return (
            value.replace(tzinfo=None, microsecond=0).isoformat() if value.year > 1 else "0001-01-01T00:00:00"
        )
    return "" if value is None else str(value)


def _kind(type_name: str, value: Any) -> str:
    if type_name == UNDEFINED_TYPE or value is None:
        return "Empty"
    if type_name.startswith("StandardODATA."):
        return "Ref"
    return {"Edm.Double": "Number", "Edm.Boolean": "Boolean", "Edm.DateTime": "Date"}.get(type_name, "String")


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation as exc:
        raise SoapFault(f"Значение «{text}» не является числом", 160) from exc


def _int(text: str | None) -> int:
    try:
        return int((text or "0").strip())
    except ValueError as exc:
        raise SoapFault(f"Значение «{text}» не является целым числом", 165) from exc


def _date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip().removesuffix("Z")).replace(tzinfo=None)
    except ValueError as exc:
        raise SoapFault(f"Значение «{text}» не является датой", 170) from exc


def _guid(text: str | None) -> str:
    try:
        return str(uuid.UUID((text or "").strip()))
    except ValueError as exc:
        raise SoapFault(f"Неверный уникальный идентификатор «{text}»", 175) from exc
