"""An in-process 1C:Trade Management 11 simulator: OData v3 in 1C's dialect, with its quirks.

Used by the ``demo`` command and by end-to-end tests. ``Simulator`` (``server.py``) serves a
``SimStore`` (``store.py``) described by a ``Schema`` (``schema.py``); ``faults.py`` injects
failures; ``generate.py`` loads the Russian sample and generates big data sets. See
``docs/readme/simulator.md``. Must not import anything of the bridge outside ``bridge.simulator``.
"""

from bridge.simulator.faults import KINDS as FAULT_KINDS
from bridge.simulator.faults import FaultRequest, Faults
from bridge.simulator.generate import Generated, generate, load_reference, load_sample, read_sample
from bridge.simulator.schema import EMPTY_GUID, Schema, build_schema
from bridge.simulator.server import Simulator
from bridge.simulator.store import EXCHANGE_PLAN, SimStore

__all__ = [
    "EMPTY_GUID",
    "EXCHANGE_PLAN",
    "FAULT_KINDS",
    "FaultRequest",
    "Faults",
    "Generated",
    "Schema",
    "SimStore",
    "Simulator",
    "build_schema",
    "generate",
    "load_reference",
    "load_sample",
    "read_sample",
]
