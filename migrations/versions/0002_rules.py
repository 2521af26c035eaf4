"""rules: a record of every period opening.

``period_openings`` says which (holder type, product, period start) a rule version has opened, by
whom and how many allowances it wrote. Opening reads it instead of scanning ``allowances`` (millions
of rows) to know whether a period is new (bulk load) or is being topped up with new holders (load
only those without a row), and whether a previous period exists to carry unused quantity from.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "period_openings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("holder_type", sa.String(16), nullable=False),
        sa.Column("product_code", sa.String(32), nullable=False),
        sa.Column("rule_code", sa.String(64), nullable=False),
        sa.Column("rule_version_id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("carried_qty", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("points", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_period_openings"),
    )
    op.create_index(
        "ix_period_openings_product_start", "period_openings", ["holder_type", "product_code", "period_start"]
    )


def downgrade() -> None:
    op.drop_index("ix_period_openings_product_start", table_name="period_openings")
    op.drop_table("period_openings")
