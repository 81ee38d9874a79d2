"""Documents changed in the same cycle are applied in document order (``Date``), whatever keys 1C
gave them: two open orders of one customer closed together earn at the tier the earlier one's
volume leaves, not in the order of their random ``Ref_Key`` values.

Found by the fault run (tests/faults): its clean and faulty runs — and two clean runs — ended with
different accruals, because the tracked orders came out of the open orders' index by ``id``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from tests.e2e.cycle_kit import MSK, world

BIKE = "Велосипед горный Stels Navigator 700 MD 27.5"  # 32 000: Silver -> Gold (30 000)
CITY = "Велосипед городской Forward Dortmund 28 2.0"  # 21 000
LOW, HIGH = "00000000-0000-4000-8000-000000000001", "ffffffff-ffff-4fff-bfff-fffffffffff1"


def t(d: int, h: int, m: int = 0) -> datetime:
    return datetime(2026, 3, d, h, m, tzinfo=MSK)


@pytest.mark.parametrize("keys", [(LOW, HIGH), (HIGH, LOW)], ids=["older-key-first", "newer-key-first"])
def test_orders_closed_in_one_cycle_earn_in_date_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: tuple[str, str]
) -> None:
    with world(tmp_path, start=t(2, 12), discount=None) as w:
        anna = w.op.partner("Смирнова Анна Петровна", phone="+79160000001")
        given = iter(keys)
        with monkeypatch.context() as m:  # the simulator's Ref_Key for the next two documents
            m.setattr(uuid, "uuid4", lambda: uuid.UUID(next(given)))
            older = w.op.order(anna, [(BIKE, 1, 32000)], date=t(2, 10))
            newer = w.op.order(anna, [(CITY, 1, 21000)], date=t(2, 11))
        assert (older, newer) == keys
        w.once(t(2, 12))  # both seen open: from now on re-checked as tracked orders
        assert w.order_attr(older, "Бонусы начислено") in (None, D(0))

        w.op.close(newer)
        w.op.close(older)
        w.once(t(3, 12))  # both closed in one cycle, long past the new-document overlap
        # The older order earns at Silver (2 %), its 32 000 make the newer one's Gold (3 %).
        assert w.order_attr(older, "Бонусы начислено") == D(640)
        assert w.order_attr(newer, "Бонусы начислено") == D(630)
        assert w.partner_attr(anna, "Статус бонусной карты") == "Золотой"
