"""``site.webhook_workers``: webhooks to different customers go out several at a time; each
customer's still arrive one after another, in ``sequence`` order, each once."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

from tests.e2e.cycle_kit import MSK, world

BIKE = "Велосипед городской Forward Dortmund 28 2.0"


def test_webhooks_to_many_customers_go_out_at_once_and_in_order_per_customer(tmp_path: Path) -> None:
    with world(tmp_path, start=datetime(2026, 3, 2, 9, tzinfo=MSK), **{"site.webhook_workers": 4}) as w:
        assert w.site is not None
        w.site.delay(0.01)  # a site takes a moment to answer: the sends overlap
        partners = [w.op.partner(f"Покупатель {i:02d}", phone=f"+7903222{i:04d}") for i in range(12)]
        for i, partner in enumerate(partners):
            for n in range(3):  # three closed orders each: three snapshots per customer
                order = w.op.order(
                    partner, [(BIKE, 1, 1000 + 10 * i + n)], date=datetime(2026, 3, 1, 10 + n, i)
                )
                w.op.close(order)
        result = w.once(datetime(2026, 3, 2, 9, tzinfo=MSK))
        assert result.deliveries["webhook"].sent == len(w.site.effective) >= 36
        assert w.site.most_at_once > 1  # really several at once
        per_customer: dict[str, list[int]] = defaultdict(list)
        for delivery in w.site.deliveries:  # in the order the site received them
            assert delivery.customer_id is not None and delivery.sequence is not None
            per_customer[delivery.customer_id].append(delivery.sequence)
        assert set(per_customer) == set(partners)
        for sequences in per_customer.values():
            assert sequences == sorted(sequences) == list(range(sequences[0], sequences[0] + len(sequences)))
        assert not w.site.dropped  # nothing arrived out of order
