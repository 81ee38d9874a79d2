"""The first cycle on a fresh state database: is ``poll.start`` the go-live moment?

On a state database with no cursor yet, the scan reads every order dated from ``poll.start`` on,
and an order it sees closed for the first time closes *now*: points accrue now and customers are
told (SMS, e-mail, webhook). A ``poll.start`` months back (the example config's 2026-01-01 in
November) turns the store's whole history into new purchases. History goes in with ``backfill``
(close time = document date, no notifications). Owns :func:`poll_start_problem` (``check`` shows it
with :data:`FIX`) and :func:`poll_start_warning` (the line ``once`` and ``run`` say).

May import anything of the bridge (service layer).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from bridge.errors import BridgeError
from bridge.runtime.config import Config
from bridge.store import access, tracking
from bridge.store.db import make_engine

#: What to do about it.
FIX = (
    "set poll.start to the go-live moment and import older orders with `loyalty-bridge backfill --from DATE`"
)
#: ``poll.start`` further back than this (and more than two poll intervals) is not a go-live moment.
SLACK = timedelta(days=1)


def poll_start_warning(config: Config, now: datetime) -> str | None:
    """The one line ``once`` and ``run`` say: :func:`poll_start_problem` and :data:`FIX`."""
    problem = poll_start_problem(config, now)
    return f"{problem}; {FIX}" if problem else None


def poll_start_problem(config: Config, now: datetime) -> str | None:
    """What is wrong when ``poll.start`` lies far behind ``now`` and the state has no cursor yet.

    ``None`` when all is well, for the change sources that do not read from ``poll.start``
    (``exchange_plan``, ``soap``), and when the state database cannot be read (other checks and
    commands report that).
    """
    if config.poll.changes != "scan":
        return None
    start = config.poll_start
    behind = now - start
    if behind <= max(timedelta(seconds=2 * float(config.poll.interval_s)), SLACK):
        return None
    file = access.database_file(config.state.url)
    if file is not None and not file.exists():
        return None  # `db upgrade` first (check and every command say so); never create it here
    try:
        engine = make_engine(config.state.url)
        try:
            with engine.connect() as conn:
                if tracking.any_cursor(conn):
                    return None
        finally:
            engine.dispose()
    except (BridgeError, SQLAlchemyError):
        return None
    return (
        f"poll.start ({start.isoformat()}) is {behind.days} days in the past and the state database "
        "has no cursor yet: the first cycle reads every order since then, and each one not imported "
        "by `backfill` counts as new (close time = now: points accrue now, customers get SMS/e-mail)"
    )
