"""The model card: what it says, and its loading snippet run exactly as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Server
from tests.registry.conftest import Trained, unique

pytestmark = pytest.mark.usefixtures("worker")


def _python_block(card: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == 1, card
    return str(blocks[0])


def test_card_describes_the_version_and_its_snippet_runs(
    server: Server, trained: Trained, tmp_path: Path
) -> None:
    name = unique("carded")
    job = trained.jobs[0]
    with trained.client(server) as client:
        assert client.post("/v1/models", json={"name": name}).status_code == 201
        registered = client.post(
            f"/v1/models/{name}/versions", json={"job_id": job["id"], "description": "L1 | 0.05"}
        )
        assert registered.status_code == 201, registered.text
        client.put(f"/v1/models/{name}/aliases/champion", json={"version": 1})
        response = client.get(f"/v1/models/{name}/versions/1/card")
        metrics = client.get(f"/v1/jobs/{job['id']}/metrics").json()
        expected = client.post(
            f"/v1/jobs/{job['id']}/predict", json={"rows": [_example_row(response.text)]}
        ).json()["predictions"]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    card = response.text
    assert card.startswith(f"# {name}, version 1\n")
    assert "> L1 \\| 0.05" in card  # a description cannot break the Markdown
    assert "aliases: `champion`" in card
    for heading in ("## Data", "## Model", "## Metrics", "## Largest coefficients",
                    "## Training curves", "## Library versions", "## Loading it"):  # fmt: skip
        assert heading in card, heading
    assert trained.dataset_sha256 in card and "| rows | 569 |" in card
    assert "| columns | 31 |" in card and "`target` (classification)" in card
    assert '"estimator": "LogisticRegression"' in card  # the native parameters
    validation = metrics["final"]["validation"]["accuracy"]
    assert f"| accuracy | {metrics['final']['train']['accuracy']:.4g} | {validation:.4g} |" in card
    assert f"Diagnosis: **{metrics['diagnosis']['verdict']}**" in card
    largest = max(metrics["coefficients"], key=lambda c: abs(c["value"]))
    assert f"| {largest['feature']} | 1 | {largest['value']:.4g} |" in card
    zeros = sum(c["value"] == 0 for c in metrics["coefficients"])
    assert f"{zeros} of 30 coefficients are exactly zero" in card
    assert f"(/v1/jobs/{job['id']}/plots/coefficients)" in card
    assert job["artifact"]["sha256"] in card

    snippet = _python_block(card)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDGELINE_")}
    env.update(
        RIDGELINE_URL=server.base_url,
        RIDGELINE_API_KEY=trained.key,
        PYTHONPATH=str(REPO),
    )
    ran = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == str(expected)
    assert list(tmp_path.glob(f"{name}-v1.skops")), list(tmp_path.iterdir())


def _example_row(card: str) -> dict[str, object]:
    """The row the snippet predicts, evaluated the way Python will."""
    snippet = _python_block(card)
    literal = snippet.split("row = ", 1)[1].split("\nprint(", 1)[0]
    row = eval(literal, {})  # our own card's literal, in a test
    assert isinstance(row, dict) and len(row) == 30
    return row
