"""The README as a newcomer follows it: its marked code blocks run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from service.training.train import train
from tests.conftest import REPO
from tests.training.helpers import spec

README = (REPO / "README.md").read_text()
# <!-- readme-test: python, needs a b c --> right above a ```python block.
PYTHON_BLOCK = re.compile(
    r"<!-- readme-test: python(?:, needs (?P<needs>[^>]*?))? -->\n```python\n(?P<code>.*?)```",
    re.S,
)
PYTHON_BLOCKS = [
    (m["needs"].split() if m["needs"] else [], m["code"]) for m in PYTHON_BLOCK.finditer(README)
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the walkthrough leaves in a user's folder: its data and both kinds of artifact."""
    from sklearn.datasets import load_breast_cancer

    here = tmp_path_factory.mktemp("readme")
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(here / "cancer.csv", index=False)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    linear = spec(target="target", regularization={"penalty": "l1", "strength": 0.05})
    mlp = spec(target="target", model={"kind": "mlp", "hidden_layers": [8], "epochs": 3})
    (here / "model.skops").write_bytes(train(table, linear).artifact)
    (here / "mlp.zip").write_bytes(train(table, mlp, device="cpu").artifact)
    return here


def test_the_readme_has_python_blocks_to_run() -> None:
    assert len(PYTHON_BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block_runs_as_written(index: int, folder: Path) -> None:
    needs, code = PYTHON_BLOCKS[index]
    assert all((folder / name).exists() for name in needs), needs
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "the block prints what a reader expects to see"
