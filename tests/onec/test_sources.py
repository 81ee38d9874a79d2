"""Change sources without HTTP: the Atom feed parser, references of documents, the scan's request
estimates, SOAP deletions (a small fake client) and the exchange point literal."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridge.errors import FatalHTTPError
from bridge.onec.literals import key_chunks, query_string
from bridge.onec.mapping import load_mapping
from bridge.onec.normalize import normalize_row
from bridge.onec.odata import ODataClient
from bridge.onec.soap import Changes
from bridge.onec.sources import (
    SOAP_MESSAGE_NO,
    Change,
    ExchangePlanSource,
    Related,
    ScanSource,
    SoapSource,
    parse_changes_feed,
)
from bridge.simulator import SimStore, load_sample
from bridge.simulator.atom import changes_feed
from bridge.simulator.store import Change as SimChange

MSK = ZoneInfo("Europe/Moscow")
MAPPING = load_mapping(Path(__file__).parents[2] / "mappings" / "ut11.yaml")
ORDERS = "Document_ЗаказКлиента"
GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def offline_client(**kwargs: Any) -> ODataClient:
    return ODataClient("http://127.0.0.1:9/ut11/odata/standard.odata", "u", "p", MSK, **kwargs)


class State:
    def __init__(
        self, versions: dict[str, dict[str, str]] | None = None, cursors: dict[str, str] | None = None
    ) -> None:
        self._versions = versions or {}
        self.cursors = cursors or {}

    def cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    def tracked(self, entity: str, now: datetime) -> dict[str, str]:
        return {}

    def tracked_since(self, entity: str, now: datetime) -> datetime | None:
        return None

    def versions(self, entity: str, keys: Collection[str]) -> dict[str, str]:
        known = self._versions.get(entity, {})
        return {k: known[k] for k in keys if k in known}


def test_feed_entries_properties_and_deletions() -> None:
    store = SimStore()
    load_sample(store)
    order = store.rows(ORDERS)[0]
    body = changes_feed(
        "http://1c/ut11/odata/standard.odata/",
        [SimChange(ORDERS, order["Ref_Key"], False, 1), SimChange(ORDERS, GUID, True, 2)],
        store.schema.entity_sets,
        store.get,
        datetime(2026, 3, 1, 12, 0),
    )
    first, gone = parse_changes_feed(body)
    assert (first.entity_set, first.key, first.deleted) == (ORDERS, order["Ref_Key"], False)
    assert (gone.entity_set, gone.key, gone.deleted, gone.properties) == (ORDERS, GUID, True, None)
    assert first.properties is not None
    row = normalize_row(first.properties, MSK)
    assert row["DataVersion"] == order["DataVersion"] and isinstance(row["Posted"], bool)
    assert isinstance(row["СуммаДокумента"], Decimal) and row["Date"].tzinfo is not None
    assert [line["LineNumber"] for line in row["Товары"]] == list(range(1, len(order["Товары"]) + 1))
    assert all(isinstance(line["Количество"], Decimal) for line in row["Товары"])


def test_feed_without_properties_and_garbage() -> None:
    bare = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://1c/odata/standard.odata/'
        + f"Catalog_Партнеры(guid'{GUID.upper()}')".encode()
        + b"</id></entry></feed>"
    )
    [entry] = parse_changes_feed(bare)
    assert (entry.entity_set, entry.key, entry.properties) == ("Catalog_Партнеры", GUID, None)
    atom = b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>x</id></entry></feed>'
    for body in ("<html><body>Ошибка</body></html>".encode(), b"not xml", atom):
        with pytest.raises(FatalHTTPError):
            parse_changes_feed(body)


def test_references_of_orders_and_returns() -> None:
    order = {"Партнер_Key": GUID, "КартаЛояльности_Key": None}
    ret = {
        "Партнер_Key": GUID,
        "ДокументРеализации": "1f8fad5b-d9cb-469f-a165-70867728950e",
        "ДокументРеализации_Type": "StandardODATA.Document_РеализацияТоваровУслуг",
    }
    refs = Related(offline_client(), MAPPING).references(
        [Change("order", "a", order, "1"), Change("return", "b", ret, "1"), Change("order", "c", None, "")]
    )
    assert refs == {"customer": {GUID}, "card": set(), "sale": {"1f8fad5b-d9cb-469f-a165-70867728950e"}}


def test_scan_estimates_keys_against_a_narrow_scan() -> None:
    poll = SimpleNamespace(start=datetime(2026, 1, 1), overlap_s=600, reconcile_days=90, reconcile_at=None)
    scan = ScanSource(offline_client(url_budget=2000), MAPPING, poll, MSK)  # type: ignore[arg-type]
    keys = [f"{i:08x}-d9cb-469f-a165-70867728950e" for i in range(1000)]
    per_request = 1000 / scan.key_requests("order", keys)
    assert 20 <= per_request <= 40  # ~60 encoded bytes a key in a 2000-byte budget
    end = datetime(2026, 3, 1, tzinfo=MSK)
    assert scan.scan_requests("order", 1000, end - timedelta(days=365), end) == 1  # lower bound
    scan._density["order"] = 20_000 / (365 * 86400)  # what the last scan measured
    assert scan.scan_requests("order", 1000, end - timedelta(days=365), end) == 5


@pytest.mark.parametrize("budget", [300, 900, 2000, 8000])
@pytest.mark.parametrize("count", [1, 2, 29, 30, 31, 500, 2001])
def test_the_by_key_estimate_is_the_number_of_chains_the_client_sends(budget: int, count: int) -> None:
    poll = SimpleNamespace(start=datetime(2026, 1, 1), overlap_s=600, reconcile_days=90, reconcile_at=None)
    scan = ScanSource(offline_client(url_budget=budget), MAPPING, poll, MSK)  # type: ignore[arg-type]
    keys = [f"{i:08x}-d9cb-469f-a165-70867728950e" for i in range(count)]
    base = len(query_string(select=scan._narrow_select("order"), top=10**6)) + len("&$filter=")
    chains = list(key_chunks(keys, "Ref_Key", budget, base))
    assert scan.key_requests("order", keys) == len(chains)
    assert scan.key_requests("order", []) == 0


class FakeSoap:
    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.calls: list[tuple[str, Any]] = []

    def get_changes(self, message_no: int) -> Changes:
        self.calls.append(("GetChanges", message_no))
        return self.changes

    def confirm(self, message_no: int) -> bool:
        self.calls.append(("ConfirmChanges", message_no))
        return True


def test_soap_deletions_and_confirmation() -> None:
    customer, order = GUID, "1f8fad5b-d9cb-469f-a165-70867728950e"
    fake = FakeSoap(Changes(8, deleted=(customer, order)))
    src = SoapSource(fake, MAPPING, MSK)  # type: ignore[arg-type]
    state = State({"customer": {customer: "v1"}}, {SOAP_MESSAGE_NO: "7"})
    got: Iterator[Change] = src.read(state, datetime(2026, 3, 1, tzinfo=MSK))
    assert [(c.entity, c.key, c.row) for c in got] == [("customer", customer, None), ("order", order, None)]
    assert fake.calls == [("GetChanges", 7)] and src.cursor_updates() == {SOAP_MESSAGE_NO: "8"}
    src.acknowledge()
    assert fake.calls[-1] == ("ConfirmChanges", 8)


def test_exchange_point_literal() -> None:
    src = ExchangePlanSource(offline_client(), MAPPING, "ExchangePlan_ОбменСайтом", GUID.upper())
    assert src.data_exchange_point == (
        f"'http://127.0.0.1:9/ut11/odata/standard.odata/ExchangePlan_ОбменСайтом(guid'{GUID}')'"
    )
    assert src.cursor_updates() == {}
    src.acknowledge()  # nothing read yet: nothing to acknowledge, no request
    assert src.client.requests_made == 0
