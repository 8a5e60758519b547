"""Imported once by the forkserver, so each training child starts with these already loaded."""
# ruff: noqa: F401

import numpy
import pyarrow.parquet
import sklearn.linear_model
import sklearn.pipeline
import skops.io
import threadpoolctl
import torch

import service.training.mlp
import service.training.paths
import service.training.train
import service.worker.child


def _warm_optimizers() -> None:
    """The first optimizer in a process imports torch._dynamo (~1.5 s): pay it here, once."""
    layer = torch.nn.Linear(2, 1)
    torch.optim.Adam(layer.parameters())
    torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)


_warm_optimizers()
