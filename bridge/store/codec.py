"""Plain-JSON encoding of the documents the bridge keeps (the last version of each order, returns).

Decimals travel as strings and times as ISO-8601 with their offset, so nothing is lost.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from bridge.domain.model import Order, OrderLine, OrderStatus, ReturnDoc, ReturnLine


def _d(value: Any) -> Decimal:
    return Decimal(str(value))


def _line_to_json(line: OrderLine) -> dict[str, Any]:
    return {
        "line_no": line.line_no,
        "product_id": line.product_id,
        "quantity": str(line.quantity),
        "amount": str(line.amount),
        "price": str(line.price),
        "group": line.group,
        "delivery": line.delivery,
        "manual_discount_percent": str(line.manual_discount_percent),
        "manual_discount_amount": str(line.manual_discount_amount),
        "auto_discount_percent": str(line.auto_discount_percent),
        "auto_discount_amount": str(line.auto_discount_amount),
        "cancelled": line.cancelled,
    }


def _line_from_json(data: dict[str, Any]) -> OrderLine:
    return OrderLine(
        line_no=int(data["line_no"]),
        product_id=data["product_id"],
        quantity=_d(data["quantity"]),
        amount=_d(data["amount"]),
        price=_d(data["price"]),
        group=data.get("group"),
        delivery=bool(data.get("delivery")),
        manual_discount_percent=_d(data.get("manual_discount_percent", "0")),
        manual_discount_amount=_d(data.get("manual_discount_amount", "0")),
        auto_discount_percent=_d(data.get("auto_discount_percent", "0")),
        auto_discount_amount=_d(data.get("auto_discount_amount", "0")),
        cancelled=bool(data.get("cancelled")),
    )


def order_to_json(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "version": order.version,
        "number": order.number,
        "date": order.date.isoformat(),
        "customer_id": order.customer_id,
        "status": order.status.value,
        "posted": order.posted,
        "deleted": order.deleted,
        "lines": [_line_to_json(line) for line in order.lines],
        "redeem_requested": str(order.redeem_requested),
        "card_number": order.card_number,
        "card_holder_name": order.card_holder_name,
        "document_total": None if order.document_total is None else str(order.document_total),
    }


def order_from_json(data: dict[str, Any]) -> Order:
    return Order(
        id=data["id"],
        version=data["version"],
        number=data["number"],
        date=datetime.fromisoformat(data["date"]),
        customer_id=data.get("customer_id"),
        status=OrderStatus(data["status"]),
        posted=bool(data["posted"]),
        deleted=bool(data["deleted"]),
        lines=tuple(_line_from_json(x) for x in data["lines"]),
        redeem_requested=_d(data.get("redeem_requested", "0")),
        card_number=data.get("card_number"),
        card_holder_name=data.get("card_holder_name"),
        document_total=None if data.get("document_total") is None else _d(data["document_total"]),
    )


def return_to_json(ret: ReturnDoc) -> dict[str, Any]:
    return {
        "id": ret.id,
        "version": ret.version,
        "date": ret.date.isoformat(),
        "customer_id": ret.customer_id,
        "order_id": ret.order_id,
        "posted": ret.posted,
        "deleted": ret.deleted,
        "lines": [
            {"product_id": x.product_id, "quantity": str(x.quantity), "amount": str(x.amount)}
            for x in ret.lines
        ],
    }


def return_from_json(data: dict[str, Any]) -> ReturnDoc:
    return ReturnDoc(
        id=data["id"],
        version=data["version"],
        date=datetime.fromisoformat(data["date"]),
        customer_id=data.get("customer_id"),
        order_id=data.get("order_id"),
        posted=bool(data["posted"]),
        deleted=bool(data["deleted"]),
        lines=tuple(ReturnLine(x["product_id"], _d(x["quantity"]), _d(x["amount"])) for x in data["lines"]),
    )
