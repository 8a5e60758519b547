"""The README as a newcomer follows it: its code blocks run as written, in order.

Every ```sh block runs unless a `<!-- readme-test: skip, why -->` line stands right above it;
```python blocks marked `<!-- readme-test: python[, live][, needs FILES] -->` run too. The live
ones (and every shell block) run in one bash session, in the README's order, in a fresh folder
against a real server and worker, with `API` and `KEY` set as the walkthrough's first block says.
The others run on the files they name, made here as the walkthrough would have left them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from service.training.train import train
from tests.conftest import REPO, Server
from tests.training.helpers import spec

README = (REPO / "README.md").read_text()
BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>sh|python)\n(?P<code>.*?)```",
    re.S,
)


@dataclass
class Block:
    line: int
    lang: str
    marker: str
    code: str

    @property
    def options(self) -> list[str]:
        return [part.strip() for part in self.marker.split(",")]

    @property
    def needs(self) -> list[str]:
        found = [o.removeprefix("needs ").split() for o in self.options if o.startswith("needs ")]
        return found[0] if found else []

    @property
    def live(self) -> bool:
        """Runs in the walkthrough's session: every shell block not skipped, live Python."""
        if self.lang == "sh":
            return self.options[0] != "skip"
        return self.options[0] == "python" and "live" in self.options


BLOCKS = [
    Block(README.count("\n", 0, m.start("code")) + 1, m["lang"], m["marker"] or "", m["code"])
    for m in BLOCK.finditer(README)
]
LIVE = [b for b in BLOCKS if b.live]
FILES = [b for b in BLOCKS if b.lang == "python" and b.options[0] == "python" and not b.live]


def test_every_shell_block_runs_or_says_why_not() -> None:
    skipped = [b for b in BLOCKS if b.lang == "sh" and b.options[0] == "skip"]
    assert all(len(b.options) > 1 and b.options[1] for b in skipped), "a skip gives its reason"
    assert len(LIVE) >= 4 and len(FILES) >= 2


def _script(blocks: list[Block]) -> str:
    """One bash session: each block announced, Python blocks through the venv's Python."""
    lines = ["set -euo pipefail"]
    for block in blocks:
        lines.append(f"echo '=== README line {block.line}'")
        if block.lang == "sh":
            lines.append(block.code)
        else:
            lines.append(f".venv/bin/python - <<'README_PY'\n{block.code}README_PY")
    return "\n".join(lines) + "\n"


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the embedded default
def test_the_walkthrough_runs_as_written_against_a_live_server(
    server: Server, tmp_path: Path
) -> None:
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # where the README says the venv is
    env = {
        "PATH": "/usr/bin:/bin",  # a fresh shell: nothing of the venv on the PATH
        "HOME": str(tmp_path),
        "API": server.base_url,
        "KEY": server.new_key(),
        "RIDGELINE_URL": server.base_url,  # what the README's client block reads
    }
    env["RIDGELINE_API_KEY"] = env["KEY"]
    result = subprocess.run(
        ["bash", "-c", _script(LIVE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout
    ran = re.findall(r"=== README line (\d+)", out)
    assert result.returncode == 0, (
        f"failed in the block at README line {ran[-1]}:\n{result.stderr[-3000:]}"
    )
    assert len(ran) == len(LIVE)
    assert '"status":"succeeded"' in out  # step 3
    assert '"predictions":' in out and "X-Model-Version: 1" in out.replace(
        "x-model-version", "X-Model-Version"
    )
    assert "mean concave points" in out or "missing" in out  # the 422 names the missing columns
    assert (tmp_path / "model.skops").stat().st_size > 1000
    assert "leaderboard" in out


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


@pytest.mark.parametrize("block", FILES, ids=[f"line-{b.line}" for b in FILES])
def test_python_block_runs_as_written(block: Block, folder: Path) -> None:
    assert all((folder / name).exists() for name in block.needs), block.needs
    result = subprocess.run(
        [sys.executable, "-c", block.code], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "the block prints what a reader expects to see"
