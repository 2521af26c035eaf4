"""walk_in: sales to someone without a card, capped per point per day (issue 9 item 8).

- ``walk_in_caps``: the daily cap of a walk-in product, for every point (``point_code`` = ``''``) or
  for one point; a point's own row wins. Without a row the setting ``CARD_WALK_IN_DAILY_CAP_QTY`` holds.
- ``walk_in_days``: one running row per (point, product, local day): what was sold, in how many sales,
  for how much. A sale locks and updates this one row, so the cap holds under several API processes.

The sales themselves are journal entries of kind ``walk_in`` (no holder, no allowance).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "walk_in_caps",
        sa.Column("product_code", sa.String(32), nullable=False),
        sa.Column("point_code", sa.String(32), nullable=False, server_default=""),
        sa.Column("daily_cap_qty", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("product_code", "point_code", name="pk_walk_in_caps"),
        sa.CheckConstraint("daily_cap_qty >= 0", name=op.f("ck_walk_in_caps_non_negative")),
    )
    op.create_table(
        "walk_in_days",
        sa.Column("point_code", sa.String(32), nullable=False),
        sa.Column("product_code", sa.String(32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sold_qty", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("sales", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("price_minor", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("point_code", "product_code", "day", name="pk_walk_in_days"),
        sa.CheckConstraint("sold_qty >= 0", name=op.f("ck_walk_in_days_non_negative")),
    )
    op.create_index("ix_walk_in_days_day", "walk_in_days", ["day"])


def downgrade() -> None:
    op.drop_index("ix_walk_in_days_day", table_name="walk_in_days")
    op.drop_table("walk_in_days")
    op.drop_table("walk_in_caps")
