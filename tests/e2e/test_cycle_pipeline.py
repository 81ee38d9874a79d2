"""A catch-up cycle that delivers its 1C write-backs from a second thread while it still processes
documents (``poll.deliver_after``) ends exactly where the same cycle delivering at its end does:
the same loyalty fields and cards in 1C, the same ledger, the same webhooks — with one partner
write per customer, and the write-backs really going out before the last page was read."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.simulator import generate
from bridge.store import outbox
from tests.e2e.cycle_kit import MSK, world

NOW = datetime(2026, 1, 10, 9, tzinfo=MSK)
ORDERS, PARTNERS, CARDS = "Document_ЗаказКлиента", "Catalog_Партнеры", "Catalog_КартыЛояльности"


def _catch_up(tmp: Path, deliver_after: int | None) -> dict[str, Any]:
    tmp.mkdir()
    with world(tmp, start=NOW, **{"poll.deliver_after": deliver_after}) as w:
        generate(w.store, customers=25, orders=240, seed=11, start=datetime(2025, 11, 1), days=60)
        w.store.reset_counters()
        result = w.once(NOW)
        assert result.documents_failed == 0, result.failures[:3]
        log = list(w.store.log)
        early = result.delivered_ahead

        def state(entity: str) -> dict[str, Any]:
            rows = w.store.snapshot(entity)
            if entity == CARDS:  # created by the bridge: 1C gives each its own Ref_Key
                return {
                    r["Description"]: {k: v for k, v in r.items() if k not in ("DataVersion", "Ref_Key")}
                    for r in rows
                }
            return {r["Ref_Key"]: {k: v for k, v in r.items() if k != "DataVersion"} for r in rows}

        engine = w.cycle.engine
        with engine.store.engine.connect() as conn:
            pending = outbox.listing(conn, (outbox.PENDING,))
        assert w.site is not None
        return {
            "1c": (state(ORDERS), state(PARTNERS), state(CARDS)),
            "ledger": {cid: engine.customer_view(cid, NOW) for cid in state(PARTNERS)},
            "webhooks": sorted((d.customer_id or "", d.sequence or 0) for d in w.site.effective),
            "partner_patches": sum(1 for rec in log if rec.method == "PATCH" and PARTNERS in rec.path),
            "pending": len(pending),
            "ahead": early,
            "sent": result.deliveries["onec"].sent,
        }


def test_a_pipelined_catch_up_ends_where_the_end_of_cycle_delivery_does(tmp_path: Path) -> None:
    plain = _catch_up(tmp_path / "plain", None)
    piped = _catch_up(tmp_path / "piped", 0)
    assert plain["ahead"] == 0  # without it everything goes out after the last document
    assert piped["ahead"] > 0, "the write-backs did not go out during the catch-up"
    assert piped["pending"] == plain["pending"] == 0
    assert piped["1c"] == plain["1c"]
    assert piped["ledger"] == plain["ledger"]
    assert piped["webhooks"] == plain["webhooks"]
    assert piped["partner_patches"] == plain["partner_patches"] > 0  # one per customer, not one per order
    assert piped["sent"] >= plain["sent"] > 0


def test_deliver_after_counts_the_cycles_documents(tmp_path: Path) -> None:
    """Below the threshold the cycle delivers at its end, as it always did."""
    assert _catch_up(tmp_path / "few", 10_000)["ahead"] == 0
