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
