"""The model kinds by name: every caller asks here instead of branching on ``model.kind``.

Adding a kind is one module (a ModelKind subclass, see base.py) and one ``register`` line. A kind
defined outside the service registers itself the same way from a module named in
RIDGELINE_PLUGINS, which every API process, worker and training child imports at start.
"""

from __future__ import annotations

import threading
from typing import Any

from service.training.kinds.base import ArtifactFormat, ModelKind
from service.training.kinds.linear import LinearKind
from service.training.kinds.mlp import MLPKind
from service.training.spec import (
    DEFAULT_MODEL_KIND,
    ModelSpecBase,
    TrainingSpec,
    add_model_class,
    remove_model_class,
)

__all__ = [
    "DEFAULT_KIND",
    "artifact_format",
    "default_model",
    "get",
    "honouring",
    "kind_for_artifact",
    "kind_of",
    "kinds",
    "names",
    "register",
    "unregister",
]

#: The kind of a spec that names none.
DEFAULT_KIND = DEFAULT_MODEL_KIND

_KINDS: dict[str, ModelKind[Any]] = {}
_lock = threading.Lock()


def register(kind: ModelKind[Any]) -> ModelKind[Any]:
    """Make the kind known by its name; registering the same class again replaces it."""
    spec_kind = kind.spec_class.model_fields["kind"].annotation
    if getattr(spec_kind, "__args__", None) != (kind.name,):
        raise ValueError(f"{kind.spec_class.__name__}.kind must be Literal[{kind.name!r}]")
    with _lock:
        existing = _KINDS.get(kind.name)
        if existing is not None and type(existing) is not type(kind):
            raise ValueError(f"a different model kind is already registered as {kind.name!r}")
        _KINDS[kind.name] = kind
        add_model_class(kind.spec_class)
    return kind


def unregister(name: str) -> None:
    """Forget a kind (tests that register one of their own clean up with this)."""
    with _lock:
        _KINDS.pop(name, None)
        remove_model_class(name)


def get(name: str) -> ModelKind[Any]:
    """The kind registered under ``name``; KeyError names the known ones."""
    try:
        return _KINDS[name]
    except KeyError:
        raise KeyError(f"no model kind {name!r}; known: {', '.join(_KINDS)}") from None


def kind_of(spec: TrainingSpec) -> ModelKind[Any]:
    """The kind of a validated spec."""
    return get(spec.model.kind)


def kinds() -> list[ModelKind[Any]]:
    """Every registered kind, in registration order."""
    return list(_KINDS.values())


def names() -> list[str]:
    """The registered kinds' names, in registration order."""
    return list(_KINDS)


def honouring(option: str) -> list[str]:
    """The kinds that honour a regularization option such as 'dropout'."""
    return [name for name, kind in _KINDS.items() if option in kind.options]


def default_model() -> ModelSpecBase:
    """The model block of a spec that gives none."""
    default: ModelSpecBase = TrainingSpec.model_fields["model"].get_default(
        call_default_factory=True
    )
    return default


def artifact_format(name: str) -> ArtifactFormat | None:
    """The format stored as a job's ``artifact_kind``, if a registered kind writes it."""
    return next((k.artifact for k in _KINDS.values() if k.artifact.name == name), None)


def kind_for_artifact(members: set[str]) -> ModelKind[Any] | None:
    """The kind whose artifact format this archive has (by its marker member)."""
    return next((k for k in _KINDS.values() if k.artifact.marker in members), None)


register(LinearKind())
register(MLPKind())
