"""registered models, versions, aliases and their history; tags on jobs and sweeps; job_metrics

job_metrics holds each succeeded job's final figures (split, metric, value) so jobs can be
ordered by one; it is filled here from the jobs that succeeded before it existed.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-02 10:00:00
"""

import math
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.db

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = sa.Uuid()
WHEN = service.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))

    op.create_table(
        "job_metrics",
        sa.Column("job_id", UUID, nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_metrics_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "split", "name", name="pk_job_metrics"),
    )
    op.create_index(
        "ix_job_metrics_order", "job_metrics", ["tenant_id", "split", "name", "value", "job_id"]
    )
    _backfill_job_metrics()

    op.create_table(
        "registered_models",
        sa.Column("id", UUID, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("last_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registered_models"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_registered_models_tenant_name"),
    )
    op.create_index(
        "ix_registered_models_tenant_created",
        "registered_models",
        ["tenant_id", "created_at", "id"],
    )

    op.create_table(
        "model_versions",
        sa.Column("id", UUID, nullable=False),
        sa.Column("model_id", UUID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("job_id", UUID, nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=False),
        sa.Column("artifact_kind", sa.String(length=16), nullable=False),
        sa.Column("dataset", sa.JSON(), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("task", sa.String(length=16), nullable=False),
        sa.Column("native_params", sa.JSON(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("library_versions", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name="fk_model_versions_model_id_registered_models",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_model_versions_job_id_jobs", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
    )
    op.create_index("ix_model_versions_job_id", "model_versions", ["job_id"])
    op.create_index(
        "ix_model_versions_model_created", "model_versions", ["model_id", "created_at", "id"]
    )

    op.create_table(
        "model_aliases",
        sa.Column("model_id", UUID, nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name="fk_model_aliases_model_id_registered_models",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id", "version"],
            ["model_versions.model_id", "model_versions.version"],
            name="fk_model_aliases_version_model_versions",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_model_aliases"),
    )

    op.create_table(
        "model_alias_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("model_id", UUID, nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("key_name", sa.String(length=255), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name="fk_model_alias_events_model_id_registered_models",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_alias_events"),
    )
    op.create_index("ix_model_alias_events_model_seq", "model_alias_events", ["model_id", "id"])


def _backfill_job_metrics() -> None:
    """The final figures of jobs that succeeded before this revision, as finishing now writes."""
    jobs = sa.table(
        "jobs",
        sa.column("id", UUID),
        sa.column("tenant_id", sa.String),
        sa.column("status", sa.String),
        sa.column("metrics", sa.JSON),
    )
    metrics_table = sa.table(
        "job_metrics",
        sa.column("job_id", UUID),
        sa.column("tenant_id", sa.String),
        sa.column("split", sa.String),
        sa.column("name", sa.String),
        sa.column("value", sa.Float),
    )
    bind = op.get_bind()
    query = sa.select(jobs.c.id, jobs.c.tenant_id, jobs.c.metrics).where(
        jobs.c.status == "succeeded"
    )
    for job_id, tenant_id, metrics in bind.execute(query).all():
        final = (metrics or {}).get("final") or {}
        rows = [
            {"job_id": job_id, "tenant_id": tenant_id, "split": s, "name": n, "value": float(v)}
            for s, figures in final.items()
            if isinstance(figures, dict)
            for n, v in figures.items()
            if n != "n" and type(v) in (int, float) and math.isfinite(v)
        ]
        if rows:
            bind.execute(sa.insert(metrics_table), rows)


def downgrade() -> None:
    op.drop_index("ix_model_alias_events_model_seq", table_name="model_alias_events")
    op.drop_table("model_alias_events")
    op.drop_table("model_aliases")
    op.drop_index("ix_model_versions_model_created", table_name="model_versions")
    op.drop_index("ix_model_versions_job_id", table_name="model_versions")
    op.drop_table("model_versions")
    op.drop_index("ix_registered_models_tenant_created", table_name="registered_models")
    op.drop_table("registered_models")
    op.drop_index("ix_job_metrics_order", table_name="job_metrics")
    op.drop_table("job_metrics")
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_column("tags")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("tags")
