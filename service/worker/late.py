"""Model kinds whose first fit costs seconds more than the imports (torch's autograd, optimizers
and dynamo): the quick forkserver leaves them out, so other jobs need not wait for them.

A module of its own and light: the worker reads it without importing what the kinds need.
"""

LATE_KINDS = frozenset({"mlp"})
