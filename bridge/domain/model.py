"""Plain data the rules work on: what the 1C adapter reads, translated into the domain's words.

Owns: ``Order``, ``OrderLine``, ``Product``, ``Customer``, ``ReturnDoc``, ``Card`` and the rule
settings (``BonusRules``, ``Tier``, ``DiscountRules``, ``Level``). All money and points are
``Decimal``; all times are timezone-aware ``datetime``. Must not import anything outside
``bridge.domain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal(0)


class OrderStatus(StrEnum):
    """The order's loyalty-relevant status, decided by the mapping from 1C's fields."""

    OPEN = "open"  # being assembled: any status but closed (UT 11: НеСогласован, КОбеспечению, КОтгрузке)
    CLOSED = "closed"  # UT 11: Закрыт
    CANCELLED = "cancelled"  # the mapping's cancelled values (or every line cancelled)


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One goods row of an order. ``amount`` is what is paid for the row after every discount."""

    line_no: int
    product_id: str
    quantity: Decimal
    amount: Decimal
    price: Decimal = ZERO
    group: str | None = None  # margin group code (None -> bonus.default_coefficient)
    delivery: bool = False  # delivery / service rows never count as goods
    manual_discount_percent: Decimal = ZERO  # promotion / manual discount already on the row
    manual_discount_amount: Decimal = ZERO
    auto_discount_percent: Decimal = ZERO  # what the bridge (or 1C) put in the automatic field
    auto_discount_amount: Decimal = ZERO
    cancelled: bool = False  # UT 11 ``Отменено``: the row is out of the order


@dataclass(frozen=True, slots=True)
class Order:
    """A customer order (1C ``ЗаказКлиента``) as of one ``DataVersion``."""

    id: str  # 1C Ref_Key
    version: str  # 1C DataVersion
    number: str
    date: datetime  # document date, timezone-aware
    customer_id: str | None  # partner Ref_Key (None when the order names only a card)
    status: OrderStatus
    posted: bool
    deleted: bool
    lines: tuple[OrderLine, ...]
    redeem_requested: Decimal = ZERO  # points the site/operator asks to spend
    card_number: str | None = None  # card named instead of (or beside) a customer
    card_holder_name: str | None = None
    document_total: Decimal | None = None

    @property
    def counts(self) -> bool:
        """An order counts as a purchase once closed, posted and not marked for deletion."""
        return self.status is OrderStatus.CLOSED and self.posted and not self.deleted

    @property
    def voided(self) -> bool:
        """Cancelled or deleted: every reservation on it is released."""
        return self.deleted or self.status is OrderStatus.CANCELLED


@dataclass(frozen=True, slots=True)
class ReturnLine:
    product_id: str
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class ReturnDoc:
    """A customer return (1C ``ВозвратТоваровОтКлиента``) resolved to the order it reverses."""

    id: str
    version: str
    date: datetime
    customer_id: str | None
    order_id: str | None  # resolved through the sale document; None if it references none
    posted: bool
    deleted: bool
    lines: tuple[ReturnLine, ...]

    @property
    def effective(self) -> bool:
        return self.posted and not self.deleted


@dataclass(frozen=True, slots=True)
class Customer:
    """A 1C partner with the contacts notifications need."""

    id: str
    name: str
    phone: str | None = None  # E.164 once normalised at the edge
    email: str | None = None
    version: str = ""


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    group: str | None = None
    delivery: bool = False


class CardStatus(StrEnum):
    VIRTUAL = "virtual"  # number assigned, no physical card handed out yet
    ISSUED = "issued"


@dataclass(frozen=True, slots=True)
class Card:
    number: str
    customer_id: str
    status: CardStatus = CardStatus.VIRTUAL
    onec_id: str | None = None  # Catalog_КартыЛояльности Ref_Key once created in 1C


# --- rule settings (built from the validated config by bridge.runtime.config) ---------------------


@dataclass(frozen=True, slots=True)
class Tier:
    code: str
    name: str
    threshold: Decimal
    rate: Decimal  # 0.03 for 3 %


@dataclass(frozen=True, slots=True)
class BonusRules:
    tiers: tuple[Tier, ...]  # ascending thresholds, the first at 0
    point_value: Decimal = Decimal(1)
    point_precision: int = 0  # decimal places of points; 0 = whole points
    hold_days: int = 14
    expiry_days: int = 365
    expiry_warning_days: int = 7
    max_redeem_share: Decimal = Decimal(1)
    default_coefficient: Decimal = Decimal(1)
    groups: dict[str, Decimal] = field(default_factory=dict)
    volume_window_days: int | None = None  # None = lifetime volume
    lines_net_of_points: bool = True  # line amounts in 1C are already net of redeemed points

    def coefficient(self, group: str | None) -> Decimal:
        if group is None:
            return self.default_coefficient
        return self.groups.get(group, self.default_coefficient)


@dataclass(frozen=True, slots=True)
class Level:
    code: str
    name: str
    threshold: Decimal
    percent: Decimal  # 5 for 5 %
    term_days: int | None  # None: no term (the minimum level)


@dataclass(frozen=True, slots=True)
class DiscountRules:
    levels: tuple[Level, ...]  # ascending thresholds, the first at 0
    period_days: int = 365

    @property
    def minimum(self) -> Level:
        return self.levels[0]

    def by_code(self, code: str) -> Level:
        for level in self.levels:
            if level.code == code:
                return level
        raise KeyError(code)


def plus_days(moment: datetime, days: int, zone: tzinfo | None) -> datetime:
    """``moment`` plus ``days`` calendar days in ``zone`` (the store's time zone: the cycle's
    clock's): the same wall-clock time that many days later, whatever DST does in between. A value
    read back from the database is in UTC; adding days to it there would move the wall-clock time
    by the DST difference, so every rule adds its days through here."""
    local = moment.astimezone(zone) if zone is not None else moment
    return local + timedelta(days=days)
