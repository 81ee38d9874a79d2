"""The commands an administrator runs, end to end over real HTTP: `check`, `once`, `backfill`,
`outbox`, against the 1C simulator (sample data) and a site receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.simulator import SimStore, Simulator, build_schema, load_reference, load_sample
from bridge.simulator.operator import Operator
from bridge.simulator.site import SiteReceiver
from tests.e2e.cycle_kit import MSK, ROOT, SECRET, config_data, config_yaml
from tests.e2e.test_cycle_notify import Gateway

BIKE = "Велосипед городской Forward Dortmund 28 2.0"


@dataclass
class Install:
    sim: Simulator
    site: SiteReceiver
    config: Path
    op: Operator


def _install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: SimStore, **overrides: Any
) -> Iterator[Install]:
    with Simulator(store) as sim, SiteReceiver(SECRET) as site:
        data = config_data(sim, site, tmp_path / "state.db", **overrides)
        path = tmp_path / "config.yaml"
        path.write_text(config_yaml(data), "utf-8")
        monkeypatch.setenv("ONEC_PASSWORD", sim.password)
        monkeypatch.setenv("SITE_WEBHOOK_SECRET", SECRET + "\n")  # a trailing newline is stripped
        yield Install(sim, site, path, Operator(store))


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    store = SimStore()
    load_sample(store)
    yield from _install(tmp_path, monkeypatch, store)


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_check_once_and_idle_cycles(install: Install) -> None:
    cfg = str(install.config)
    assert cli("db", "upgrade", "--config", cfg)[0] == 0
    code, out, err = cli("check", "--config", cfg)
    assert code == 0, out + err
    code, out, err = cli("once", "--config", cfg, "--now", "2026-03-20T12:00:00")
    assert code in (0, 1), err
    assert "documents applied" in out
    store = install.sim.store
    assert sum(store.effective_writes.values()) > 0
    delivered = len(install.site.effective)
    assert delivered > 0
    # Three more cycles with no change in 1C: zero writes to 1C and zero new deliveries.
    writes = dict(store.effective_writes)
    patches = store.request_count("PATCH")
    for minute in (1, 2, 3):
        code, out, _ = cli("once", "--config", cfg, "--now", f"2026-03-20T12:0{minute}:00")
        assert "0 documents applied" in out and "0 writes to 1C" in out
    assert dict(store.effective_writes) == writes
    assert store.request_count("PATCH") == patches
    assert len(install.site.effective) == delivered


def test_check_reports_a_missing_attribute_and_exits_78(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SimStore(build_schema("11.5").without(attributes=["Бонусы начислено"]))
    load_sample(store)
    for inst in _install(tmp_path, monkeypatch, store):
        cli("db", "upgrade", "--config", str(inst.config))
        code, out, err = cli("check", "--config", str(inst.config))
        assert code == 78
        assert "Бонусы начислено" in out and "Бонусы начислено" in err


def test_once_names_a_field_1c_stopped_publishing_and_exits_1(install: Install) -> None:
    """``$metadata`` drift between two runs: ``once`` says which field, which mapping key, and
    that nothing is skipped (exit 1: a cycle that left documents undone); fixed, it goes on."""
    cfg = str(install.config)
    cli("db", "upgrade", "--config", cfg)
    store = install.sim.store
    full = store.schema
    store.schema = full.without("Document_ЗаказКлиента.Статус")
    code, _, err = cli("once", "--config", cfg, "--now", "2026-03-20T12:00:00")
    assert code == 1
    # the rest are JSON logs, and the first cycle's warning that poll.start (2025) is far back
    [line] = [x for x in err.splitlines() if x.startswith("loyalty-bridge: ") and ": warning: " not in x]
    assert line.startswith("loyalty-bridge: 1C metadata does not match the mapping: ")
    assert "Document_ЗаказКлиента has no field Статус (mapping: orders.status.field)" in line
    assert "nothing is skipped" in line
    store.schema = full
    code, out, err = cli("once", "--config", cfg, "--now", "2026-03-20T12:01:00")
    assert code in (0, 1), err  # the sample has documents that fail on purpose
    assert "documents applied" in out and "0 documents applied" not in out


def test_cancelled_order_is_reversed_in_1c_and_on_the_site(install: Install) -> None:
    cfg = str(install.config)
    cli("db", "upgrade", "--config", cfg)
    op = install.op
    partner = op.partner("Орлова Вера Павловна", phone="+79031112233")
    order = op.order(
        partner, [("Велосипед городской Forward Dortmund 28 2.0", 1, 20000)], date=_t("2026-03-21T10:00:00")
    )
    op.close(order)
    cli("once", "--config", cfg, "--now", "2026-03-21T12:00:00")
    assert op.order_attribute(order, "Бонусы начислено") == 400
    latest = install.site.latest(partner)
    assert latest is not None and latest["bonus"]["total"] == "400"
    op.cancel(order)
    code, _, _ = cli("once", "--config", cfg, "--now", "2026-03-22T12:00:00")
    assert code == 0
    assert op.order_attribute(order, "Бонусы начислено") in (None, 0)
    assert op.partner_attribute(partner, "Бонусы всего") in (None, 0)
    latest = install.site.latest(partner)
    assert latest is not None and latest["bonus"]["total"] == "0"
    assert "points_reversed" in install.site.effective[-1].json["data"]["reasons"]


@contextmanager
def _sample_with_sms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Install, Gateway]]:
    """The sample installation with an SMS gateway, its state database created."""
    store = SimStore()
    load_sample(store)
    with Gateway() as sms:
        notify = {"sms": {"url": sms.url, "token_env": "SMS_TOKEN", "sender": "SHOP"}}
        monkeypatch.setenv("SMS_TOKEN", "tok")
        for inst in _install(tmp_path, monkeypatch, store, notify=notify):
            cli("db", "upgrade", "--config", str(inst.config))
            yield inst, sms


def test_backfill_sends_nothing_about_history_returns_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit's case: the sample's return ВК-00000001 (2 March) imported by ``backfill`` sent a
    ``points_reversed`` webhook and an SMS. History, returns included, is announced to nobody; 1C
    still gets its fields, and the next live cycle has nothing to catch up on."""
    with _sample_with_sms(tmp_path, monkeypatch) as (inst, sms):
        cfg = str(inst.config)
        code, out, err = cli(
            "backfill", "--from", "2025-01-01", "--config", cfg, "--now", "2026-03-20T12:00:00"
        )
        assert code == 0, err
        assert "documents applied" in out and sum(inst.sim.store.effective_writes.values()) > 0
        partner = "f86fb8ad-7731-586e-8ca4-3743ada08a0a"  # the return's customer
        assert inst.op.partner_attribute(partner, "Бонусы всего") == 156  # the return counted
        # One snapshot per imported customer, with no reason: the site learns the state, and
        # nothing is announced (no points_reversed, no SMS).
        assert sms.received == [] and _reasons(inst.site) == [[]] * len(inst.site.effective)
        snapshots = {d.json["data"]["customer"]["id"]: d.json["data"] for d in inst.site.effective}
        assert len(snapshots) == len(inst.site.effective) > 0
        assert snapshots[partner]["bonus"]["total"] == "156"
        cli("once", "--config", cfg, "--now", "2026-03-20T12:05:00")
        assert sms.received == [] and len(inst.site.effective) == len(snapshots)


