"""jobs.engine and jobs.engine_reason: which engine (local or Spark) trains a job, and why

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("engine", sa.String(length=8), server_default="local", nullable=False)
        )
        batch_op.add_column(sa.Column("engine_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("engine_reason")
        batch_op.drop_column("engine")
