"""A broken invariant in the rules is the document's problem, not the cycle's.

The pure rules raise ``ValueError`` when a unit of work would break an invariant (a reservation
the lots cannot cover, a level term that is not positive, …). The engine turns it into a
``DocumentError`` naming the document, so the cycle quarantines that document with the reason and
carries on with the others; nothing of the failed unit of work is stored.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest
from sqlalchemy import Engine

from bridge.domain.book import Rules
from bridge.domain.model import DiscountRules, ReturnDoc, ReturnLine
from bridge.errors import DocumentError
from bridge.service.engine import Engine as LoyaltyEngine
from bridge.store.ledger import LedgerStore
from tests.domain.factories import LEVELS, MSK, at, line, order, rules

GOOD = rules()
# "fan" with a zero-day term: a promotion to it cannot start a term (levels._term_end).
BROKEN = Rules(GOOD.bonus, DiscountRules((LEVELS[0], replace(LEVELS[1], term_days=0), LEVELS[2])))


def test_a_broken_invariant_in_an_order_quarantines_that_order(db_engine: Engine) -> None:
    store = LedgerStore(db_engine)
    eng = LoyaltyEngine(store, BROKEN, MSK)
    bad = order("o-bad", "z", [line(10000)], date=at(2026, 2, 1))
    with pytest.raises(DocumentError) as caught:
        eng.apply_order(bad, at(2026, 2, 1))
    err = caught.value
    assert err.document == "o-bad"
    assert err.reason.startswith("order O-BAD (o-bad): ")  # the number 1C shows, and the id
    assert "term_days must be positive" in err.reason
    assert isinstance(err.__cause__, ValueError)
    # nothing of the unit of work was stored: the version is still to be processed
    with db_engine.connect() as conn:
        assert store.order_state(conn, "o-bad", "v1") == (False, None)
    # the engine carries on with the next document
    fine = eng.apply_order(order("o-ok", "y", [line(5000)], date=at(2026, 2, 1)), at(2026, 2, 1))
    assert not fine.duplicate and fine.entries > 0
    assert eng.customer_view("y", at(2026, 2, 1)).total == D(100)


def test_a_broken_invariant_in_a_return_quarantines_that_return(db_engine: Engine) -> None:
    store = LedgerStore(db_engine)
    LoyaltyEngine(store, GOOD, MSK).apply_order(
        order("a", "z", [line(60000)], date=at(2026, 2, 1)), at(2026, 2, 1)
    )  # king
    eng = LoyaltyEngine(store, BROKEN, MSK)
    # 40 000 returned: 20 000 still supports fan, whose (zero-day) term cannot start
    ret = ReturnDoc(
        "r-1", "v1", at(2026, 2, 3), "z", "a", True, False, (ReturnLine("p-bike", D(1), D(40000)),)
    )
    with pytest.raises(DocumentError) as caught:
        eng.apply_return(ret, at(2026, 2, 3))
    err = caught.value
    assert err.document == "r-1"
    assert err.reason.startswith("return r-1 against order A (a): ")
    assert isinstance(err.__cause__, ValueError)
    with db_engine.connect() as conn:
        assert not store.is_processed(conn, "r-1", "v1")
    view = eng.customer_view("z", at(2026, 2, 3))
    assert view.level is not None and view.level.code == "king"
