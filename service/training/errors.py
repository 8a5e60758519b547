"""Errors of the training core: each carries problems a client can act on, nothing HTTP-specific."""

from __future__ import annotations

from typing import Any

Problem = dict[str, Any]


class TrainingError(Exception):
    """Base of every error the training core raises on purpose, so callers can catch one type."""


class _ProblemsError(TrainingError):
    """An error made of field-level problems, each `{"field": ..., "message": ...}`."""

    def __init__(self, problems: list[Problem], summary: str) -> None:
        self.problems: list[Problem] = list(problems)
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in self.problems[:5])
        more = len(self.problems) - 5
        if more > 0:
            detail += f"; and {more} more"
        super().__init__(f"{summary}: {detail}" if detail else summary)


class SpecError(_ProblemsError):
    """The spec does not fit the dataset or itself; `.problems` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems, "invalid training spec")


class PredictionInputError(_ProblemsError):
    """Prediction rows do not match the model's feature schema; `.problems` says where."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems, "invalid prediction input")


class ArtifactError(TrainingError):
    """An artifact cannot be loaded."""


class ArtifactIntegrityError(ArtifactError):
    """The artifact bytes do not match the recorded sha256 (or an internal checksum)."""


class UntrustedArtifactError(ArtifactError):
    """The artifact would instantiate types outside our allowlist, so it is refused unread."""

    def __init__(self, untrusted: list[str]) -> None:
        self.untrusted = list(untrusted)
        super().__init__(
            "artifact refused: it contains types outside the trusted allowlist: "
            + ", ".join(self.untrusted)
        )


class TrainingCancelled(TrainingError):
    """should_stop() asked the training to stop; nothing was produced."""
