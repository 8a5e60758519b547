"""blob stores (each blob names its store and key) and datasets imported by URI

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-30 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("store", sa.String(length=512), server_default="database", nullable=False)
        )
        batch_op.add_column(sa.Column("key", sa.String(length=1024), nullable=True))
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.alter_column("blob_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="ready", nullable=False)
        )
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("mode", sa.String(length=16), server_default="upload", nullable=False)
        )
        batch_op.add_column(sa.Column("source_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("parts", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("import_job_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        for name in ("import_job_id", "parts", "source_uri", "mode", "error", "status"):
            batch_op.drop_column(name)
        batch_op.alter_column("blob_id", existing_type=sa.Uuid(), nullable=False)
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.drop_column("key")
        batch_op.drop_column("store")
