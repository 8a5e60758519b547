"""Which engine trains a job (local child or Spark), decided once at submission and recorded.

``auto`` runs on Spark only when a master is configured, the model kind has a Spark fit, the data
lies where Spark reads it (the ``file`` or ``s3`` store, or a reference), and the dataset's
estimated in-memory size exceeds RIDGELINE_SPARK_THRESHOLD_BYTES or the child memory limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.config import MiB, Settings
from service.datasets.models import Dataset
from service.errors import InvalidInput
from service.training.kinds import registry
from service.training.spec import TrainingSpec

Engine = Literal["local", "spark"]
EngineChoice = Literal["local", "spark", "auto"]
ENGINES: tuple[str, ...] = ("local", "spark", "auto")

#: Bytes per value of the float64 design matrix a local fit builds.
BYTES_PER_VALUE = 8


@dataclass(frozen=True)
class EngineDecision:
    engine: Engine
    reason: str


def estimated_bytes(dataset: Dataset, spec: TrainingSpec) -> int:
    """The float64 design matrix a local fit would hold: rows x (numeric + one-hot columns)."""
    features = set(
        spec.features or [c["name"] for c in dataset.columns if c["name"] != spec.target]
    )
    width = 0
    for column in dataset.columns:
        if column["name"] not in features:
            continue
        width += int(column.get("n_unique") or 1) if column["dtype"] == "categorical" else 1
    return int(dataset.n_rows) * max(width, 1) * BYTES_PER_VALUE


def spark_uri(dataset: Dataset) -> str | None:
    """Where Spark reads the dataset's Parquet (s3 via s3a); None if it lies in the database."""
    if dataset.blob is not None:
        store = dataset.blob.store
        if not store.startswith(("file://", "s3://")):
            return None
        uri = f"{store.rstrip('/')}/{dataset.blob.object_key}"
    elif dataset.source_uri:
        uri = dataset.source_uri
    else:
        return None
    return "s3a://" + uri.removeprefix("s3://") if uri.startswith("s3://") else uri


def _refuse(message: str) -> InvalidInput:
    return InvalidInput(message, errors=[{"field": "engine", "message": message}])


def _spark_problem(
    settings: Settings, spec: TrainingSpec, dataset: Dataset
) -> tuple[str, str] | None:
    """Why this job cannot run on Spark and what to change, or None."""
    if not settings.spark_master:
        return (
            "no Spark master is configured (RIDGELINE_SPARK_MASTER, e.g. local[4] or "
            "spark://host:7077)",
            "use engine 'local' or 'auto'",
        )
    if "spark" not in registry.kind_of(spec).engines:
        able = [kind.name for kind in registry.kinds() if "spark" in kind.engines]
        return (
            f"model kind {spec.model.kind!r} has no Spark engine yet (only {', '.join(able)})",
            "use engine 'local'",
        )
    if spec.preprocessing.polynomial_degree > 1:
        return "polynomial_degree > 1 is not supported on Spark", "use 1 or engine 'local'"
    if spec.learning_curve is not None:
        return "learning_curve is not supported on Spark", "remove it or use engine 'local'"
    if spark_uri(dataset) is None:
        return (
            "the dataset is stored in the database, which Spark cannot read",
            "store datasets on the file or s3 store (RIDGELINE_BLOB_STORE) or register them by "
            "reference",
        )
    return None


def choose_engine(
    settings: Settings, choice: EngineChoice, spec: TrainingSpec, dataset: Dataset
) -> EngineDecision:
    """The engine this job runs on and why; a 422 when 'spark' is asked for and cannot be."""
    problem = _spark_problem(settings, spec, dataset)
    if choice == "local":
        return EngineDecision("local", "requested: engine 'local'")
    if choice == "spark":
        if problem is not None:
            reason, remedy = problem
            raise _refuse(f"engine 'spark' cannot run this job: {reason}; {remedy}")
        return EngineDecision("spark", f"requested: engine 'spark' on {settings.spark_master}")
    size = estimated_bytes(dataset, spec)
    mib = f"{size / MiB:.0f} MiB"
    if problem is not None:
        return EngineDecision(
            "local", f"auto: estimated {mib} in memory; not Spark, as {problem[0]}"
        )
    limits = [("RIDGELINE_SPARK_THRESHOLD_BYTES", settings.spark_threshold_bytes)]
    if settings.child_memory_mb:
        limits.append(("RIDGELINE_CHILD_MEMORY_MB", settings.child_memory_mb * MiB))
    name, limit = min(limits, key=lambda item: item[1])
    if size > limit:
        return EngineDecision(
            "spark", f"auto: estimated {mib} in memory exceeds {name} ({limit / MiB:.0f} MiB)"
        )
    return EngineDecision(
        "local", f"auto: estimated {mib} in memory fits under {name} ({limit / MiB:.0f} MiB)"
    )
