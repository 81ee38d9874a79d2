"""Fault injection for the simulator: what real 1C, IIS and networks do to a client.

Owns ``Faults`` (``sim.faults``): ``next(kind, count=1, match=None, **params)`` queues faults for
the next matching requests; ``rate(p, kinds=..., seed=...)`` injects them at random with a seeded
RNG; ``fired`` records what was injected. Kinds (``KINDS``):

    error500            500 ``odata.error`` code -1 with a Russian business message (``message=``)
    error503            503 Service Unavailable (HTML, as IIS/Apache answer)
    error429            429 with ``Retry-After`` (``retry_after=`` seconds, default 1)
    html200             an HTML error page with status 200 (IIS/1C login page style)
    bom                 the real answer with a UTF-8 BOM before the JSON
    control_chars       the real answer with a raw control character (VT, 0x0B) inside a string value
    truncated           the real answer's headers, then half its body, then the connection closes
    truncated_json      a short body whose Content-Length matches: broken JSON, clean HTTP
    delay               sleep ``seconds=`` (default 0.5) and then answer normally
    reset               close the connection (TCP RST) without any answer
    timeout_after_send  writes only: apply the request, then hang ``seconds=`` (default 30) and reset

``match`` is a callable taking a ``FaultRequest`` or a substring of ``"METHOD /path?query"``.
Must not import anything of the bridge outside ``bridge.simulator``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "error500",
    "error503",
    "error429",
    "html200",
    "bom",
    "control_chars",
    "truncated",
    "truncated_json",
    "delay",
    "reset",
    "timeout_after_send",
)
WRITE_ONLY = frozenset({"timeout_after_send"})
WRITES = frozenset({"POST", "PATCH", "MERGE", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class FaultRequest:
    """What a ``match`` callable sees: the request as the server decoded it."""

    method: str
    path: str  # percent-decoded path
    query: str  # percent-decoded query string
    headers: Mapping[str, str]
    body: bytes

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}" + (f"?{self.query}" if self.query else "")


Match = Callable[[FaultRequest], bool] | str | None


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault to apply: its kind and parameters (``seconds``, ``retry_after``, ``message``)."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def param(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)


@dataclass(slots=True)
class _Queued:
    fault: Fault
    remaining: int
    match: Match


def _matches(match: Match, request: FaultRequest) -> bool:
    if match is None:
        return True
    if isinstance(match, str):
        return match in request.line
    return bool(match(request))


def _applicable(kind: str, request: FaultRequest) -> bool:
    return kind not in WRITE_ONLY or request.method in WRITES


class Faults:
    """The fault plan of one simulator. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Queued] = []
        self._rate = 0.0
        self._rate_kinds: tuple[str, ...] = ()
        self._rate_match: Match = None
        self._rate_params: dict[str, Any] = {}
        self._rng = random.Random(0)
        self.fired: list[tuple[str, str]] = []  # (kind, "METHOD /path?query")
        self.released = threading.Event()  # set on stop: hanging handlers give up

    def next(self, kind: str, count: int = 1, match: Match = None, **params: Any) -> None:
        """Inject ``kind`` into the next ``count`` matching requests (queued faults fire in order)."""
        _check(kind)
        with self._lock:
            self._queue.append(_Queued(Fault(kind, params), count, match))

    def rate(
        self,
        probability: float,
        kinds: Iterable[str] | None = None,
        seed: int | None = 0,
        match: Match = None,
        **params: Any,
    ) -> None:
        """Inject one of ``kinds`` (default: all) into each matching request with ``probability``."""
        chosen = tuple(kinds) if kinds is not None else KINDS
        for kind in chosen:
            _check(kind)
        with self._lock:
            self._rate = float(probability)
            self._rate_kinds = chosen
            self._rate_match = match
            self._rate_params = dict(params)
            self._rng = random.Random(seed)

    def clear(self) -> None:
        """No more faults (queued or random); ``fired`` is kept."""
        with self._lock:
            self._queue.clear()
            self._rate = 0.0

    def pending(self) -> int:
        with self._lock:
            return sum(q.remaining for q in self._queue)

    def pick(self, request: FaultRequest) -> Fault | None:
        """The fault for this request, if any (called by the server once per request)."""
        with self._lock:
            for queued in self._queue:
                if _applicable(queued.fault.kind, request) and _matches(queued.match, request):
                    queued.remaining -= 1
                    if queued.remaining <= 0:
                        self._queue.remove(queued)
                    self.fired.append((queued.fault.kind, request.line))
                    return queued.fault
            if self._rate <= 0 or not _matches(self._rate_match, request):
                return None
            # Draw for every request so a seed gives the same sequence whatever matches.
            roll, pick = self._rng.random(), self._rng.random()
            kinds = [k for k in self._rate_kinds if _applicable(k, request)]
            if roll >= self._rate or not kinds:
                return None
            kind = kinds[int(pick * len(kinds)) % len(kinds)]
            self.fired.append((kind, request.line))
            defaults = {"seconds": 0.2} if kind == "delay" else {}
            return Fault(kind, {**defaults, **self._rate_params})


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
