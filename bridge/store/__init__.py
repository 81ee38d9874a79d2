"""State: SQLAlchemy schema, the ledger repository, cards, cursors and migrations."""
