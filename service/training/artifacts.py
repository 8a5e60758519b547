"""Model artifacts without pickle, loaded by their content: the kind whose format they have.

Each model kind writes and reads its own format (ModelKind.artifact, dump and load in
service.training.kinds, with the shared pieces of artifact_io). Loading verifies the sha256
first, finds the kind whose format the archive has, and lets it read the members, refusing any
skops content whose types are outside an explicit allowlist, so a stored artifact can never run
code of its own choosing.

`load_model(path)` is what a person calls on a downloaded artifact: it returns a `Model` with
scikit-learn's `predict` and `predict_proba` on the raw columns. The service itself reads stored
bytes with `load_artifact`.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from service.training.artifact_io import (
    ARTIFACT_FORMAT,
    TRUSTED_SKOPS_TYPES,
    ArtifactError,
    ArtifactIntegrityError,
    LoadedModel,
    PredictionInputError,
    PredictionResult,
    UntrustedArtifactError,
    sha256_hex,
    verify_sha256,
    versions,
)
from service.training.kinds import registry

__all__ = [
    "ARTIFACT_FORMAT",
    "TRUSTED_SKOPS_TYPES",
    "ArtifactError",
    "ArtifactIntegrityError",
    "LoadedModel",
    "Model",
    "PredictionInputError",
    "PredictionResult",
    "UntrustedArtifactError",
    "load_artifact",
    "load_model",
    "sha256_hex",
    "versions",
]


def _known_formats() -> str:
    return ", ".join(f"{k.artifact.name} ({k.artifact.description})" for k in registry.kinds())


def load_artifact(data: bytes, *, sha256: str | None = None) -> LoadedModel:
    """Load artifact bytes after checking their sha256 (when given) and every type they hold."""
    verify_sha256(data, sha256)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ArtifactError(f"artifact is not in a known format: {_known_formats()}") from exc
    with archive:
        kind = registry.kind_for_artifact(set(archive.namelist()))
        if kind is None:
            raise ArtifactError(f"artifact is not in a known format: {_known_formats()}")
        return kind.load(data, archive)


Rows = Any  # a pandas DataFrame, a pyarrow Table, or a sequence of {column: value} dicts


class Model:
    """A trained Ridgeline model: scikit-learn's `predict` and `predict_proba` on raw columns.

    `X` holds the columns the model was trained on, as the dataset did (a pandas DataFrame, a
    pyarrow Table or a list of row dicts); other columns are ignored, missing values are imputed
    as in training, and the same preprocessing runs first. A column it lacks, or a value of the
    wrong type, raises PredictionInputError naming it.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self._loaded = loaded
        self.task: str = loaded.task
        self.target: str = loaded.target
        self.metadata: dict[str, Any] = loaded.metadata
        self.feature_names_in_ = np.asarray(list(loaded.feature_schema), dtype=object)
        classes = loaded.classes
        self.classes_: np.ndarray | None = None if classes is None else np.asarray(classes)

    def __repr__(self) -> str:
        kind = self._loaded.model_kind or self._loaded.kind
        return f"<Ridgeline {kind} {self.task} model of {self.target!r}>"

    @staticmethod
    def _rows(X: Rows) -> pa.Table | Sequence[Mapping[str, Any]]:
        if isinstance(X, pa.Table):
            return X
        if hasattr(X, "to_dict") and hasattr(X, "columns"):  # a pandas DataFrame
            return pa.Table.from_pandas(X, preserve_index=False)
        if isinstance(X, Mapping):
            raise TypeError("X is one row: pass a list of rows, a DataFrame or a Table")
        return list(X)

    def predict(self, X: Rows) -> np.ndarray:
        """The predicted class of each row (classifiers) or its predicted value (regressors)."""
        scores = self._loaded.scores(self._rows(X))
        if self.classes_ is None:
            return scores
        if len(scores) == 0:
            return self.classes_[:0]
        return self.classes_[scores.argmax(axis=1)]

    def predict_proba(self, X: Rows) -> np.ndarray:
        """Each row's class probabilities, columns in the order of `classes_` (classifiers)."""
        if self.classes_ is None:
            raise AttributeError("a regression model has no predict_proba; use predict")
        return self._loaded.scores(self._rows(X))


def load_model(path: str | os.PathLike[str], *, sha256: str | None = None) -> Model:
    """Load a downloaded artifact file (whichever format its kind writes) as a `Model`.

    Pass the `X-Artifact-SHA256` the download came with as `sha256` to check the bytes first.
    Nothing in the file is unpickled: skops types outside TRUSTED_SKOPS_TYPES are refused.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    return Model(load_artifact(data, sha256=sha256))
