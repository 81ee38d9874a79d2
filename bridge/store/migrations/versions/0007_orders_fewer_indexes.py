"""Fewer indexes on ``orders``: each one is one or two of the pages every unit of work's commit
writes (the commit is most of a unit's time on SQLite).

* ``ix_orders_customer_id`` goes: every query of a customer's orders asks for the **open** ones,
  so the partial index of open orders now leads with the customer (``customer_id, doc_date, id,
  version, status``: the trailing status makes it covering on SQLite 3.40); the idle cycle's scan
  of all open orders still reads only that index.
* ``ix_orders_close_time`` goes: an order closes (``close_time``) in the unit of work that writes
  its row, so ``updated_at`` (which that unit sets) is never earlier, and "closed or changed since"
  is "``updated_at`` since". The save keeps it so where a close time lies ahead of the write (a
  document dated ahead, imported as history: its close time is its date), and this migration
  brings older rows to it.
* ``ix_orders_updated_at`` no longer carries ``close_time`` and is ordered ``updated_at, doc_date``
  (a backlog applied in document order inserts near its end).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    op.execute(
        "UPDATE orders SET updated_at = close_time "
        "WHERE close_time IS NOT NULL AND close_time > updated_at"
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_updated_at")
        batch_op.drop_index("ix_orders_close_time")
        batch_op.drop_index("ix_orders_open")
        batch_op.drop_index("ix_orders_customer_id")
        batch_op.create_index(
            "ix_orders_open",
            ["customer_id", "doc_date", "id", "version", "status"],
            unique=False,
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        )
        batch_op.create_index(
            "ix_orders_updated_at", ["updated_at", "doc_date", "id", "version"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_updated_at")
        batch_op.drop_index("ix_orders_open")
        batch_op.create_index("ix_orders_customer_id", ["customer_id"], unique=False)
        batch_op.create_index(
            "ix_orders_open",
            ["status", "id", "version", "doc_date"],
            unique=False,
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        )
        batch_op.create_index("ix_orders_close_time", ["close_time", "id", "version", "doc_date"], unique=False)
        batch_op.create_index(
            "ix_orders_updated_at", ["updated_at", "close_time", "id", "version", "doc_date"], unique=False
        )
