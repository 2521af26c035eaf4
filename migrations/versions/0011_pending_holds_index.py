"""pending_holds_index: the pending holds of a point, found without reading every hold ever made.

A redemption's group sets aside the stock that pending pump holds reserve at its points (quota.ledger_pg
``_LOCK_AVAILABLE``): one lookup per tracked (point, product) of the group. ``holds`` keeps every hold
ever made, so the lookup reads a partial index of the pending ones only, which stays as small as the
number of pumps running.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pending = sa.text("state = 'pending'")
    op.create_index("ix_holds_pending_point", "holds", ["point_code"], postgresql_where=pending,
                    sqlite_where=pending)


def downgrade() -> None:
    op.drop_index("ix_holds_pending_point", table_name="holds")