def _reasons(site: SiteReceiver) -> list[list[str]]:
    return [d.json["data"]["reasons"] for d in site.effective]


def test_resync_sends_the_state_again_to_the_site_and_1c(install: Install) -> None:
    """A site that lost its data: ``resync --all`` (or named customers, by Ref_Key or card)
    queues one snapshot each, with no reason, and the partner's fields; the next cycle sends them.
    An unknown name is exit 1 and queues nothing; naming nobody is a usage error."""
    cfg = str(install.config)
    cli("db", "upgrade", "--config", cfg)
    cli("once", "--config", cfg, "--now", "2026-03-20T12:00:00")
    before = len(install.site.effective)
    customers = {d.json["data"]["customer"]["id"] for d in install.site.effective}
    assert cli("resync", "--config", cfg)[0] == 2
    code, _, err = cli("resync", "nobody", "--config", cfg)
    assert code == 1 and "customer 'nobody': no such partner" in err
    code, out, _ = cli("resync", "--all", "--config", cfg, "--now", "2026-03-20T12:01:00")
    queued = int(out.split(" ", 1)[0])  # every customer in the state, some never sent before
    assert code == 0 and queued >= len(customers) and "customer(s) queued" in out
    cli("once", "--config", cfg, "--now", "2026-03-20T12:02:00")
    again = install.site.effective[before:]
    assert {d.json["data"]["customer"]["id"] for d in again} >= customers and len(again) == queued
    assert all(
        d.json["data"]["reasons"] == [] for d in again if d.json["data"]["customer"]["id"] in customers
    )
    one = sorted(customers)[0]
    card = next(
        d.json["data"]["customer"]["card_number"] for d in again if d.json["data"]["customer"]["id"] == one
    )
    code, out, _ = cli("resync", card or one, "--config", cfg, "--now", "2026-03-20T12:03:00")
    assert code == 0 and out.startswith("1 customer(s) queued")


