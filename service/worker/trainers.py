"""Trainers a job can name internally; tests and benchmarks register their own (never HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa

from service.training.results import FoldResult, PathMetrics, TrialMetrics


class Reporter:
    """How a trainer tells its worker about progress; the child sends these over a pipe."""

    def epoch(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def progress(self, value: float) -> None:
        raise NotImplementedError


@dataclass
class TrainerOutput:
    result: dict[str, Any]
    artifact: bytes | None


Trainer = Callable[[dict[str, Any], pa.Table | None, Reporter], TrainerOutput]

TRAINERS: dict[str, Trainer] = {}


def register(name: str) -> Callable[[Trainer], Trainer]:
    def decorate(trainer: Trainer) -> Trainer:
        TRAINERS[name] = trainer
        return trainer

    return decorate


@register("default")
def train_job(payload: dict[str, Any], table: pa.Table | None, reporter: Reporter) -> TrainerOutput:
    """The real trainer: the training core on the dataset, with progress piped to the worker."""
    from service.training.spec import TrainingSpec
    from service.training.train import train

    assert table is not None
    spec = TrainingSpec.model_validate(payload["spec"])
    result = train(
        table,
        spec,
        max_classes=payload["max_classes"],
        on_epoch=reporter.epoch,
        on_progress=reporter.progress,
    )
    return TrainerOutput(
        result={
            "task": result.task,
            "task_reason": result.task_reason,
            "classes": result.classes,
            "native_params": result.native_params,
            "metrics": result.metrics,
            "versions": result.versions,
            "artifact_sha256": result.artifact_sha256,
            "artifact_kind": result.artifact_kind,
        },
        artifact=result.artifact,
    )


@register("import")
def import_dataset(
    payload: dict[str, Any], table: pa.Table | None, reporter: Reporter
) -> TrainerOutput:
    """A dataset import: stage the parts, ingest them, report what the dataset row records."""
    from service.datasets.imports import run_import

    return TrainerOutput(result=run_import(payload, reporter.progress), artifact=None)


def _sweep_splits(payload: dict[str, Any], table: pa.Table) -> tuple[Any, Any]:
    from service.training.folds import sweep_splits
    from service.training.spec import TrainingSpec

    spec = TrainingSpec.model_validate(payload["spec"])
    params = payload["params"]
    splits = sweep_splits(
        table,
        spec,
        folds=params.get("folds"),
        validation_fraction=params.get("validation_fraction"),
    )
    return spec, splits


@register("sweep-path")
def sweep_path(
    payload: dict[str, Any], table: pa.Table | None, reporter: Reporter
) -> TrainerOutput:
    """One warm-started regularization path on one fold: one trial result per strength."""
    from service.training.paths import fit_path

    assert table is not None
    spec, splits = _sweep_splits(payload, table)
    fold = int(payload["params"]["fold"])
    path = fit_path(
        table,
        spec,
        payload["params"]["strengths"],
        split=splits.splits[fold],
        on_progress=reporter.progress,
        n_jobs=int(payload["threads"]),
    )
    metrics = PathMetrics.model_validate({"fold": fold, "path": path})
    return TrainerOutput(result={"metrics": metrics.to_json()}, artifact=None)


def _fold_progress(reporter: Reporter, index: int, n: int, progress: float) -> None:
    reporter.progress((index + progress) / n)


@register("sweep-trial")
def sweep_trial(
    payload: dict[str, Any], table: pa.Table | None, reporter: Reporter
) -> TrainerOutput:
    """One configuration, its folds inside: metrics per fold, no artifact."""
    from service.training.train import train

    assert table is not None
    spec, splits = _sweep_splits(payload, table)
    n = len(splits.splits)
    folds = []
    for index, split in enumerate(splits.splits):
        report = train(
            table,
            spec,
            max_classes=payload["max_classes"],
            split=split,
            with_artifact=False,
            on_progress=partial(_fold_progress, reporter, index, n),
        ).report
        folds.append(
            FoldResult(
                fold=index, final=report.final, best_epoch=report.best_epoch, weights=report.weights
            )
        )
        reporter.progress((index + 1) / n)
    return TrainerOutput(result={"metrics": TrialMetrics(folds=folds).to_json()}, artifact=None)
