"""Model artifacts without pickle, loaded by their content: the kind whose format they have.

Each model kind writes and reads its own format (ModelKind.artifact, dump and load in
service.training.kinds, with the shared pieces of artifact_io). Loading verifies the sha256
first, finds the kind whose format the archive has, and lets it read the members, refusing any
skops content whose types are outside an explicit allowlist, so a stored artifact can never run
code of its own choosing.
"""

from __future__ import annotations

import io
import zipfile

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
    "PredictionInputError",
    "PredictionResult",
    "UntrustedArtifactError",
    "load_model",
    "sha256_hex",
    "versions",
]


def _known_formats() -> str:
    return ", ".join(f"{k.artifact.name} ({k.artifact.description})" for k in registry.kinds())


def load_model(data: bytes, *, sha256: str | None = None) -> LoadedModel:
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
