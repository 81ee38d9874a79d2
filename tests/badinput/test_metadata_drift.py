"""``$metadata`` drift in a running installation: someone un-publishes a field the mapping names
(re-saves the OData content without it). 1C then refuses every query that selects it (400,
«Неизвестное свойство … в $select»). The cycle must say which field, which mapping key and what
to do, still deliver what was already queued, skip nothing, and go on by itself once the field is
back."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bridge.errors import ContractError
from tests.badinput.kit import ORDERS, at, earned, good_orders, instant_retries, outbox_rows, quarantined
from tests.e2e.cycle_kit import world

LOCK = "Конфликт блокировок при выполнении транзакции"


def test_a_document_field_gone_from_1c_is_named_and_nothing_is_lost(tmp_path: Path) -> None:
    with world(tmp_path, start=at(2)) as w:
        instant_retries(w)
        [first] = good_orders(w, 1)
        w.sim.faults.next("error500", match=lambda r: r.method == "PATCH" and ORDERS in r.path, message=LOCK)
        assert w.once(at(2, 12)).failures == []
        assert earned(w, first) == Decimal(400)
        assert w.order_attr(first, "Бонусы начислено") is None  # its write-back waits for a retry
        later = good_orders(w, 2, day=3)
        full = w.store.schema
        w.store.schema = full.without(f"{ORDERS}.Статус")  # the OData content re-saved without it

        with pytest.raises(ContractError) as caught:
            w.once(at(3, 12))
        message = str(caught.value)
        assert message.startswith(
            "1C metadata does not match the mapping: "
            f"{ORDERS} has no field Статус (mapping: orders.status.field) — "
        )
        assert "re-save «Документ.ЗаказКлиента» in the OData content" in message
        assert "1C refused (HTTP 400, code -1): Неизвестное свойство 'Статус' в $select" in message
        assert "nothing is skipped" in message and "`loyalty-bridge check`" in message
        # What was queued still went out; the new orders wait, neither applied nor quarantined.
        assert w.order_attr(first, "Бонусы начислено") == Decimal(400)
        assert [earned(w, o) for o in later] == [Decimal(0)] * 2 and quarantined(w) == {}

        metadata = w.store.request_count("GET", ("metadata",))
        assert metadata == 1
        with pytest.raises(ContractError, match="has no field Статус"):  # said again every cycle…
            w.once(at(3, 12, 1))
        assert w.store.request_count("GET", ("metadata",)) == 1  # …$metadata re-read every 15 minutes
        with pytest.raises(ContractError, match="has no field Статус"):
            w.once(at(3, 13))
        assert w.store.request_count("GET", ("metadata",)) == 2
        w.store.schema = full  # published again: the bridge goes on from where it stopped
        result = w.once(at(3, 14))
        assert result.failures == [] and result.by_entity["order"] == 2
        assert [earned(w, o) for o in later] == [Decimal(400)] * 2
        assert w.once(at(3, 15)).failures == []
        assert [earned(w, o) for o in [first, *later]] == [Decimal(400)] * 3  # once each
        assert {m.status for m in outbox_rows(w)} <= {"sent", "superseded"}


def test_a_partner_field_gone_from_1c_stops_the_read_and_names_it(tmp_path: Path) -> None:
    """The partners of new orders are read with them: that read fails the same way, and
    ``$metadata`` is read once for the cycle to say why."""
    with world(tmp_path, start=at(2)) as w:
        instant_retries(w)
        orders = good_orders(w, 2)
        full = w.store.schema
        w.store.schema = full.without("Catalog_Партнеры.Description")
        with pytest.raises(ContractError) as caught:
            w.once(at(2, 12))
        assert "Catalog_Партнеры has no field Description (mapping: " in str(caught.value)
        assert "partners.fields.name" in str(caught.value)
        assert "Неизвестное свойство 'Description' в $select" in str(caught.value)
        assert w.store.request_count("GET", ("metadata",)) == 1
        assert [earned(w, o) for o in orders] == [Decimal(0)] * 2 and quarantined(w) == {}
        w.store.schema = full
        assert w.once(at(2, 13)).failures == []
        assert [earned(w, o) for o in orders] == [Decimal(400)] * 2


def test_a_product_field_gone_from_1c_is_named_on_each_order_that_needs_it(tmp_path: Path) -> None:
    """The products are read inside an order's processing: each order fails with what 1C lacks
    (not quarantined: the document is not at fault), the cursors stay, and the first cycle after
    the fix applies them."""
    with world(tmp_path, start=at(2)) as w:
        instant_retries(w)
        orders = good_orders(w, 2)
        full = w.store.schema
        w.store.schema = full.without("Catalog_Номенклатура.ТипНоменклатуры")
        result = w.once(at(2, 12))
        assert len(result.failures) == 2 and quarantined(w) == {}, result.failures
        for failure in result.failures:
            assert (
                "Catalog_Номенклатура has no field ТипНоменклатуры (mapping: products.fields.type)" in failure
            )
            assert "1C said" not in failure  # the rows came, without the field: no 1C error to quote
        assert w.store.request_count("GET", ("metadata",)) == 1  # read once for the cycle
        assert [earned(w, o) for o in orders] == [Decimal(0)] * 2
        w.store.schema = full
        assert w.once(at(2, 13)).failures == []
        assert [earned(w, o) for o in orders] == [Decimal(400)] * 2


def test_a_write_back_refused_for_a_lost_field_says_which(tmp_path: Path) -> None:
    """The order's additional attributes un-published: the cycle's read fails as above, and the
    write-back already queued, which re-reads that section before writing, waits with the same
    diagnosis in the outbox (``last_error``) instead of 1C's bare 400; it goes out once fixed."""
    section = f"{ORDERS}.ДополнительныеРеквизиты"
    with world(tmp_path, start=at(2)) as w:
        instant_retries(w)
        [order] = good_orders(w, 1)
        w.sim.faults.next("error500", match=lambda r: r.method == "PATCH" and ORDERS in r.path, message=LOCK)
        assert w.once(at(2, 12)).failures == []
        full = w.store.schema
        w.store.schema = full.without(section)
        with pytest.raises(ContractError, match=f"{ORDERS} has no section field ДополнительныеРеквизиты"):
            w.once(at(3, 12))
        [msg] = [m for m in outbox_rows(w) if m.kind == "order"]
        assert msg.status == "pending" and msg.attempts == 2
        assert msg.last_error.startswith("TransientError: 1C refused the write-back, will retry: GET ")
        assert "Неизвестное свойство 'ДополнительныеРеквизиты' в $select — 1C metadata does not match" in (
            msg.last_error
        )
        assert "has no section field ДополнительныеРеквизиты." in msg.last_error
        w.store.schema = full
        assert w.once(at(3, 13)).failures == []
        assert w.order_attr(order, "Бонусы начислено") == Decimal(400)
        assert {m.status for m in outbox_rows(w)} <= {"sent", "superseded"}


