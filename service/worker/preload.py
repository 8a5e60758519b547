"""Imported once by the forkserver, so each training child starts with these already loaded."""

import numpy  # noqa: F401
import pyarrow.parquet  # noqa: F401
import sklearn.linear_model
import sklearn.pipeline  # noqa: F401
import skops.io  # noqa: F401
import threadpoolctl  # noqa: F401
import torch  # noqa: F401

import service.training.mlp
import service.training.train
import service.worker.child  # noqa: F401
