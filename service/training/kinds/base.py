"""What a model kind provides, so the rest of the service asks a kind instead of naming one.

A kind is one object (a subclass of ``ModelKind``, registered in registry.py) that owns its spec
class, the mapping of the regularization convention onto its native parameters, the estimator
built *from* those parameters (so what the job echoes is what was fitted), its fit and report,
its artifact format, ONNX export, diagnosis hints and the forkserver's warm-up specs.

This module and the kinds' modules import only pydantic at module level: validating a spec
must not load scikit-learn, pandas or torch. Heavy imports go inside the methods that need them.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from service.training.errors import Problem
from service.training.results import ModelReport, Suggestion
from service.training.spec import ModelSpecBase, Task, TrainingSpec

if TYPE_CHECKING:
    import zipfile

    import numpy as np
    import onnx
    from sklearn.pipeline import Pipeline

    from service.training.artifact_io import LoadedModel

__all__ = ["ArtifactFormat", "FitData", "FitHooks", "Fitted", "ModelKind"]

SpecT = TypeVar("SpecT", bound=ModelSpecBase)


@dataclass(frozen=True)
class ArtifactFormat:
    """How a kind's model is stored: the job's ``artifact_kind`` and how to recognise and send it.

    Every artifact is a zip archive; ``marker`` is the member whose presence identifies this
    format, so stored artifacts load by their content whatever kind wrote them.
    """

    name: str
    marker: str
    extension: str
    media_type: str
    description: str


@dataclass
class FitData:
    """One training split, preprocessed, and what the fit needs to know about the target."""

    task: Task
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    #: Original labels by class index (classification), None for regression.
    classes: list[Any] | None
    #: Names of the preprocessed inputs, e.g. 'age', 'color=red'.
    names: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 0


@dataclass
class FitHooks:
    """How a fit reports epochs, learns that it should stop, and where it may compute."""

    on_epoch: Callable[[dict[str, Any]], None] | None = None
    should_stop: Callable[[], bool] | None = None
    device: str | None = None


@dataclass
class Fitted:
    """A fitted model, the native parameters it was built from, and what the kind reports."""

    model: Any
    native: dict[str, Any]
    #: The penalised weights (for sparsity and norms), biases and intercepts excluded.
    weight_arrays: list[np.ndarray]
    report: ModelReport = field(default_factory=ModelReport)
    seconds: float = 0.0


class ModelKind(ABC, Generic[SpecT]):
    """One model kind. Subclasses set the class attributes and implement the abstract methods."""

    #: The value of ``model.kind`` in a spec.
    name: ClassVar[str]
    #: What people call it (the dashboard's model menu); the name when not set.
    title: ClassVar[str] = ""
    #: The pydantic class of the ``model`` block; its ``kind`` is ``Literal[name]``.
    spec_class: ClassVar[type[ModelSpecBase]]
    #: How its models are stored and recognised.
    artifact: ClassVar[ArtifactFormat]
    #: Regularization options it honours besides penalty, strength and l1_ratio (dropout, ...).
    options: ClassVar[frozenset[str]] = frozenset()
    #: Why an option it does not honour makes no sense for it, shown in the 422 (option -> why).
    option_notes: ClassVar[Mapping[str, str]] = {}
    #: Whether a sweep may fit this kind's strengths as one warm-started path (paths.fit_path).
    supports_path: ClassVar[bool] = False
    #: Whether its fits report a per-epoch history (loss curves, live epochs).
    has_history: ClassVar[bool] = False
    #: Where its jobs can train: "local" (the training child) and, with a Spark fit
    #: (service/training/engines/), "spark".
    engines: ClassVar[frozenset[str]] = frozenset({"local"})
    #: Spec overrides the forkserver trains once on a tiny table (targets 'label' and 'amount').
    warm_up_specs: ClassVar[tuple[dict[str, Any], ...]] = ()
    #: Whether its first fit costs seconds beyond the imports (torch's autograd, optimizers and
    #: dynamo): a worker's quick forkserver leaves its warm-up out, so other jobs need not wait.
    late_warm_up: ClassVar[bool] = False

    def model_of(self, spec: TrainingSpec | ModelSpecBase) -> SpecT:
        """The spec's model block as this kind's own class."""
        model = spec.model if isinstance(spec, TrainingSpec) else spec
        if not isinstance(model, self.spec_class):
            raise TypeError(f"model.kind {model.kind!r} is not {self.name!r}")
        return model  # type: ignore[return-value]

    # -- validation and display ----------------------------------------------------------------

    def check(self, spec: TrainingSpec) -> list[Problem]:
        """Problems of the spec that only this kind knows of (none by default)."""
        return []

    def epochs(self, model: ModelSpecBase) -> int | None:
        """Passes over the data a fit makes at most, for kinds that train by epochs."""
        return None

    def parameter_count(self, model: ModelSpecBase, n_inputs: int, n_outputs: int) -> int | None:
        """Parameters the model would have; None for kinds whose size needs no limit."""
        return None

    def size_problem(
        self, model: ModelSpecBase, n_inputs: int, n_parameters: int, limit: int
    ) -> Problem:
        """The 422 for a model over RIDGELINE_MAX_MLP_PARAMETERS parameters."""
        return {
            "field": "model",
            "message": f"this model would have {n_parameters:,} parameters ({n_inputs:,} inputs "
            f"after preprocessing), more than the limit of {limit:,}; use fewer features or a "
            "lower polynomial_degree",
        }

    def describe(self, model: ModelSpecBase) -> str:
        """A short label for people, e.g. 'MLP 64x32'."""
        return self.name

    def details(self, model: ModelSpecBase) -> str | None:
        """Options worth showing beside the label (epochs, batch size, ...), if any."""
        return None

    # -- fitting -------------------------------------------------------------------------------

    @abstractmethod
    def native_params(self, spec: TrainingSpec, task: Task, n_train: int) -> dict[str, Any]:
        """The kind's own parameters that implement the spec's penalty (JSON-safe, no inf).

        ``native["params"]`` are the estimator's constructor arguments.
        """

    @abstractmethod
    def estimator_from_native(self, native: Mapping[str, Any]) -> Any:
        """The unfitted estimator that the native parameters describe."""

    def runtime_params(self, hooks: FitHooks) -> dict[str, Any]:
        """Estimator arguments the run decides, not the spec (the device); none by default."""
        return {}

    def fit(self, spec: TrainingSpec, data: FitData, hooks: FitHooks) -> Fitted:
        """Build the estimator from the native parameters and fit it on the training split."""
        started = time.perf_counter()
        native = self.native_params_for(spec, data)
        native["params"] = {**native["params"], **self.runtime_params(hooks)}
        fitted = self.fit_estimator(self.estimator_from_native(native), native, data, hooks)
        fitted.seconds = time.perf_counter() - started
        return fitted

    def native_params_for(self, spec: TrainingSpec, data: FitData) -> dict[str, Any]:
        """The native parameters of a fit on this split (a kind whose engine depends on it, too)."""
        return self.native_params(spec, data.task, len(data.y_train))

    @abstractmethod
    def fit_estimator(
        self, estimator: Any, native: dict[str, Any], data: FitData, hooks: FitHooks
    ) -> Fitted:
        """Fit the estimator built from ``native``; record anything the fit settled in it."""

    # -- artifacts and export ------------------------------------------------------------------

    @abstractmethod
    def dump(self, model: Any, preprocessor: Pipeline, metadata: Mapping[str, Any]) -> bytes:
        """The artifact: the fitted model, its preprocessing and the metadata, without pickle."""

    @abstractmethod
    def load(self, data: bytes, archive: zipfile.ZipFile) -> LoadedModel:
        """A stored artifact of this kind's format, every member checked before use."""

    @abstractmethod
    def onnx_graph(self, model: LoadedModel) -> onnx.ModelProto:
        """The model, preprocessing included, with the inputs and outputs onnx_parts states."""

    # -- diagnosis -----------------------------------------------------------------------------

    def overfitting_hints(
        self, spec: TrainingSpec, turned_up_epoch: int | None
    ) -> list[Suggestion]:
        """Kind-specific ways to regularize more (beside strength and polynomial degree)."""
        return []

    def underfitting_hints(self, spec: TrainingSpec) -> list[Suggestion]:
        """Kind-specific ways to regularize less or add capacity."""
        return []
