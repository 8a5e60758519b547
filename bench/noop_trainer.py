"""A trainer that does nothing: queue throughput without training (RIDGELINE_WORKER_PLUGINS)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from service.worker.trainers import Reporter, TrainerOutput, register


@register("bench-noop")
def noop(payload: dict[str, Any], table: pa.Table | None, reporter: Reporter) -> TrainerOutput:
    # b"" (no artifact) rather than None: a worker that reads an artifact frame after every result
    # fails a None artifact with "the training process died while sending its result".
    return TrainerOutput(result={"metrics": {"fit_seconds": 0.0}}, artifact=b"")
