"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from service.auth.models import ApiKey
from service.blobs import Blob, BlobChunk
from service.datasets.models import Dataset
from service.db import Base
from service.jobs.models import IdempotencyKey, Job, JobAttempt, JobEpoch, JobEvent, JobMetric
from service.registry.models import ModelAlias, ModelAliasEvent, ModelVersion, RegisteredModel
from service.sweeps.models import Sweep

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "Blob",
    "BlobChunk",
    "Dataset",
    "IdempotencyKey",
    "Job",
    "JobAttempt",
    "JobEpoch",
    "JobEvent",
    "JobMetric",
    "ModelAlias",
    "ModelAliasEvent",
    "ModelVersion",
    "RegisteredModel",
    "Sweep",
    "metadata",
]
