"""Pure ML training core: a pyarrow Table and a spec in, metrics and an artifact out.

Names are imported lazily, so validating a spec (service.training.spec) costs only pydantic,
and torch loads only when a kind that needs it trains or loads a model. Model kinds (their
spec classes too) live in service.training.kinds, one module each, found through its registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Registers the built-in model kinds, so a spec validates whichever module was imported first
# (only pydantic is loaded: each kind imports its libraries when it fits or loads a model).
from service.training.kinds import registry as _registry  # noqa: F401

if TYPE_CHECKING:
    from service.training.artifacts import (
        LoadedModel,
        Model,
        PredictionResult,
        load_artifact,
        load_model,
        sha256_hex,
        versions,
    )
    from service.training.diagnosis import diagnose
    from service.training.errors import (
        ArtifactError,
        ArtifactIntegrityError,
        PredictionInputError,
        SpecError,
        TrainingCancelled,
        TrainingError,
        UntrustedArtifactError,
    )
    from service.training.folds import SweepSplits, sweep_splits
    from service.training.paths import fit_path
    from service.training.preprocessing import summarize_table
    from service.training.resolve import resolve_spec, split_sizes
    from service.training.results import JobMetrics
    from service.training.spec import (
        ColumnSummary,
        EarlyStopping,
        LearningCurveSpec,
        ModelSpec,
        Penalty,
        PreprocessingSpec,
        RegularizationSpec,
        ResolvedSpec,
        TrainingSpec,
        ValidationSpec,
    )
    from service.training.train import TrainingResult, train

_EXPORTS: dict[str, str] = {
    # spec (pydantic only)
    "ColumnSummary": "spec",
    "EarlyStopping": "spec",
    "LearningCurveSpec": "spec",
    "ModelSpec": "spec",
    "Penalty": "spec",
    "PreprocessingSpec": "spec",
    "RegularizationSpec": "spec",
    "ResolvedSpec": "spec",
    "TrainingSpec": "spec",
    "ValidationSpec": "spec",
    "resolve_spec": "resolve",
    "split_sizes": "resolve",
    "JobMetrics": "results",
    # errors (no dependencies)
    "ArtifactError": "errors",
    "ArtifactIntegrityError": "errors",
    "PredictionInputError": "errors",
    "SpecError": "errors",
    "TrainingCancelled": "errors",
    "TrainingError": "errors",
    "UntrustedArtifactError": "errors",
    # numpy / pandas / pyarrow / scikit-learn
    "summarize_table": "preprocessing",
    "LoadedModel": "artifacts",
    "Model": "artifacts",
    "PredictionResult": "artifacts",
    "load_artifact": "artifacts",
    "load_model": "artifacts",
    "sha256_hex": "artifacts",
    "versions": "artifacts",
    "TrainingResult": "train",
    "train": "train",
    "SweepSplits": "folds",
    "sweep_splits": "folds",
    "fit_path": "paths",
    "diagnose": "diagnosis",
}

__all__ = [
    "ArtifactError",
    "ArtifactIntegrityError",
    "ColumnSummary",
    "EarlyStopping",
    "JobMetrics",
    "LearningCurveSpec",
    "LoadedModel",
    "Model",
    "ModelSpec",
    "Penalty",
    "PredictionInputError",
    "PredictionResult",
    "PreprocessingSpec",
    "RegularizationSpec",
    "ResolvedSpec",
    "SpecError",
    "SweepSplits",
    "TrainingCancelled",
    "TrainingError",
    "TrainingResult",
    "TrainingSpec",
    "UntrustedArtifactError",
    "ValidationSpec",
    "diagnose",
    "fit_path",
    "load_artifact",
    "load_model",
    "resolve_spec",
    "sha256_hex",
    "split_sizes",
    "summarize_table",
    "sweep_splits",
    "train",
    "versions",
]


def __getattr__(name: str) -> Any:
    """Import the defining module on first use of a name (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
