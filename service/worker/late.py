"""The model kinds a worker's quick forkserver leaves out of its warm-up (`late_warm_up`).

A module of its own and light: the registry imports no kind's heavy libraries, so the worker
reads it without importing what the kinds need.
"""

from service.training.kinds import registry

LATE_KINDS = frozenset(kind.name for kind in registry.kinds() if kind.late_warm_up)
