"""What the worker's forkservers import and train once, so each training child starts warm.

Importing is not all: scikit-learn, pandas, skops and torch import more modules and build caches
on first use (about 1.5 s of a 3.5 s job on 200k rows). One tiny run of every registered model
kind (its ``warm_up_specs``) here pays that once, in the forkserver, instead of in every child.
"""
# ruff: noqa: F401

import os

import numpy
import pyarrow.dataset
import pyarrow.parquet
import sklearn.linear_model
import sklearn.pipeline
import skops.io
import threadpoolctl
import torch

import service.training.paths
import service.training.train
import service.worker.child
from service.training.kinds import registry
from service.worker.late import LATE_KINDS

#: Every registered kind's warm-up specs (targets 'label' and 'amount' of the table below).
WARM_UP_SPECS: list[dict[str, object]] = [
    overrides for kind in registry.kinds() for overrides in kind.warm_up_specs
]


def _warm_up_table() -> pyarrow.Table:
    """A small table with every column kind and missing values, a class and a number to predict."""
    rng = numpy.random.default_rng(0)
    n = 120
    x = rng.normal(size=n)
    x[::17] = numpy.nan
    return pyarrow.table(
        {
            "x": x,
            "count": rng.integers(0, 9, size=n),
            "flag": rng.random(n) < 0.5,
            "color": pyarrow.array(["red", "green", None][i % 3] for i in range(n)),
            "amount": rng.normal(size=n),
            "label": pyarrow.array(["yes", "no"][i % 2] for i in range(n)),
        }
    )


def warm_up(*, skip: frozenset[str] = frozenset()) -> None:
    """Train each kind of model once on a tiny table, on one thread and on the CPU only.

    CUDA must stay out of the forkserver: a CUDA context (even `torch.cuda.is_available()`'s
    driver probe) does not survive a fork, and every child forked after it would fail with
    "Cannot re-initialize CUDA in forked subprocess". Children still pick CUDA (device "auto").
    """
    from service.training.folds import sweep_splits
    from service.training.paths import fit_path
    from service.training.spec import TrainingSpec
    from service.training.train import train

    torch.set_num_threads(1)
    table = _warm_up_table()
    with threadpoolctl.threadpool_limits(limits=1):
        for overrides in WARM_UP_SPECS:
            spec = TrainingSpec.model_validate({"target": "label", "seed": 0, **overrides})
            if spec.model.kind in skip:
                continue
            data = table.drop_columns([c for c in ("label", "amount") if c != spec.target])
            train(data, spec, device="cpu")
            if registry.kind_of(spec).supports_path and spec.regularization.penalty == "l1":
                splits = sweep_splits(data, spec, folds=2, validation_fraction=None)
                fit_path(data, spec, [0.1, 0.01], split=splits.splits[0])
    if LATE_KINDS - skip:  # the first optimizer in a process imports torch._dynamo (~1.5 s)
        torch.optim.Adam(torch.nn.Linear(2, 1).parameters())


def preload(*, skip: frozenset[str] = frozenset()) -> None:
    """What a forkserver's preload module runs: warm every kind but those in `skip`."""
    # Should anything still ask whether CUDA is available, ask NVML (fork-safe), not the driver.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    warm_up(skip=skip)
