"""Index the orders the idle cycle re-checks: open ones (a partial index), by close time, and by
last update (with the close time, so the third branch of ``tracked_orders`` filters in the index),
each covering the id, version and date those queries read: the tracked orders are three index-only
seeks instead of a scan of every order.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_OPEN = sa.text("status = 'open'")
_READ = ["id", "version", "doc_date"]  # what the tracked-orders queries read: the seeks cover them


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_orders_open", ["status", *_READ], unique=False, sqlite_where=_OPEN, postgresql_where=_OPEN
        )
        batch_op.create_index("ix_orders_close_time", ["close_time", *_READ], unique=False)
        batch_op.create_index("ix_orders_updated_at", ["updated_at", "close_time", *_READ], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_updated_at")
        batch_op.drop_index("ix_orders_close_time")
        batch_op.drop_index("ix_orders_open")
