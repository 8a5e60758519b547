"""Model artifacts without pickle: skops for scikit-learn, safetensors plus JSON for the MLP.

Loading verifies the sha256 first, then refuses any skops content whose types are outside an
explicit allowlist, so a stored artifact can never run code of its own choosing.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import io
import json
import platform
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

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

if TYPE_CHECKING:
    from service.training.mlp import MLPEstimator

__all__ = [
    "ARTIFACT_FORMAT",
    "TRUSTED_SKOPS_TYPES",
    "ArtifactError",
    "ArtifactIntegrityError",
    "LoadedModel",
    "PredictionInputError",
    "PredictionResult",
    "UntrustedArtifactError",
    "dump_mlp",
    "dump_sklearn",
    "load_model",
    "sha256_hex",
    "versions",
]

ARTIFACT_FORMAT = "ridgeline/1"
ArtifactKind = Literal["skops", "mlp-zip"]

#: Types skops does not trust by default that our own pipelines legitimately contain. Anything
#: else skops reports as untrusted makes load_model refuse the artifact.
TRUSTED_SKOPS_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
    }
)

_MLP_MEMBERS = ("architecture.json", "weights.safetensors", "preprocessing.skops")
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


def _skops_load(data: bytes) -> Any:
    """skops.io.loads, after checking every untrusted type against our allowlist."""
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise ArtifactError(f"artifact is not a readable skops file: {exc}") from exc
    refused = sorted(set(untrusted) - TRUSTED_SKOPS_TYPES)
    if refused:
        raise UntrustedArtifactError(refused)
    return sio.loads(data, trusted=list(untrusted))


def dump_sklearn(pipeline: Pipeline, metadata: Mapping[str, Any]) -> bytes:
    """A skops file holding the fitted pipeline and its metadata as a JSON string."""
    meta = {**metadata, "format": ARTIFACT_FORMAT, "artifact_kind": "skops"}
    payload = {"metadata_json": json.dumps(meta, sort_keys=True), "pipeline": pipeline}
    return sio.dumps(payload, compression=zipfile.ZIP_DEFLATED)


def _zip_write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def dump_mlp(estimator: MLPEstimator, preprocessor: Pipeline, metadata: Mapping[str, Any]) -> bytes:
    """A zip of weights.safetensors, architecture.json (with metadata) and preprocessing.skops."""
    from safetensors.torch import save as save_tensors

    weights = save_tensors(estimator.state_tensors(), metadata={"format": "pt"})
    preprocessing = sio.dumps(preprocessor, compression=zipfile.ZIP_DEFLATED)
    record = {
        **metadata,
        "format": ARTIFACT_FORMAT,
        "artifact_kind": "mlp-zip",
        "architecture": estimator.architecture(),
        "members": {
            "weights.safetensors": sha256_hex(weights),
            "preprocessing.skops": sha256_hex(preprocessing),
        },
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        _zip_write(zf, "architecture.json", json.dumps(record, indent=2, sort_keys=True).encode())
        _zip_write(zf, "weights.safetensors", weights)
        _zip_write(zf, "preprocessing.skops", preprocessing)
    return buffer.getvalue()


@dataclass
class PredictionResult:
    """Predictions as original target values; probabilities keyed by str(label)."""

    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = None
    classes: list[Any] | None = None


@dataclass
class LoadedModel:
    """A model ready to predict, with what it was trained on."""

    kind: ArtifactKind
    metadata: dict[str, Any]
    preprocessor: Pipeline
    estimator: Any
    feature_schema: dict[str, ColumnDtype] = field(init=False)

    def __post_init__(self) -> None:
        self.feature_schema = dict(self.metadata["feature_schema"])

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

    def predict(self, rows: pa.Table | Sequence[Mapping[str, Any]]) -> PredictionResult:
        """Predict for rows shaped like the training features; raises PredictionInputError."""
        frame = frame_from_rows(rows, self.feature_schema, ignore=[self.target])
        classes = self.classes
        if len(frame) == 0:
            return PredictionResult([], [] if classes is not None else None, classes)
        X = self.preprocessor.transform(frame)
        scores = self._scores(X)
        if classes is None:
            return PredictionResult([float(v) for v in scores])
        keys = [str(c) for c in classes]
        idx = scores.argmax(axis=1)
        return PredictionResult(
            predictions=[classes[i] for i in idx],
            probabilities=[dict(zip(keys, map(float, row), strict=True)) for row in scores],
            classes=classes,
        )


def _verify_sha(data: bytes, sha256: str | None) -> None:
    if sha256 is None:
        return
    actual = sha256_hex(data)
    if not hmac.compare_digest(actual, sha256.strip().lower()):
        raise ArtifactIntegrityError(
            f"artifact sha256 is {actual} but {sha256} was recorded; the stored bytes are "
            "corrupt or were replaced, so the model was not loaded"
        )


def _load_skops_model(data: bytes) -> LoadedModel:
    obj = _skops_load(data)
    if not isinstance(obj, dict) or "metadata_json" not in obj or "pipeline" not in obj:
        raise ArtifactError("skops artifact does not hold a Ridgeline model")
    metadata = json.loads(obj["metadata_json"])
    pipeline = obj["pipeline"]
    if not isinstance(pipeline, Pipeline) or "preprocess" not in pipeline.named_steps:
        raise ArtifactError("skops artifact does not hold a Ridgeline pipeline")
    return LoadedModel("skops", metadata, pipeline.named_steps["preprocess"], pipeline[-1])


def _load_mlp_model(zf: zipfile.ZipFile) -> LoadedModel:
    from safetensors.torch import load as load_tensors

    from service.training.mlp import MLPEstimator

    if sum(info.file_size for info in zf.infolist()) > MAX_UNPACKED_BYTES:
        raise ArtifactError("MLP artifact unpacks to more than the allowed size")
    missing = [m for m in _MLP_MEMBERS if m not in zf.namelist()]
    if missing:
        raise ArtifactError(f"MLP artifact lacks {', '.join(missing)}")
    record = json.loads(zf.read("architecture.json"))
    members = {name: zf.read(name) for name in _MLP_MEMBERS[1:]}
    for name, blob in members.items():
        expected = record.get("members", {}).get(name)
        if expected is None or not hmac.compare_digest(sha256_hex(blob), expected):
            raise ArtifactIntegrityError(f"MLP artifact member {name} fails its sha256 check")
    preprocessor = _skops_load(members["preprocessing.skops"])
    if not isinstance(preprocessor, Pipeline):
        raise ArtifactError("MLP artifact's preprocessing is not a scikit-learn Pipeline")
    tensors = load_tensors(members["weights.safetensors"])
    estimator = MLPEstimator.from_saved(record["architecture"], tensors, record.get("classes"))
    return LoadedModel("mlp-zip", record, preprocessor, estimator)


def load_model(data: bytes, *, sha256: str | None = None) -> LoadedModel:
    """Load artifact bytes after checking their sha256 (when given) and every type they hold."""
    _verify_sha(data, sha256)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ArtifactError("artifact is neither a skops file nor an MLP zip") from exc
    with zf:
        names = set(zf.namelist())
        if "architecture.json" in names:
            return _load_mlp_model(zf)
        if "schema.json" not in names:
            raise ArtifactError("artifact is neither a skops file nor an MLP zip")
    return _load_skops_model(data)
