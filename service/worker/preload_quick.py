"""The quick forkserver's preload: the same imports, the fits of every kind but the late ones.

Ready seconds before the full one, it runs the jobs that need nothing of the rest (a linear job
does not wait for torch's warm-up); the worker retires it once the full one is ready.
"""

from service.worker.late import LATE_KINDS
from service.worker.warming import preload

preload(skip=LATE_KINDS)
