"""Drop the two indexes of ``entries`` that no query uses: ``ix_entries_order`` (order_id) and
``ix_entries_due`` (kind, expires_at). A book is read by customer (``ix_entries_customer``) and what
time alone causes is found through ``customers.next_due_at``; every unit of work that inserts
entries wrote a page of each of them for nothing (two of the ~20 pages a unit's commit writes).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index("ix_entries_due")
        batch_op.drop_index("ix_entries_order")


def downgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.create_index("ix_entries_order", ["order_id"], unique=False)
        batch_op.create_index("ix_entries_due", ["kind", "expires_at"], unique=False)
