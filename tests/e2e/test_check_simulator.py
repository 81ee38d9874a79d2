"""``run_check`` against the simulator over real HTTP: an incomplete 1C (a missing field, attribute,
object), a complete one, an unreachable one, the state database, the exchange-plan node and the
SOAP web service — each failure saying what to do, ``unreachable`` told apart from ``problems``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.runtime.config import Config, config_from_data
from bridge.service.check import CheckReport, format_report, run_check
from bridge.simulator import EXCHANGE_PLAN, SimStore, Simulator, build_schema, load_sample
from bridge.simulator.soap import mount
from bridge.store.db import make_engine, upgrade
from tests.e2e.test_adapter_kit import ROOT

LEVELS = [{"code": "base", "name": "Новичок", "threshold": 0, "percent": 0, "term_days": None}]


def start(schema: Any = None) -> Simulator:
    store = SimStore(schema)
    load_sample(store)
    return Simulator(store).start()


@pytest.fixture
def full() -> Iterator[Simulator]:
    sim = start()
    yield sim
    sim.stop()


def config(sim: Simulator, tmp_path: Path, *, migrated: bool = True, **sections: Any) -> Config:
    db = tmp_path / "state.db"
    if migrated:
        engine = make_engine(f"sqlite:///{db}")
        upgrade(engine)
        engine.dispose()
    data: dict[str, Any] = {
        "timezone": "Europe/Moscow",
        "state": {"url": f"sqlite:///{db}"},
        "onec": {
            "odata_url": sim.odata_url,
            "username": sim.username,
            "mapping": str(ROOT / "mappings" / "ut11.yaml"),
            "timeout_s": 5,
        },
        "poll": {"start": "2026-01-01T00:00:00"},
        "discount": {"levels": LEVELS},
        "cards": {"kind": "Дисконтная карта"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return config_from_data(
        data, config_path=tmp_path / "config.yaml", environ={"ONEC_PASSWORD": sim.password}
    )


def failed(report: CheckReport) -> list[str]:
    return [i.line() for i in report.items if not i.ok]


def test_everything_present_is_ok(full: Simulator, tmp_path: Path) -> None:
    report = run_check(config(full, tmp_path))
    assert report.ok, format_report(report)
    assert (report.problems, report.unreachable, report.exit_code) == ([], False, 0)
    text = format_report(report)
    assert "✗" not in text and "All checks passed" in text
    assert {i.area for i in report.items} >= {
        "Config",
        "Mapping",
        "1C metadata",
        "Additional attributes",
        "Loyalty cards",
        "State database",
    }
    assert full.store.request_count(method="PATCH") + full.store.request_count(method="POST") == 0


def test_a_missing_attribute_and_field_are_listed_with_what_to_do(tmp_path: Path) -> None:
    schema = build_schema().without("Document_ЗаказКлиента.Статус", attributes=["Бонусы начислено"])
    sim = start(schema)
    try:
        report = run_check(config(sim, tmp_path))
    finally:
        sim.stop()
    assert not report.ok and not report.unreachable and report.exit_code == 78
    assert len(report.problems) == 2, report.problems
    field = next(p for p in report.problems if "Статус" in p)
    assert "Document_ЗаказКлиента has no field Статус" in field and "orders.status.field" in field
    assert "Документ.ЗаказКлиента" in field and "Настройка стандартного интерфейса OData" in field
    attribute = next(p for p in report.problems if "Бонусы начислено" in p)
    assert "create the additional attribute «Бонусы начислено» (number) for Заказ клиента" in attribute
    assert "Дополнительные реквизиты" in attribute
    text = format_report(report)
    assert text.count("✗") == 2 and "→ create the additional attribute" in text


def test_an_unpublished_object_names_what_to_mark(tmp_path: Path) -> None:
    sim = start(build_schema().without("Catalog_ВидыКартЛояльности"))
    try:
        report = run_check(config(sim, tmp_path))
    finally:
        sim.stop()
    [problem] = report.problems
    assert "Catalog_ВидыКартЛояльности is not published" in problem and "cards.kinds.entity_set" in problem
    assert "отметить" not in problem and "mark «Справочник.ВидыКартЛояльности»" in problem


def test_wrong_card_kind_and_an_unmigrated_database(full: Simulator, tmp_path: Path) -> None:
    report = run_check(config(full, tmp_path, migrated=False, cards={"kind": "Подарочная карта"}))
    assert report.exit_code == 78 and not report.unreachable
    assert any(
        "no single card kind «Подарочная карта»" in p and "«Дисконтная карта»" in p for p in report.problems
    )
    assert any(p.startswith("State database:") and "loyalty-bridge db upgrade" in p for p in report.problems)
    assert not (tmp_path / "state.db").exists()  # check never creates the database


def test_unreachable_1c_is_told_apart(tmp_path: Path) -> None:
    sim = start()
    cfg = config(sim, tmp_path)
    sim.stop()
    report = run_check(cfg)
    assert report.unreachable and report.problems == [] and report.exit_code == 69
    assert any("cannot reach 1C" in line for line in failed(report))
    # Said once: the client's message names what to check, so no second "check that…" line.
    [item] = [i for i in report.items if i.area == "1C connection"]
    assert item.text.count("cannot reach 1C") == 1 and "check onec.odata_url" in item.text and not item.fix
    assert any(i.area == "State database" and i.ok for i in report.items)


def test_wrong_password_is_a_problem_not_unreachable(full: Simulator, tmp_path: Path) -> None:
    report = run_check(config(full, tmp_path), environ={"ONEC_PASSWORD": "не тот"})
    assert not report.unreachable and report.exit_code == 78
    assert any("onec.username" in p and "ONEC_PASSWORD" in p for p in report.problems)


def test_exchange_plan_node(full: Simulator, tmp_path: Path) -> None:
    node = full.store.rows(EXCHANGE_PLAN)[0]["Ref_Key"]
    cfg = config(full, tmp_path, poll={"changes": "exchange_plan", "exchange_node": node})
    ok = run_check(cfg)
    assert ok.ok, format_report(ok)
    assert any("node «Интернет-магазин" in i.text for i in ok.items)
    missing = run_check(cfg, exchange_node="11111111-2222-3333-4444-555555555555")
    assert any("has no node" in p and "poll.exchange_node" in p for p in missing.problems)
    unpublished = run_check(cfg, exchange_plan="ExchangePlan_Полный")
    assert any(
        "ExchangePlan_Полный is not published" in p and "ПланОбмена.Полный" in p for p in unpublished.problems
    )
    assert full.store.request_count(kinds=["exchange"]) == 0  # SelectChanges is never called


def test_soap_web_service_is_loaded_not_called(full: Simulator, tmp_path: Path) -> None:
    service = mount(full)
    wsdl = f"{full.base_url}/ws/LoyaltyBridge.1cws?wsdl"
    report = run_check(config(full, tmp_path, onec={"soap": {"wsdl": wsdl}}, poll={"changes": "soap"}))
    assert report.ok, format_report(report)
    assert any(i.area == "Change source" and "5 operations found" in i.text for i in report.items)
    assert service.calls == []
