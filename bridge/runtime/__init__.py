"""The daemon's wiring: config (typed, validated, frozen), logging, the run loop, signals, sd_notify.

May import every other package of the bridge; nothing but ``bridge.cli`` imports this one.
"""
