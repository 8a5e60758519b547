"""Trainers that misbehave on purpose; registered in test workers only, never reachable by HTTP."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pyarrow as pa

from service.worker.trainers import Reporter, TrainerOutput, register


@register("test-segfault")
def segfault(payload: dict[str, Any], table: pa.Table | None, reporter: Reporter) -> TrainerOutput:
    os.kill(os.getpid(), signal.SIGSEGV)
    raise AssertionError("unreachable")


@register("test-oom")
def allocate_too_much(
    payload: dict[str, Any], table: pa.Table | None, reporter: Reporter
) -> TrainerOutput:
    hoard = []
    while True:
        hoard.append(bytearray(256 << 20))


@register("test-raise")
def raise_error(
    payload: dict[str, Any], table: pa.Table | None, reporter: Reporter
) -> TrainerOutput:
    raise ValueError("the trainer raised on purpose")


@register("test-sleep")
def sleep_epochs(
    payload: dict[str, Any], table: pa.Table | None, reporter: Reporter
) -> TrainerOutput:
    """Reports an epoch every 0.1 s for spec seed seconds: a stand-in for a long training."""
    seconds = float(payload["spec"].get("seed", 5))
    deadline = time.monotonic() + seconds
    epoch = 0
    while time.monotonic() < deadline:
        epoch += 1
        reporter.epoch(
            {
                "epoch": epoch,
                "train_loss": 1.0 / epoch,
                "val_loss": 1.0 / epoch,
                "train_metric": None,
                "val_metric": None,
            }
        )
        reporter.progress(min(1.0, epoch * 0.1 / seconds))
        threading.Event().wait(0.1)  # stands in for an epoch of work
    return TrainerOutput(result={"metrics": {"slept": seconds}}, artifact=None)


@register("test-noop")
def noop(payload: dict[str, Any], table: pa.Table | None, reporter: Reporter) -> TrainerOutput:
    return TrainerOutput(result={"metrics": {"pid": os.getpid()}}, artifact=None)
