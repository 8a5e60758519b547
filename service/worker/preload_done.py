"""Imported last by a worker's forkservers, after the warm-up and the plugins: settle what every
child shares, so that each one starts with less to do."""

import gc

from service.worker.child import preload_threadpools

preload_threadpools()
# Out of the collector's sight: a child's collections never walk (and so never copy) the
# objects it shares copy-on-write with the forkserver.
gc.collect()
gc.freeze()