def test_reference_data_without_a_mapped_field_holds_the_write_back_not_kills_it(tmp_path: Path) -> None:
    """Card kinds come back without their name (no ``cards.kind`` set, so only creating a card reads
    them): the card's creation waits, pending with the diagnosis, instead of being given up on."""
    kinds = "Catalog_ВидыКартЛояльности"
    with world(tmp_path, start=at(2), cards={"prefix": "2990", "kind": None}) as w:
        instant_retries(w)
        [order] = good_orders(w, 1)
        full = w.store.schema
        w.store.schema = full.without(f"{kinds}.Description")
        with pytest.raises(ContractError, match=f"{kinds} has no field Description") as caught:
            w.once(at(2, 12))  # every document went through; the card waits, and the cycle says why
        assert "the write-backs that need it wait in the outbox" in str(caught.value)
        assert earned(w, order) == Decimal(400)
        [card] = [m for m in outbox_rows(w) if m.kind == "card"]
        assert card.status == "pending"
        assert card.last_error.startswith(
            "TransientError: the write-back waits for 1C's OData content: 1C metadata does not match the "
            f"mapping: {kinds} has no field Description (mapping: "
        )
        w.store.schema = full
        assert w.once(at(2, 13)).failures == []
        partner = w.store.get(ORDERS, order)["Партнер_Key"]  # type: ignore[index]
        assert len(w.op.cards_of(partner)) == 1
        assert {m.status for m in outbox_rows(w)} <= {"sent", "superseded"}


def test_the_card_number_gone_from_1c_holds_new_cards_and_names_the_field(tmp_path: Path) -> None:
    """The cards' number field un-published: new customers' cards are looked up by number with a
    ``$filter`` on it, which 1C refuses (400, «Неизвестное свойство»). No card is created blind, the
    ledger is kept, and the cards go out once the field is back; one card per customer."""
    cards = "Catalog_КартыЛояльности"
    with world(tmp_path, start=at(2)) as w:
        instant_retries(w)
        orders = good_orders(w, 2)
        full = w.store.schema
        w.store.schema = full.without(f"{cards}.Штрихкод")
        with pytest.raises(ContractError) as caught:
            w.once(at(2, 12))
        message = str(caught.value)
        assert message.startswith(
            f"1C metadata does not match the mapping: {cards} has no field Штрихкод "
            "(mapping: cards.fields.number)"
        ), message
        assert "the write-backs that need it wait in the outbox (retried, nothing is lost)" in message
        assert "1C said" not in message  # 1C's words are the write-back's, first in its last_error
        # The documents went through; only the cards wait, each with 1C's words and the diagnosis.
        assert [earned(w, o) for o in orders] == [Decimal(400)] * 2 and quarantined(w) == {}
        waiting = [m for m in outbox_rows(w) if m.kind == "card"]
        assert len(waiting) == 2 and {m.status for m in waiting} == {"pending"}
        for msg in waiting:
            assert "Неизвестное свойство 'Штрихкод' объекта Catalog_КартыЛояльности — 1C metadata" in (
                msg.last_error
            ), msg.last_error
        assert w.store.request_count("POST", (cards,)) == 0  # nothing created without its look-up
        assert w.store.request_count("GET", ("metadata",)) == 1
        w.store.schema = full
        assert w.once(at(2, 13)).failures == []
        assert [earned(w, o) for o in orders] == [Decimal(400)] * 2
        for order in orders:
            partner = w.store.get(ORDERS, order)["Партнер_Key"]  # type: ignore[index]
            assert len(w.op.cards_of(partner)) == 1
        assert {m.status for m in outbox_rows(w)} <= {"sent", "superseded"}
