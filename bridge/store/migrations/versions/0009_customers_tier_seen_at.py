"""``customers.tier_seen_at``: with a rolling volume window (``bonus.volume_window_days``), the
moment up to which the tier's fall by time was judged (the customer's last unit of work or tick).

A tick judges only the orders that left the window since then, so a fall is announced once and a
change a document made in between is never read as the window's doing. Existing customers start
with NULL: their next tick looks back a whole window, as before, and sets it.

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


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("tier_seen_at")
