"""What every model kind's artifact format shares: the loaded model, integrity and safe reading.

No pickle anywhere: skops for scikit-learn objects, whose content is refused unread when it holds
a type outside an explicit allowlist, and plain JSON or safetensors beside it. Each kind writes
and reads its own format with these (ModelKind.dump and load); artifacts.load_artifact finds the
kind whose format stored bytes have.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import platform
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import skops.io as sio
from sklearn.pipeline import Pipeline

from service.training.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    PredictionInputError,
    UntrustedArtifactError,
)
from service.training.preprocessing import frame_from_rows
from service.training.spec import ColumnDtype

__all__ = [
    "ARTIFACT_FORMAT",
    "MAX_UNPACKED_BYTES",
    "TRUSTED_SKOPS_TYPES",
    "ArtifactError",
    "ArtifactIntegrityError",
    "LoadedModel",
    "PredictionInputError",
    "PredictionResult",
    "UntrustedArtifactError",
    "sha256_hex",
    "skops_load",
    "verify_sha256",
    "versions",
    "zip_write",
]

ARTIFACT_FORMAT = "ridgeline/1"

#: Types skops does not trust by default that our own pipelines legitimately contain. Anything
#: else skops reports as untrusted makes loading refuse the artifact.
TRUSTED_SKOPS_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
    }
)

#: Refuse archives that would unpack to more than this (a zip bomb guard).
MAX_UNPACKED_BYTES = 8 * 1024**3
# A fixed timestamp keeps identical models byte-identical.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of the artifact bytes, as stored beside the artifact."""
    return hashlib.sha256(data).hexdigest()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Library versions that matter to reload a model (read without importing torch)."""
    return {
        "python": platform.python_version(),
        "sklearn": _version("scikit-learn"),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "pandas": _version("pandas"),
        "pyarrow": _version("pyarrow"),
        "skops": _version("skops"),
        "safetensors": _version("safetensors"),
    }


def skops_load(data: bytes) -> Any:
    """skops.io.loads, after checking every untrusted type against our allowlist."""
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise ArtifactError(f"artifact is not a readable skops file: {exc}") from exc
    refused = sorted(set(untrusted) - TRUSTED_SKOPS_TYPES)
    if refused:
        raise UntrustedArtifactError(refused)
    return sio.loads(data, trusted=list(untrusted))


def zip_write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    """One member with a fixed timestamp, deflated."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


@dataclass
class PredictionResult:
    """Predictions as original target values; probabilities keyed by str(label)."""

    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = None
    classes: list[Any] | None = None


@dataclass
class LoadedModel:
    """A model ready to predict, with what it was trained on."""

    #: The artifact's format: the job's artifact_kind (ArtifactFormat.name).
    kind: str
    metadata: dict[str, Any]
    preprocessor: Pipeline
    estimator: Any
    feature_schema: dict[str, ColumnDtype] = field(init=False)

    def __post_init__(self) -> None:
        self.feature_schema = dict(self.metadata["feature_schema"])

    @property
    def model_kind(self) -> str:
        """The model kind that trained it, from the spec saved with it."""
        spec = self.metadata.get("spec") or {}
        return str((spec.get("model") or {}).get("kind") or "")

    @property
    def task(self) -> str:
        return str(self.metadata["task"])

    @property
    def classes(self) -> list[Any] | None:
        classes = self.metadata.get("classes")
        return list(classes) if classes is not None else None

    @property
    def target(self) -> str:
        return str(self.metadata["target"])

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (n, n_classes) or regression values (n,)."""
        if self.task != "classification":
            return np.asarray(self.estimator.predict(X), dtype=np.float64)
        proba = np.asarray(self.estimator.predict_proba(X), dtype=np.float64)
        seen = np.asarray(getattr(self.estimator, "classes_", np.arange(proba.shape[1])))
        classes = self.classes or []
        if proba.shape[1] == len(classes):
            return proba
        # A class absent from the training split has probability 0.
        full = np.zeros((proba.shape[0], len(classes)))
        full[:, seen.astype(int)] = proba
        return full

    def scores(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Class probabilities (n, n_classes) or values (n,) for raw feature rows."""
        frame = frame_from_rows(rows, self.feature_schema, ignore=[self.target])
        if len(frame) == 0:
            width = len(self.classes or [])
            return np.zeros((0, width) if self.classes is not None else (0,))
        return self._scores(self.preprocessor.transform(frame))

    def predict(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> PredictionResult:
        """Predict for rows shaped like the training features; raises PredictionInputError."""
        classes = self.classes
        scores = self.scores(rows)
        if len(scores) == 0:
            return PredictionResult([], [] if classes is not None else None, classes)
        if classes is None:
            return PredictionResult([float(v) for v in scores])
        keys = [str(c) for c in classes]
        idx = scores.argmax(axis=1)
        return PredictionResult(
            predictions=[classes[i] for i in idx],
            probabilities=[dict(zip(keys, map(float, row), strict=True)) for row in scores],
            classes=classes,
        )


def verify_sha256(data: bytes, sha256: str | None) -> None:
    """Raise ArtifactIntegrityError unless the bytes have the recorded sha256 (when given)."""
    if sha256 is None:
        return
    actual = sha256_hex(data)
    if not hmac.compare_digest(actual, sha256.strip().lower()):
        raise ArtifactIntegrityError(
            f"artifact sha256 is {actual} but {sha256} was recorded; the stored bytes are "
            "corrupt or were replaced, so the model was not loaded"
        )
