"""The full forkserver's preload: the heavy imports and one tiny fit of every model kind."""

from service.worker.warming import WARM_UP_SPECS, preload, warm_up

__all__ = ["WARM_UP_SPECS", "warm_up"]

preload()
