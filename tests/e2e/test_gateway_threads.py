"""The 1C gateway used by several write-back threads at once (``onec.write_workers``): reference
data read on first use is read once, and the product index, which grows as orders name new
products, is never read half-built (a thread used to replace another's index and lose the products
it had just loaded: "product … is not in the catalog")."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bridge.simulator import generate
from tests.e2e.cycle_kit import world

ORDERS = "Document_ЗаказКлиента"


def test_first_use_from_many_threads_reads_reference_data_once(tmp_path: Path) -> None:
    with world(tmp_path, site=False) as w:
        generate(w.sim.store, customers=30, orders=120, seed=5)
        rows = w.sim.store.rows(ORDERS)[:48]
        gateway = w.cycle.gateway  # fresh: nothing read yet
        w.sim.store.log.clear()
        start = threading.Barrier(8)

        def translate(row: dict) -> str:
            if rows.index(row) < 8:
                start.wait()  # the first eight all start at once
            gateway.card_kind_key()
            return gateway.order(row).id

        with ThreadPoolExecutor(8) as pool:
            done = list(pool.map(translate, rows))
        assert done == [r["Ref_Key"] for r in rows]
        sets = Counter(rec.path.rsplit("/", 1)[-1] for rec in w.sim.store.log)
        assert sets["ChartOfCharacteristicTypes_ДополнительныеРеквизитыИСведения"] == 1, sets
        assert sets["Catalog_ВидыКартЛояльности"] == 1, sets