def test_once_exits_69_when_the_site_cannot_be_reached(install: Install) -> None:
    """Nothing listens on ``site.webhook_url``: one line names the key and the error, the webhooks
    stay queued, exit 69; the next run with the site back delivers them."""
    cfg = str(install.config)
    cli("db", "upgrade", "--config", cfg)
    port = install.site.port
    install.site.stop()
    code, out, err = cli("once", "--config", cfg, "--now", "2026-03-20T12:00:00")
    assert code == 69, err
    assert "documents applied" in out  # the cycle itself went through
    [line] = [x for x in err.splitlines() if x.startswith("loyalty-bridge: site unreachable")]
    assert "site.webhook_url" in line and f"127.0.0.1:{port}" in line and "refused" in line
    queued = [m for m in json.loads(cli("outbox", "--json", "--config", cfg)[1]) if m["channel"] == "webhook"]
    assert queued and all(m["status"] == "pending" for m in queued)
    assert f"{len(queued)} webhook message(s) stay queued and go out with the next run" in line
    with SiteReceiver(SECRET, port=port) as site:
        code, _, err = cli("once", "--config", cfg, "--now", "2026-03-20T13:00:00")
        assert code in (0, 1) and "site unreachable" not in err  # the sample fails some documents
        assert {d.webhook_id for d in site.effective} == {m["message_id"] for m in queued}


def test_a_site_answering_an_error_or_nothing_to_send_is_not_unreachable(install: Install) -> None:
    """An HTTP error is the site's answer (retried, exit not 69); with nothing to send a site
    that is down does not matter."""
    cfg = str(install.config)
    cli("db", "upgrade", "--config", cfg)
    install.site.status(500, count=1000)
    code, _, err = cli("once", "--config", cfg, "--now", "2026-03-20T12:00:00")
    assert code in (0, 1) and "site unreachable" not in err
    assert install.site.deliveries and not install.site.effective
    install.site.reset()
    cli("once", "--config", cfg, "--now", "2026-03-20T13:00:00")  # the retries are due: delivered
    assert cli("outbox", "--config", cfg)[1].startswith("outbox is empty")
    install.site.stop()
    code, _, err = cli("once", "--config", cfg, "--now", "2026-03-20T13:01:00")
    assert code == 0, err


