"""delivery_ids: a stock delivery carries its client-made id, unique, and the balance it answered.

A supervisor's app that resends a delivery after a timeout must not count the goods twice: the id is
the idempotency key (a unique index), and the stored ``balance_qty`` is replayed to the retry. Rows
recorded before this revision keep both columns NULL (several NULLs are allowed by a unique index on
PostgreSQL and SQLite alike).

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stock_deliveries") as batch_op:
        batch_op.add_column(sa.Column("delivery_id", sa.String(36), nullable=True))
        batch_op.add_column(sa.Column("balance_qty", sa.BigInteger(), nullable=True))
    op.create_index("uq_stock_deliveries_delivery_id", "stock_deliveries", ["delivery_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_stock_deliveries_delivery_id", table_name="stock_deliveries")
    with op.batch_alter_table("stock_deliveries") as batch_op:
        batch_op.drop_column("balance_qty")
        batch_op.drop_column("delivery_id")
