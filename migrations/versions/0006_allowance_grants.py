"""allowance_grants: a period's allowances as opened, stored by blocks of holders (issue 3, target d).

Opening a month for a million families writes six million allowances. One row per (holder, product)
cannot be written in the two seconds the opening has (PostgreSQL spends about a microsecond per row
before any index), so on PostgreSQL an opening writes what it computed as columns instead:

- ``grant_runs``: one row per opening run and holder type: how many rules (``slots``) it opened and
  how many consecutive holder ids share a block (``block_size``).
- ``allowance_grants``: per run and block of holder ids, ``granted_qty`` as packed 32-bit big-endian
  integers laid out holder-major (element ``(holder_id % block_size) * slots + slot``), 0 where the
  holder has no allowance; ``base_qty`` and ``carried_qty`` the same way, or NULL in every block of a
  run whose base = granted or which carried nothing. Packed ``bytea`` rather than ``integer[]``:
  PostgreSQL parses an array element by element on COPY, which doubled the write. Stored uncompressed (STORAGE EXTERNAL): compressing cost more than writing.
- ``grant_qty(bytes, element)``: one element, for SQL that reads a single holder's grant.
- ``period_openings.run_id`` / ``slot``: which run and slot hold an opening's grants (NULL: the
  opening wrote ``allowances`` rows directly — SQLite, top-ups, points).

The ledger turns a grant into an ``allowances`` row the first time a redemption, hold or top-up
touches that holder and product in a live period (``INSERT … ON CONFLICT DO NOTHING``, in key
order); until then readers see the grant as an untouched allowance (nothing used, nothing held).

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PACKED = sa.LargeBinary()
_GRANT_QTY = (
    "CREATE FUNCTION grant_qty(packed bytea, element integer) RETURNS integer "
    "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT (get_byte(packed, 4 * element) << 24) "
    "| (get_byte(packed, 4 * element + 1) << 16) | (get_byte(packed, 4 * element + 2) << 8) "
    "| get_byte(packed, 4 * element + 3) $$"
)


def upgrade() -> None:
    op.create_table(
        "grant_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("holder_type", sa.String(16), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("block_size", sa.Integer(), nullable=False),
        sa.Column("holders", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_grant_runs"),
        sa.CheckConstraint("slots > 0 AND block_size > 0", name=op.f("ck_grant_runs_shape")),
    )
    op.create_table(
        "allowance_grants",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("granted_qty", _PACKED, nullable=False),
        sa.Column("base_qty", _PACKED, nullable=True),
        sa.Column("carried_qty", _PACKED, nullable=True),
        sa.PrimaryKeyConstraint("run_id", "block", name="pk_allowance_grants"),
        sa.ForeignKeyConstraint(["run_id"], ["grant_runs.id"], name=op.f("fk_allowance_grants_run_id_grant_runs")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for column in ("granted_qty", "base_qty", "carried_qty"):
            op.execute(f"ALTER TABLE allowance_grants ALTER COLUMN {column} SET STORAGE EXTERNAL")
        op.execute(_GRANT_QTY)
    with op.batch_alter_table("period_openings") as batch_op:
        batch_op.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("slot", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("period_openings") as batch_op:
        batch_op.drop_column("slot")
        batch_op.drop_column("run_id")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION grant_qty(bytea, integer)")
    op.drop_table("allowance_grants")
    op.drop_table("grant_runs")

