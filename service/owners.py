"""Which row owns a blob, so a migrated blob lands at the key other programs expect."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.blobs import Blob, artifact_key, dataset_key
from service.datasets.models import Dataset
from service.jobs.models import Job


def object_key_of(session: Session, blob: Blob) -> str:
    """<tenant>/datasets/<id>/part-00000.parquet, <tenant>/jobs/<id>/artifact.<kind>, or else
    <tenant>/blobs/<blob id>."""
    dataset_id = session.scalar(select(Dataset.id).where(Dataset.blob_id == blob.id))
    if dataset_id is not None:
        return dataset_key(blob.tenant_id, dataset_id)
    job = session.execute(
        select(Job.id, Job.artifact_kind).where(Job.artifact_blob_id == blob.id)
    ).first()
    if job is not None:
        return artifact_key(blob.tenant_id, job[0], job[1])
    return f"{blob.tenant_id}/blobs/{blob.id}"
