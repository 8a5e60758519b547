"""api_keys.session_epoch: signing out of the dashboard ends the key's sessions server-side

A session cookie carries the epoch of its key at sign-in; signing out increments it, so every
cookie issued before is refused (it used to stay valid until it expired).

Revision ID: 0006
Revises: 0007 (issued as 0006 after 0005; re-chained after 0007, which reached main first)
Create Date: 2026-11-30 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_epoch", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("session_epoch")
