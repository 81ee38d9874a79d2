"""The cards 1C already has for new customers are read a few dozen customers per request: a first
read of a backlog no longer costs one card query per new customer. Each customer still keeps the
number 1C gave them, and the others get one of the bridge's."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from bridge.simulator.operator import Operator
from tests.e2e.cycle_kit import MSK, world

CARDS = "Catalog_КартыЛояльности"
KINDS = "Catalog_ВидыКартЛояльности"
BIKE = "Велосипед городской Forward Dortmund 28 2.0"


def _give_card(op: Operator, partner: str, number: str) -> None:
    kind = next(r["Ref_Key"] for r in op.store.rows(KINDS) if r["Description"] == "Дисконтная карта")
    op.store.insert(
        CARDS,
        {
            "Description": number,
            "Owner_Key": kind,
            "Штрихкод": number,
            "МагнитныйКод": "",
            "Статус": "Действует",
            "Партнер_Key": partner,
            "ДополнительныеРеквизиты": [],
        },
    )


def test_a_first_read_asks_for_many_customers_cards_at_once(tmp_path: Path) -> None:
    start = datetime(2026, 3, 2, 9, tzinfo=MSK)
    with world(tmp_path, start=start) as w:
        partners = [w.op.partner(f"Покупатель {i:02d}", phone=f"+7903111{i:04d}") for i in range(60)]
        given = {p: f"20000000{i:05d}" for i, p in enumerate(partners) if i % 3 == 0}
        for partner, number in given.items():
            _give_card(w.op, partner, number)
        for i, partner in enumerate(partners):
            w.op.close(w.op.order(partner, [(BIKE, 1, 1000 + i)], date=datetime(2026, 3, 1, 10, i % 60)))
        w.store.log.clear()
        w.once(datetime(2026, 3, 2, 9, tzinfo=MSK))
        lookups = [
            rec
            for rec in w.store.log
            if rec.method == "GET" and rec.path.endswith(CARDS) and "Партнер_Key" in rec.query
        ]
        # 60 new customers: a handful of `or` chains under the URL budget, not 60 queries.
        assert 1 <= len(lookups) <= 6, len(lookups)
        for partner in partners:
            numbers = [c["Штрихкод"] for c in w.op.cards_of(partner)]
            if partner in given:
                assert numbers == [given[partner]]  # kept: not a second card
            else:
                assert len(numbers) == 1 and numbers[0].startswith("2990")  # the bridge's own


def test_a_batch_of_card_creates_looks_its_numbers_up_together(tmp_path: Path) -> None:
    """The numbers of a batch's new cards are looked up in one request, not one each, and the
    look-up still stops a number 1C already gave to someone else."""
    from bridge.domain.cards import card_number

    with world(tmp_path, start=datetime(2026, 3, 2, 9, tzinfo=MSK)) as w:
        partners = [w.op.partner(f"Покупатель {i:02d}", phone=f"+7903333{i:04d}") for i in range(3)]
        for i, partner in enumerate(partners):  # in this order: the first gets the first number
            w.op.close(w.op.order(partner, [(BIKE, 1, 1000)], date=datetime(2026, 3, 1, 10 + i)))
        prefix = w.cycle.engine.card_prefix
        assert prefix is not None
        stranger = w.op.partner("Посторонний покупатель")
        taken = card_number(prefix, 1)
        w.store.insert(CARDS, {"Штрихкод": taken, "Партнер_Key": stranger, "Статус": "Действует"})
        w.store.log.clear()
        w.once(datetime(2026, 3, 2, 9, tzinfo=MSK))
        by_number = [r for r in w.store.log if r.path.endswith(CARDS) and "Штрихкод" in r.query]
        assert len(by_number) == 1, [r.query for r in by_number]
        assert w.op.cards_of(partners[0]) == []  # not adopted: the stranger's
        for n, partner in enumerate(partners[1:], start=2):
            assert [c["Штрихкод"] for c in w.op.cards_of(partner)] == [card_number(prefix, n)]


def test_number_chains_stay_within_the_url_budget(tmp_path: Path) -> None:
    from bridge.onec.literals import query_string

    with world(tmp_path, **{"onec.url_budget": 400}) as w:
        client = w.cycle.gateway.client
        numbers = [f"2990000{n:06d}" for n in range(40)]
        chains = [c.filter for c in client.key_chunks(numbers, field="Штрихкод", strings=True)]
        assert len(chains) > 1
        for chain in chains:
            query = query_string(filter=chain, top=10**6, skip=10**6)
            assert len(query) <= 400
        assert [n for c in chains for n in numbers if f"'{n}'" in str(c)] == numbers  # each once, in order
