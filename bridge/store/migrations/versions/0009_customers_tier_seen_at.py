"""``customers.tier_seen_at``, and open orders marked for deletion no longer stored as open.

``customers.tier_seen_at``: with a rolling volume window (``bonus.volume_window_days``), the
moment up to which the tier's fall by time was judged (the customer's last unit of work or tick).

A tick judges only the orders that left the window since then, so a fall is announced once and a
change a document made in between is never read as the window's doing. Existing customers start
with NULL: their next tick looks back a whole window, as before, and sets it.

An order being assembled that 1C marks for deletion is stored ``cancelled`` from now on (it was
``open``: re-checked every cycle for ever and given the level discount); the rows stored before
are brought to it here.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from bridge.store.schema import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tier_seen_at", UTCDateTime(timezone=True), nullable=True))
    deleted = (
        "(snapshot ->> 'deleted') = 'true'"
        if op.get_bind().dialect.name == "postgresql"
        else "json_extract(snapshot, '$.deleted') = 1"
    )
    op.execute(f"UPDATE orders SET status = 'cancelled' WHERE status = 'open' AND {deleted}")


def downgrade() -> None:
    # The orders stay ``cancelled``: an older bridge reads them the same (its rules take the
    # order's state from the stored snapshot; the column only steers which orders are re-checked).
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("tier_seen_at")
