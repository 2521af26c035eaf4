"""lost_report_failures: failed citizen lost-card reports, counted to rate-limit guessing.

The lost-card form is public (serial + a family member's national ID, no sign-in) and blocks a card at
once. Without a limit a stranger holding a serial could try national IDs until the family's card is
blocked. Each failure is kept (its own transaction) with the serial, the client address and the time;
the form refuses (429) after too many on a serial or from an address within an hour.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lost_report_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lost_report_failures")),
    )
    op.create_index("ix_lost_report_failures_serial_at", "lost_report_failures", ["serial", "at"])
    op.create_index("ix_lost_report_failures_client_at", "lost_report_failures", ["client", "at"])


def downgrade() -> None:
    op.drop_index("ix_lost_report_failures_client_at", table_name="lost_report_failures")
    op.drop_index("ix_lost_report_failures_serial_at", table_name="lost_report_failures")
    op.drop_table("lost_report_failures")
