"""The daemon's runtime: config (typed, validated, frozen), logging, the run loop, signals,
sd_notify, metrics and progress.

Must not import bridge.service, bridge.onec, bridge.site, bridge.notify or bridge.store: the cycle
is handed to the run loop as a callable (``bridge.cli`` wires them together).
"""
