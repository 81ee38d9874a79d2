"""SPEC §3: the period sum and the amount missing to the next level are "pushed to the site,
written to 1C". A purchase that counts changes them, and the site must learn it even when the
purchase earns no points and moves no level — a sale item (coefficient 0), or any purchase when only
the discount program runs. Found by the soak test (``tests/soak``): the bridge wrote 1C's fields
but sent the site nothing, so its snapshot kept the old volume and period sum for good."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cycle_kit import MSK, world

BIKE = "Велосипед городской Forward Dortmund 28 2.0"
SALE = "Фляга Zefal 750 мл (уценка)"  # «Распродажа»: earns nothing


def t(d: int, h: int) -> datetime:
    return datetime(2026, 3, d, h, tzinfo=MSK)


@pytest.mark.parametrize(
    ("programs", "item"),
    [({}, (SALE, 1, 350)), ({"bonus": None}, (BIKE, 1, 3000))],
    ids=["sale-item", "discount-only"],
)
def test_a_purchase_that_earns_nothing_still_reaches_the_site(
    tmp_path: Path, programs: dict[str, Any], item: tuple[str, int, int]
) -> None:
    with world(tmp_path, start=t(1, 9), **programs) as w:
        assert w.site is not None
        anna = w.op.partner("Петрова Анна Сергеевна", phone="+79031234567")
        order = w.op.order(anna, [item], date=t(1, 10))
        w.once(t(1, 11))  # first seen open: the card is created and announced
        assert w.site.latest(anna) is not None
        w.op.close(order)
        w.once(t(2, 11))
        amount = f"{item[2]}.00"
        assert w.partner_attr(anna, "Сумма покупок за период") == item[2]  # 1C has it
        latest = w.site.latest(anna)
        assert latest is not None
        assert latest["discount"]["period_sum"] == amount
        assert latest["discount"]["next_level"]["missing"] == f"{10000 - item[2]}.00"
        if latest["bonus"] is not None:
            assert latest["bonus"]["volume"] == amount
        assert latest["reasons"] == []  # no points, no level: nobody is notified
