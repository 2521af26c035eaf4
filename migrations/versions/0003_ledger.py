"""ledger: per-entry seal digests, running point stock, message outbox cursor and delivery state.

- ``seals.digests``: the (seq, content digest) list a seal covers, so ``verify`` names each changed,
  removed, inserted or moved entry instead of only "seal N broken".
- ``point_stock``: one running row per (point, product), updated once per group commit (never per
  redemption), so stock is checked under several API processes without a hot row per redemption.
- ``message_cursors`` / ``messages``: the journal is the outbox (invariant 8); a sender keeps its read
  position in ``message_cursors`` and each rendered message's delivery state in ``messages``.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("seals") as batch_op:
        batch_op.add_column(sa.Column("digests", sa.Text(), nullable=True))
        batch_op.create_index("ix_seals_last_seq", ["last_seq"], unique=True)
    op.create_table(
        "point_stock",
        sa.Column("point_code", sa.String(32), nullable=False),
        sa.Column("product_code", sa.String(32), nullable=False),
        sa.Column("delivered_qty", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("dispensed_qty", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("point_code", "product_code", name="pk_point_stock"),
    )
    op.create_table(
        "message_cursors",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("name", name="pk_message_cursors"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(64), nullable=False),
        sa.Column("text_ar", sa.Text(), nullable=False),
        sa.Column("text_en", sa.Text(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(200), nullable=False, server_default=""),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.UniqueConstraint("seq", "channel", name="uq_messages_seq_channel"),
    )
    op.create_index("ix_messages_state_next", "messages", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_state_next", table_name="messages")
    op.drop_table("messages")
    op.drop_table("message_cursors")
    op.drop_table("point_stock")
    with op.batch_alter_table("seals") as batch_op:
        batch_op.drop_index("ix_seals_last_seq")
        batch_op.drop_column("digests")
