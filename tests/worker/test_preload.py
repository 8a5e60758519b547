"""The forkserver's warm-up keeps CUDA out of the forkserver, so children forked from it can use it.

No machine here has a GPU: the test fakes a CUDA host (CUDA reported available, its lazy
initialization raising) and runs the warm-up the forkserver runs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture
def fake_cuda_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """CUDA looks available; initializing it records the attempt and raises, as a fork would."""
    import torch

    touched: list[str] = []

    def refuse(*_: object, **__: object) -> None:
        touched.append("cuda initialized")
        raise RuntimeError("Cannot re-initialize CUDA in forked subprocess (faked)")

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # Submodules (torch.cuda.random, ...) hold their own reference to _lazy_init.
    for name, module in list(sys.modules.items()):
        if name.startswith("torch.cuda") and hasattr(module, "_lazy_init"):
            monkeypatch.setattr(module, "_lazy_init", refuse)
    monkeypatch.setattr(torch.cuda, "init", refuse)
    threads = torch.get_num_threads()
    yield touched
    torch.set_num_threads(threads)


def test_warm_up_trains_every_kind_on_the_cpu_without_touching_cuda(
    fake_cuda_host: list[str],
) -> None:
    from service.training.kinds.mlp_estimator import resolve_device

    # The first import runs the warm-up as the forkserver does; run it again in case another
    # test imported the module before the fake was in place.
    preload = importlib.import_module("service.worker.preload")
    preload.warm_up()
    assert fake_cuda_host == []
    assert any(s.get("model", {}).get("kind") == "mlp" for s in preload.WARM_UP_SPECS)
    # A child still gets CUDA for a job's default device.
    assert resolve_device("auto").type == "cuda"


def test_the_fake_catches_a_warm_up_that_uses_the_default_device(
    fake_cuda_host: list[str],
) -> None:
    """The check above can fail: an MLP fit on device "auto" reaches CUDA on this fake host."""
    import pyarrow as pa

    from service.training.spec import TrainingSpec
    from service.training.train import train

    table = pa.table({"x": [float(i % 7) for i in range(60)], "y": ["a", "b"] * 30})
    spec = TrainingSpec.model_validate(
        {"target": "y", "model": {"kind": "mlp", "hidden_layers": [2], "epochs": 1}}
    )
    with pytest.raises(RuntimeError, match="faked"):
        train(table, spec)
    assert fake_cuda_host == ["cuda initialized"]
