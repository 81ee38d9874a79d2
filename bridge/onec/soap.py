"""The SOAP change source: a zeep client for the project's own 1C web service ``LoyaltyBridge``.

Owns :class:`SoapClient` (the operations of ``fixtures/onec/LoyaltyBridge.wsdl``), the plain results
it returns (:class:`Changes`, :class:`SoapOrder`, :class:`SoapCustomer`…). The service's XML
element names (``Partner``, ``Goods``…) are its own contract and live here; turning the results into
rows under the mapping's names is :mod:`bridge.onec.soap_rows`' job.

zeep against 1C, the traps handled here: the SOAP 1.1 port is bound explicitly (1C publishes a
SOAP 1.2 port too); the WSDL's address is often an internal host, so ``address`` overrides it;
``strict=False`` tolerates 1C's extra elements; every load and call has a timeout (zeep's default
is none); Basic auth is UTF-8 (Cyrillic logins). Failures map onto :mod:`bridge.errors`: a SOAP
fault is :class:`~bridge.errors.OneCError` (1C's Russian ``faultstring``), timeouts, resets and 5xx
without a fault are :class:`~bridge.errors.TransientError`, other 4xx
:class:`~bridge.errors.FatalHTTPError`. Retries belong to :mod:`bridge.net`'s policy.

Must not import ``bridge.store``/``site``/``service``: of the bridge, only ``errors`` and ``net``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

import requests
import zeep
import zeep.exceptions
from lxml import etree
from zeep.helpers import serialize_object

from bridge.errors import FatalHTTPError, OneCError
from bridge.net import (
    RetryPolicy,
    basic_auth_utf8,
    call_with_retry,
    classify_exception,
    classify_status,
    make_session,
    parse_retry_after,
)

NAMESPACE = "http://onec-loyalty-bridge.org/ws/loyalty"
SERVICE = "LoyaltyBridge"
PORT = "LoyaltyBridgeSoap"  # SOAP 1.1; "LoyaltyBridgeSoap12" is the 1.2 twin we never bind
BINDING = f"{{{NAMESPACE}}}LoyaltyBridgeSoapBinding"
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
EMPTY_DATE = datetime(1, 1, 1)
_SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
# 1C prefixes an exception raised in a module with where it happened: "{ВебСервис.X.Модуль(12)}: "
_MODULE_PREFIX = re.compile(r"^\s*\{[^}]*\}\s*:\s*")

Value = str | Decimal | bool | datetime | None


def bundled_wsdl() -> str:
    """Path of the WSDL shipped with the package (use it with ``address`` to skip ``?wsdl``)."""
    return str(resources.files("bridge") / "simulator" / "data" / "LoyaltyBridge.wsdl")


@dataclass(frozen=True, slots=True)
class AttributeValue:
    """An additional attribute by ``Description``; ``kind``: String Number Boolean Date Ref Empty."""

    name: str
    value: Value
    kind: str = "String"
    property: str | None = None  # the property's Ref_Key, when 1C sent it
    ref_type: str | None = None  # OData entity name of a Ref value


# SoapOrderLine's Decimal fields and their SOAP elements; the last two optional.
LINE_AMOUNTS = (
    ("quantity", "Quantity"),
    ("price", "Price"),
    ("amount", "Amount"),
    ("manual_discount_percent", "ManualDiscountPercent"),
    ("manual_discount_amount", "ManualDiscountAmount"),
    ("auto_discount_percent", "AutoDiscountPercent"),
    ("auto_discount_amount", "AutoDiscountAmount"),
    ("vat_amount", "VATAmount"),
    ("amount_with_vat", "AmountWithVAT"),
)


@dataclass(frozen=True, slots=True)
class SoapOrderLine:
    """One ``Товары`` row of an order (``vat_*`` are ``None`` when 1C did not send them)."""

    line_no: int
    product: str
    quantity: Decimal
    price: Decimal
    amount: Decimal
    manual_discount_percent: Decimal
    manual_discount_amount: Decimal
    auto_discount_percent: Decimal
    auto_discount_amount: Decimal
    cancelled: bool
    vat_rate: str | None = None  # a Catalog_СтавкиНДС key (UT 11.5) or an enum name (11.4)
    vat_amount: Decimal | None = None
    amount_with_vat: Decimal | None = None


@dataclass(frozen=True, slots=True)
class SoapOrder:
    """A ``ЗаказКлиента`` as ``GetOrder`` returns it (``date`` aware when the client has a tz)."""

    ref: str
    version: str
    number: str
    date: datetime
    posted: bool
    deleted: bool
    status: str
    partner: str | None
    card: str | None
    document_amount: Decimal
    price_includes_vat: bool
    lines: tuple[SoapOrderLine, ...] = ()
    attributes: tuple[AttributeValue, ...] = ()


@dataclass(frozen=True, slots=True)
class SoapCustomer:
    """A ``Партнеры`` item as ``GetCustomer`` returns it."""

    ref: str
    version: str
    name: str
    deleted: bool
    is_client: bool = True
    phone: str | None = None
    email: str | None = None
    attributes: tuple[AttributeValue, ...] = ()


@dataclass(frozen=True, slots=True)
class Changes:
    """One ``GetChanges`` answer: confirm ``message_no`` once its documents are committed locally."""

    message_no: int
    orders: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


class _CheckedTransport(zeep.Transport):
    """zeep's transport, but an HTTP error without a SOAP fault (an HTML 503 page, which zeep would
    call invalid XML or an "Unknown fault") is classified by :mod:`bridge.net`'s rules."""

    idempotent = True  # set per call by SoapClient (writes are not blindly repeatable)

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        try:
            response: requests.Response = super().post(address, message, headers)
        except requests.RequestException as exc:
            raise classify_exception(exc, url=address, idempotent=self.idempotent) from exc
        if response.status_code >= 400 and not _has_soap_fault(response.content):
            _raise_for_status(response, address, self.idempotent)
        return response

    def _load_remote_data(self, url: str) -> bytes:
        try:
            response = self.session.get(url, timeout=self.load_timeout)
        except requests.RequestException as exc:
            raise classify_exception(exc, url=url) from exc
        _raise_for_status(response, url, True)
        return bytes(response.content)