def test_outbox_lists_and_resends_dead_messages(install: Install) -> None:
    cfg = str(install.config)
    cli("db", "upgrade", "--config", cfg)
    install.site.status(410, count=1000)  # the site refuses everything: dead at once
    _, said, _ = cli("once", "--config", cfg, "--now", "2026-03-20T12:00:00")
    dead = len(install.site.deliveries)
    assert f"webhook 0 sent, {dead} dead (dead messages: see `loyalty-bridge outbox`)" in said, said
    code, out, _ = cli("outbox", "--config", cfg)
    assert code == 0 and "dead" in out
    dead_ids = {d.webhook_id for d in install.site.deliveries}
    install.site.reset()
    code, out, _ = cli("outbox", "retry", "--all-dead", "--config", cfg, "--now", "2026-03-20T12:05:00")
    assert code == 0
    cli("once", "--config", cfg, "--now", "2026-03-20T12:06:00")
    assert {d.webhook_id for d in install.site.effective} == dead_ids  # same webhook-id on re-send
    assert cli("outbox", "--config", cfg)[1].startswith("outbox is empty")


def _t(text: str):  # type: ignore[no-untyped-def]
    from datetime import datetime

    from tests.e2e.cycle_kit import MSK

    return datetime.fromisoformat(text).replace(tzinfo=MSK)


@pytest.mark.parametrize(
    ("imported_at", "announced"),
    [
        # A year on: every lot has become available and expired, level terms have ended.
        ("2027-04-01T12:00:00", set()),
        # Ten days before the first lots expire: they are warned about, once, by the live cycle.
        ("2027-02-20T12:00:00", {"points_expiring"}),
    ],
)
def test_what_imported_history_went_through_by_now_is_announced_by_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, imported_at: str, announced: set[str]
) -> None:
    """Lots a backfill imports may have become available or expired, and level terms ended,
    before the bridge ever ran: the backfill records that as history, so the first live cycle
    sends no «points expired» / «available» / «level recomputed» about the past (it did: the first
    tick wrote them off and announced them). Points still to expire are warned about."""
    with _sample_with_sms(tmp_path, monkeypatch) as (inst, sms):
        cfg = str(inst.config)
        code, _, err = cli("backfill", "--from", "2025-01-01", "--config", cfg, "--now", imported_at)
        assert code == 0, err
        assert sms.received == [] and _reasons(inst.site) == [[]] * len(inst.site.effective)
        for minutes in (5, 10):  # the first live cycles after it
            later = imported_at.replace("12:00:00", f"12:{minutes:02d}:00")
            code, _, err = cli("once", "--config", cfg, "--now", later)
            assert code in (0, 1), err
        reasons = {r for d in inst.site.effective for r in d.json["data"]["reasons"]}
        assert reasons == announced
        texts = [m["text"] for m in sms.received] if announced else []
        assert sms.received == [] if not announced else len(texts) == len(set(texts)) > 0


def test_once_prunes_messages_delivered_longer_ago_than_keep_sent_days_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SimStore()
    load_sample(store)
    with contextmanager(_install)(tmp_path, monkeypatch, store, **{"state.keep_sent_days": 7}) as inst:
        cfg = str(inst.config)
        assert cli("db", "upgrade", "--config", cfg)[0] == 0
        code, out, err = cli("once", "--config", cfg, "--now", "2026-03-20T12:00:00")
        assert code in (0, 1) and "pruned" not in out, out + err
        who = inst.op.partner("Новикова Ольга")
        when = datetime(2026, 3, 28, 10, tzinfo=MSK)
        inst.op.order(
            who, [("Велосипед городской Forward Dortmund 28 2.0", 1, 20000)], date=when, status="Закрыт"
        )
        code, out, err = cli("once", "--config", cfg, "--now", "2026-03-28T12:00:00")
        assert code in (0, 1), out + err
        assert "webhook 1 sent" in out and "old delivered messages pruned" in out, out
        code, out, _ = cli("outbox", "--all", "--json", "--config", cfg)
        listed = json.loads(out)
        assert listed and all(m["created_at"] >= "2026-03-21" for m in listed), listed


