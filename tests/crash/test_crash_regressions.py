"""Bugs the crash matrix found, each pinned at the one crash that showed it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.crash.harness import CrashPlan, Launcher, Script, _once, final_state, installation


def test_a_death_while_applying_a_card_issue_does_not_lose_it(tmp_path: Path) -> None:
    """The card's 1C version used to be committed before the issue was applied: a death in
    between (``before_commit`` of the card-issued unit) left the card ``virtual`` for good, since
    the next run saw the version as known and never looked at the card again."""
    script = Script(customers=4, orders=10, seed=3)
    launcher = Launcher()
    try:
        with installation(tmp_path, script, launcher) as inst:
            first = script.steps()[0][0]
            assert _once(inst, first, CrashPlan())[0] == [0]
            card = sorted(inst.store.snapshot("Catalog_КартыЛояльности"), key=lambda r: str(r["Штрихкод"]))[0]
            inst.op.hand_out_card(card["Ref_Key"])
            # An hour later nothing else is due: the card's unit of work is the only one.
            later = first + timedelta(hours=1)
            assert _once(inst, later, CrashPlan("before_commit"))[0] == [137, 0]
            state = final_state(inst, later)
    finally:
        launcher.close()
    owner = str(card["Партнер_Key"])
    assert state["ledger"]["customers"][owner]["card_status"] == "issued"
    assert state["site"]["latest"][owner]["customer"]["card_status"] == "issued"
