"""Trainers a job can name internally; tests and benchmarks register their own (never HTTP)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa


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


def load_plugins(modules: list[str]) -> None:
    """Import modules that register extra trainers (RIDGELINE_WORKER_PLUGINS)."""
    for module in modules:
        importlib.import_module(module)


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
