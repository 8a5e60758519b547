"""sweeps.refit_job_id foreign key on Postgres

Revision 0003 declared it with use_alter inside create_table, which Postgres never received
(SQLite got it inline). Sweeps and jobs refer to each other, so it is added after both exist.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 17:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "fk_sweeps_refit_job_id_jobs"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE sweeps DROP CONSTRAINT IF EXISTS {NAME}")
        op.create_foreign_key(NAME, "sweeps", "jobs", ["refit_job_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(NAME, "sweeps", type_="foreignkey")
