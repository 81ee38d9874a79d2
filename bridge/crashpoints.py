"""Named crash points for the crash-matrix tests: ``BRIDGE_CRASH_AT=name[:n]`` makes the process
``os._exit(137)`` the n-th time (default 1st) it reaches ``point(name)``, as a power cut would.

Costs one dictionary lookup when the variable is unset (production). Imports nothing of the bridge.

Points (in cycle order): ``after_fetch`` (a document read from 1C, nothing applied),
``before_commit`` (a document's ledger and outbox rows written, transaction open),
``after_commit`` (the document committed, the cycle not yet told), ``before_cursor`` (all documents
committed, cursors not), ``after_cursor`` (cursors committed, source not acknowledged),
``writeback_sent`` (a write-back PATCH/POST answered by 1C, not yet recorded or marked sent),
``webhook_sent`` (a webhook accepted by the site, not yet marked sent), ``delivery_marked``
(a delivery marked sent).
"""

from __future__ import annotations

import os
import threading
from collections import Counter

POINTS = (
    "after_fetch",
    "before_commit",
    "after_commit",
    "before_cursor",
    "after_cursor",
    "writeback_sent",
    "webhook_sent",
    "delivery_marked",
)
_seen: Counter[str] = Counter()
_lock = threading.Lock()


def _target() -> tuple[str, int] | None:
    spec = os.environ.get("BRIDGE_CRASH_AT")
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    return name, int(nth or 1)


def point(name: str) -> None:
    """Die here if ``BRIDGE_CRASH_AT`` names this point (and this is the n-th time)."""
    target = _target()
    if target is None or target[0] != name:
        return
    with _lock:  # write-backs may be sent from several threads: every hit counts once
        _seen[name] += 1
        hit = _seen[name] == target[1]
    if hit:
        os._exit(137)