def _raise_for_status(response: requests.Response, url: str, idempotent: bool) -> None:
    wait = parse_retry_after(response.headers.get("Retry-After"))
    error = classify_status(
        response.status_code, url=url, retry_after=wait, body=response.text, idempotent=idempotent
    )
    if error is not None:
        raise error


def _has_soap_fault(content: bytes) -> bool:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True)
    doc = etree.fromstring(content or b"<x/>", parser=parser)
    return doc is not None and doc.find(f"{{{_SOAP11_ENV}}}Body/{{{_SOAP11_ENV}}}Fault") is not None


class SoapClient:
    """Client of the ``LoyaltyBridge`` web service published by the 1C extension.

    Args:
        wsdl: URL (``http://host/base/ws/LoyaltyBridge.1cws?wsdl``) or file path of the WSDL.
        username: the 1C user (Cyrillic is fine: sent as UTF-8).
        password: its password.
        address: the service URL to call instead of the WSDL's (often an internal host name).
        timeout_s: seconds for loading the WSDL and for every operation.
        retry_policy: retry transient failures under this policy; ``None`` makes one attempt.
        tz: 1C's wall-clock zone; dates come back aware in it (naive when ``None``).
        session: a prepared ``requests.Session`` (tests); auth is set on it.
    """

    def __init__(
        self,
        wsdl: str,
        username: str,
        password: str,
        *,
        address: str | None = None,
        timeout_s: float = 30,
        retry_policy: RetryPolicy | None = None,
        tz: tzinfo | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.wsdl, self.address, self.tz, self.retry_policy = wsdl, address, tz, retry_policy
        session = session or make_session(timeout=float(timeout_s))
        session.auth = basic_auth_utf8(username, password)  # requests' own auth is latin-1 only
        self.transport = _CheckedTransport(session=session, timeout=timeout_s, operation_timeout=timeout_s)
        self.settings = zeep.Settings(strict=False, xml_huge_tree=True)
        self._service: Any = None

    def _bind(self) -> Any:
        if self._service is None:
            try:
                client = zeep.Client(self.wsdl, transport=self.transport, settings=self.settings)
            except zeep.exceptions.Error as exc:
                raise FatalHTTPError(f"the WSDL at {self.wsdl} is unusable: {exc}", url=self.wsdl) from exc
            # Always the SOAP 1.1 binding: the default would be whichever port the WSDL lists first.
            bound = (
                client.create_service(BINDING, self.address) if self.address else client.bind(SERVICE, PORT)
            )
            self._service = bound
        return self._service

    def _call(self, operation: str, *, idempotent: bool = True, **params: Any) -> Any:
        def attempt() -> Any:
            service = self._bind()
            self.transport.idempotent = idempotent
            try:
                return getattr(service, operation)(**params)
            except zeep.exceptions.Fault as fault:
                raise _onec_error(operation, fault) from fault
            except zeep.exceptions.Error as exc:  # a 200 that is not XML, or not this contract's XML
                raise FatalHTTPError(
                    f"{operation}: unusable SOAP answer: {exc}", operation=operation
                ) from exc

        if self.retry_policy is None:  # HTTP failures are already classified by the transport
            return attempt()
        return call_with_retry(attempt, self.retry_policy, what=f"SOAP {operation}")

    def get_changes(self, message_no: int) -> Changes:
        """Documents changed for the site node since its last confirmed message (``GetChanges``)."""
        result = serialize_object(self._call("GetChanges", MessageNo=int(message_no)), dict)
        lists = (tuple(result.get(name) or ()) for name in ("Orders", "Customers", "Deleted"))
        return Changes(int(result["MessageNo"]), *lists)

    def confirm(self, message_no: int) -> bool:
        """Tell 1C that message ``message_no`` is committed locally (``ConfirmChanges``)."""
        return bool(self._call("ConfirmChanges", MessageNo=int(message_no)))

    def get_order(self, ref: str) -> SoapOrder:
        """One customer order with its goods rows and additional attributes (``GetOrder``)."""
        o = serialize_object(self._call("GetOrder", Ref=ref), dict)
        return SoapOrder(
            ref=o["Ref"],
            version=o["DataVersion"] or "",
            number=(o["Number"] or "").strip(),
            date=self._date(o["Date"]) or EMPTY_DATE,
            posted=bool(o["Posted"]),
            deleted=bool(o["DeletionMark"]),
            status=o["Status"] or "",
            partner=_ref(o.get("Partner")),
            card=_ref(o.get("LoyaltyCard")),
            document_amount=_dec(o.get("DocumentAmount")),
            price_includes_vat=bool(o.get("PriceIncludesVAT")),
            lines=tuple(_line(r) for r in o.get("Goods") or ()),
            attributes=tuple(self._attribute(a) for a in o.get("Attributes") or ()),
        )

    def get_customer(self, ref: str) -> SoapCustomer:
        """One partner with phone, e-mail and additional attributes (``GetCustomer``)."""
        c = serialize_object(self._call("GetCustomer", Ref=ref), dict)
        return SoapCustomer(
            ref=c["Ref"],
            version=c["DataVersion"] or "",
            name=c["Description"] or "",
            deleted=bool(c["DeletionMark"]),
            is_client=c.get("IsClient") is not False,
            phone=c.get("Phone") or None,
            email=c.get("Email") or None,
            attributes=tuple(self._attribute(a) for a in c.get("Attributes") or ()),
        )

    def write_order_loyalty(
        self,
        ref: str,
        fields: Mapping[str, Value] | Iterable[AttributeValue],
        expected_version: str | None = None,
        *,
        lines: Iterable[SoapOrderLine] = (),
        document_amount: Decimal | None = None,
    ) -> str:
        """Write the order's loyalty results (``WriteOrderLoyalty``); returns the new ``DataVersion``.

        Args:
            ref: the order's Ref_Key.
            fields: additional attribute values by Description (``{"Бонусы начислено": Decimal(120)}``).
            expected_version: the ``DataVersion`` the results were computed from; 1C refuses with a
                fault (:class:`~bridge.errors.OneCError`) when the order changed since.
            lines: goods rows of an open order with new automatic discounts (``dataclasses.replace``
                of what :meth:`get_order` gave): their discount, amount and VAT fields are written.
            document_amount: the new ``СуммаДокумента`` when ``lines`` change the amounts.
        """
        items = _attributes_in(fields)
        params: dict[str, Any] = {"Ref": ref, "Fields": {"Item": [self._attribute_out(a) for a in items]}}
        line_items = [_line_out(x) for x in lines]
        params["Lines"] = {"Item": line_items} if line_items else None  # None travels as xsi:nil
        params["DocumentAmount"] = None if document_amount is None else _check_dec(document_amount)
        params["ExpectedVersion"] = expected_version or None
        # Setting values twice is harmless; but a repeat after a lost answer would meet its own
        # write as a stale version, so with ExpectedVersion only provably unprocessed calls repeat.
        result = self._call("WriteOrderLoyalty", idempotent=expected_version is None, **params)
        # zeep unwraps a one-element result type: WriteResult arrives as its DataVersion string.
        return result if isinstance(result, str) else str(serialize_object(result, dict)["DataVersion"])

    def _date(self, raw: Any) -> datetime | None:
        """1C's wall-clock date (empty date → ``None``), aware in ``tz`` when the client has one."""
        value: datetime | None = datetime.fromisoformat(raw) if isinstance(raw, str) else raw
        if value is None or value.replace(tzinfo=None) == EMPTY_DATE:
            return None
        if self.tz is None:
            return value
        return value.replace(tzinfo=self.tz) if value.tzinfo is None else value.astimezone(self.tz)

    def _attribute(self, a: Mapping[str, Any]) -> AttributeValue:
        kind, raw = a.get("Kind") or "String", a.get("Value")
        value: Value = raw or ""
        if kind == "Number":
            value = _dec(raw)
        elif kind == "Boolean":
            value = str(raw).strip().lower() in ("true", "1")
        elif kind in ("Date", "Empty"):
            value = self._date(raw) if raw and kind == "Date" else None
        return AttributeValue(a["Name"], value, kind, a.get("Property") or None, a.get("RefType") or None)

    def _attribute_out(self, a: AttributeValue) -> dict[str, Any]:
        value = _lexical(a.value, self.tz)
        return {"Name": a.name, "Property": a.property, "Kind": a.kind, "Value": value, "RefType": a.ref_type}


def _attributes_in(fields: Mapping[str, Value] | Iterable[AttributeValue]) -> list[AttributeValue]:
    if not isinstance(fields, Mapping):
        return list(fields)
    return [AttributeValue(name, value, _kind_of(value)) for name, value in fields.items()]


def _kind_of(value: Value) -> str:
    if isinstance(value, float):
        raise TypeError("money and points are Decimal, never float")
    kinds = ((type(None), "Empty"), (bool, "Boolean"), (Decimal | int, "Number"), (date, "Date"))
    return next((kind for types, kind in kinds if isinstance(value, types)), "String")


def _lexical(value: Any, tz: tzinfo | None) -> str | None:
    """A value in XML lexical form; dates as 1C's zone-less wall clock."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return wall_clock(value.astimezone(tz) if value.tzinfo is not None and tz is not None else value)
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00"
    return format(_check_dec(value), "f")


def _check_dec(value: Any) -> Decimal:
    if isinstance(value, float | bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"money and points are Decimal, never {type(value).__name__}")
    return Decimal(value)


def _line_out(x: SoapOrderLine) -> dict[str, Any]:
    out: dict[str, Any] = {"LineNumber": x.line_no}
    for attr, element in LINE_AMOUNTS[2:]:  # what a write may change: not quantity nor price
        if getattr(x, attr) is not None and not attr.startswith("manual"):
            out[element] = _check_dec(getattr(x, attr))
    return out


def _dec(value: Any) -> Decimal:
    if value in (None, ""):
        return Decimal(0)
    try:  # zeep hands xs:decimal over as Decimal; Value strings are parsed here, never via float
        return Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise FatalHTTPError(f"not a number in the SOAP answer: {value!r}") from exc


def _ref(value: Any) -> str | None:
    return None if value in (None, "", EMPTY_GUID) else str(value)


def _line(r: Mapping[str, Any]) -> SoapOrderLine:
    amounts = {attr: None if r.get(el) is None else _dec(r[el]) for attr, el in LINE_AMOUNTS}
    for attr, _el in LINE_AMOUNTS[:7]:  # required by the WSDL; absent means zero
        amounts[attr] = amounts[attr] or Decimal(0)
    return SoapOrderLine(
        line_no=int(r["LineNumber"]),
        product=r.get("Product") or EMPTY_GUID,
        cancelled=bool(r.get("Cancelled")),
        vat_rate=r.get("VATRate") or None,
        **amounts,  # type: ignore[arg-type]
    )


def _onec_error(operation: str, fault: zeep.exceptions.Fault) -> OneCError:
    text, code = (fault.message or "").strip(), str(fault.code or "soap:Server")
    onec_message = _MODULE_PREFIX.sub("", text)
    return OneCError(f"1C refused {operation}: {text}", status=500, code=code, onec_message=onec_message)


def wall_clock(value: Any) -> str:
    """A date as 1C writes it: the wall clock, no zone; the empty date for ``None``."""
    if not isinstance(value, datetime):
        return "0001-01-01T00:00:00"
    return value.replace(tzinfo=None, microsecond=0).isoformat()
