"""Pure loyalty rules: money, tiers, lots, levels, cards, and the ledger's arithmetic.

Nothing here performs I/O, reads the clock or imports SQLAlchemy / requests / zeep / structlog:
time is always an argument. ``tests/domain/test_purity.py`` walks the imports and enforces it.
"""
