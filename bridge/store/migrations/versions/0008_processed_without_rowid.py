"""SQLite: ``processed`` becomes a ``WITHOUT ROWID`` table, stored in its primary key's B-tree.

Every unit of work inserts one row. As a rowid table that wrote two pages: the row at the end of
the table and its key, ``(doc_id, version)``, in the primary key's index. Now the row is written in
the key's B-tree only, one page fewer per commit. The table is rebuilt with its rows (a copy in
key order); PostgreSQL is unchanged (its tables have no rowid).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_COLUMNS = "doc_id, version, customer_id, processed_at"
_CREATE = (
    "CREATE TABLE {name} (\n"
    "\tdoc_id VARCHAR(64) NOT NULL, \n"
    "\tversion VARCHAR(128) NOT NULL, \n"
    "\tcustomer_id VARCHAR(64), \n"
    "\tprocessed_at VARCHAR(32) NOT NULL, \n"
    "\tCONSTRAINT pk_processed PRIMARY KEY (doc_id, version)\n"
    "){suffix}"
)


def _rebuild(suffix: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(_CREATE.format(name="processed_rebuilt", suffix=suffix))
    op.execute(
        f"INSERT INTO processed_rebuilt ({_COLUMNS}) SELECT {_COLUMNS} FROM processed ORDER BY doc_id, version"
    )
    op.execute("DROP TABLE processed")
    op.execute("ALTER TABLE processed_rebuilt RENAME TO processed")


def upgrade() -> None:
    _rebuild(" WITHOUT ROWID")


def downgrade() -> None:
    _rebuild("")
