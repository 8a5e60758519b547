"""Plugin modules (RIDGELINE_PLUGINS and RIDGELINE_WORKER_PLUGINS), imported by name.

A plugin registers what it brings when imported: a model kind (service.training.kinds.registry)
or a trainer (service.worker.trainers). Every process that validates specs or trains imports
them before it starts: the API, the worker, its forkserver and each training child.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable


def import_plugins(modules: Iterable[str]) -> None:
    """Import each module once (a module already imported is not run again)."""
    for module in modules:
        importlib.import_module(module)
