"""A toy third model kind, defined and registered by the test suite only: a constant predictor.

It predicts the training rows' class shares (classification) or mean (regression), whatever the
inputs. Everything it needs is here plus the ``register`` line at the bottom: importing this
module (in-process, or in every server process through RIDGELINE_PLUGINS) is all it takes for
specs with ``{"kind": "constant"}`` to validate, train, predict, report metrics and sweep.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from service.training.kinds import registry
from service.training.kinds.base import ArtifactFormat, FitData, FitHooks, Fitted, ModelKind
from service.training.spec import ModelSpecBase, Task, TrainingSpec

if TYPE_CHECKING:
    import onnx
    from sklearn.pipeline import Pipeline

    from service.training.artifact_io import LoadedModel


class ConstantModelSpec(ModelSpecBase):
    """A model that ignores its inputs: the training split's mean or class shares."""

    kind: Literal["constant"] = Field(description="Constant predictor (tests only).")


class ConstantPredictor:
    """The training mean or class shares, in scikit-learn's manner (fit returns self)."""

    classes_: np.ndarray | None
    value_: np.ndarray

    def __init__(self, task: Task = "classification") -> None:
        self.task = task

    def fit(self, X: np.ndarray, y: np.ndarray) -> ConstantPredictor:
        if self.task == "classification":
            self.classes_, counts = np.unique(y, return_counts=True)
            self.value_ = counts / counts.sum()
        else:
            self.classes_ = None
            self.value_ = np.array([float(np.mean(y))])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.tile(self.value_, (len(X), 1))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.value_[0])


class ConstantKind(ModelKind[ConstantModelSpec]):
    """The toy kind: no weights, no penalty to apply, no ONNX export."""

    name = "constant"
    title = "constant (tests only)"
    spec_class = ConstantModelSpec
    artifact = ArtifactFormat(
        name="constant-zip",
        marker="constant.json",
        extension="zip",
        media_type="application/zip",
        description="a JSON record of the constant and the skops preprocessing",
    )

    def native_params(self, spec: TrainingSpec, task: Task, n_train: int) -> dict[str, Any]:
        return {
            "family": "tests",
            "estimator": "ConstantPredictor",
            "n_train": int(n_train),
            "note": "a constant has no weights, so the penalty changes nothing",
            "params": {"task": task},
        }

    def estimator_from_native(self, native: Mapping[str, Any]) -> ConstantPredictor:
        return ConstantPredictor(**native["params"])

    def fit_estimator(
        self, estimator: Any, native: dict[str, Any], data: FitData, hooks: FitHooks
    ) -> Fitted:
        return Fitted(estimator.fit(data.X_train, data.y_train), native, weight_arrays=[])

    def dump(self, model: Any, preprocessor: Pipeline, metadata: Mapping[str, Any]) -> bytes:
        import skops.io as sio

        from service.training.artifact_io import zip_write

        record = {
            **metadata,
            "artifact_kind": self.artifact.name,
            "value": model.value_.tolist(),
            "seen": None if model.classes_ is None else model.classes_.tolist(),
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zip_write(zf, "constant.json", json.dumps(record, sort_keys=True).encode())
            zip_write(zf, "preprocessing.skops", sio.dumps(preprocessor))
        return buffer.getvalue()

    def load(self, data: bytes, archive: zipfile.ZipFile) -> LoadedModel:
        from service.training.artifact_io import LoadedModel, skops_load

        record = json.loads(archive.read("constant.json"))
        model = ConstantPredictor(record["task"])
        model.value_ = np.asarray(record["value"], dtype=np.float64)
        model.classes_ = None if record["seen"] is None else np.asarray(record["seen"])
        preprocessor = skops_load(archive.read("preprocessing.skops"))
        return LoadedModel(self.artifact.name, record, preprocessor, model)

    def onnx_graph(self, model: LoadedModel) -> onnx.ModelProto:
        from service.training.onnx_parts import OnnxExportError

        raise OnnxExportError("the constant kind has no ONNX export")


KIND = registry.register(ConstantKind())