def test_quarantine_lists_a_document_and_retry_applies_it_once_the_mapping_is_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The administrator's mapping misses a status value the store uses: the order is quarantined
    # with the reason; the value is added to the mapping and a retry asked for; the next cycle
    # applies it (without the retry the order's unchanged version waits for the nightly sweep).
    store = SimStore()
    load_reference(store)
    mapping = tmp_path / "ut11.yaml"
    original = (ROOT / "mappings" / "ut11.yaml").read_text("utf-8")
    assert "open: [НеСогласован, КОбеспечению, КОтгрузке]" in original
    mapping.write_text(original.replace(", КОтгрузке]", "]"), "utf-8")
    with contextmanager(_install)(tmp_path, monkeypatch, store, **{"onec.mapping": str(mapping)}) as inst:
        cfg = str(inst.config)
        assert cli("db", "upgrade", "--config", cfg)[0] == 0
        assert cli("once", "--config", cfg, "--now", "2026-03-20T12:00:00")[0] in (0, 1)
        who = inst.op.partner("Новикова Ольга")
        when = datetime(2026, 3, 20, 12, 30, tzinfo=MSK)
        order = inst.op.order(who, [(BIKE, 1, 20000)], date=when, status="КОтгрузке")
        code, out, _ = cli("once", "--config", cfg, "--now", "2026-03-20T13:00:00")
        assert code == 1 and "status «КОтгрузке» is not in the mapping" in out + _, out + _
        code, out, _ = cli("quarantine", "--config", cfg)
        assert (
            code == 0 and out.startswith("order № ") and f"({order}) since 20.03.2026 13:00, 1 time(s)" in out
        )
        [listed] = json.loads(cli("quarantine", "--json", "--config", cfg)[1])
        assert (listed["doc_id"], listed["field"], listed["failures"]) == (order, "Статус", 1)
        # Another cycle: the same version is not read again, nothing changes.
        assert cli("once", "--config", cfg, "--now", "2026-03-20T13:05:00")[0] == 0
        assert len(json.loads(cli("quarantine", "--json", "--config", cfg)[1])) == 1

        mapping.write_text(original, "utf-8")
        assert cli("quarantine", "retry", "--config", cfg)[0] == 2  # names nothing: a usage error
        code, out, err = cli("quarantine", "retry", listed["number"], "--config", cfg)
        assert code == 0 and "1 document(s) will be read again by the next cycle" in out, out + err
        code, out, err = cli("once", "--config", cfg, "--now", "2026-03-20T13:10:00")
        assert code == 0 and "1 documents applied" in out, out + err
        assert cli("quarantine", "--config", cfg)[1].startswith("quarantine is empty")
        inst.op.close(order)  # applied as an open order: closing it now earns its points
        assert cli("once", "--config", cfg, "--now", "2026-03-20T13:15:00")[0] == 0
        assert inst.op.order_attribute(order, "Бонусы начислено") == 400
        code, _, err = cli("quarantine", "retry", "--all", "--config", cfg)
        assert code == 1 and "nothing is quarantined" in err


def test_quarantine_retry_with_a_feed_source_says_to_re_save_in_1c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SimStore()
    load_reference(store)
    node = "4b1c6a2e-0000-4000-8000-000000000001"
    overrides = {"poll.changes": "exchange_plan", "poll.exchange_node": node}
    with contextmanager(_install)(tmp_path, monkeypatch, store, **overrides) as inst:
        cfg = str(inst.config)
        assert cli("db", "upgrade", "--config", cfg)[0] == 0
        code, _, err = cli("quarantine", "retry", "--all", "--config", cfg)
        assert code == 1 and "re-save the document in 1C" in err, err
