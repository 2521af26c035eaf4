"""card_auth: tap challenges, card-signed transactions (online and offline) and offline conflicts.

- ``card_challenges``: one random challenge per tap, bound to the device that asked, single use.
- ``card_transactions``: every debit a card signed (SIGN TRANSACTION), keyed by the redemption id: the
  evidence that the card agreed, and the idempotency record of offline sync. ``(card_serial, counter)``
  is unique: one card answer can back one debit only (a replayed or cloned answer collides).
- ``offline_conflicts``: offline redemptions the ledger could not honour, with the amount at risk.

(``cards.public_key`` and ``cards.last_counter`` already exist since 0001.)

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "card_challenges",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("challenge", sa.LargeBinary(), nullable=False),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_card_challenges"),
    )
    op.create_index("ix_card_challenges_expires_at", "card_challenges", ["expires_at"])
    op.create_table(
        "card_transactions",
        sa.Column("redemption_id", sa.String(36), nullable=False),
        sa.Column("card_serial", sa.String(32), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("product_code", sa.String(32), nullable=False),
        sa.Column("quantity_qty", sa.BigInteger(), nullable=False),
        sa.Column("point_code", sa.String(32), nullable=False),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("result", sa.String(40), nullable=True),
        sa.Column("happened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("redemption_id", name="pk_card_transactions"),
        sa.UniqueConstraint("card_serial", "counter", name="uq_card_transactions_card_serial"),
    )
    op.create_table(
        "offline_conflicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("redemption_id", sa.String(36), nullable=False),
        sa.Column("card_serial", sa.String(32), nullable=False),
        sa.Column("holder_type", sa.String(16), nullable=True),
        sa.Column("holder_id", sa.Integer(), nullable=True),
        sa.Column("product_code", sa.String(32), nullable=False),
        sa.Column("point_code", sa.String(32), nullable=False),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("quantity_at_risk_qty", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("happened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_offline_conflicts"),
        sa.UniqueConstraint("redemption_id", name="uq_offline_conflicts_redemption_id"),
    )
    op.create_index("ix_offline_conflicts_created_at", "offline_conflicts", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_offline_conflicts_created_at", table_name="offline_conflicts")
    op.drop_table("offline_conflicts")
    op.drop_table("card_transactions")
    op.drop_index("ix_card_challenges_expires_at", table_name="card_challenges")
    op.drop_table("card_challenges")
