"""Write the stored-artifact fixtures of test_kinds.py with the code of another commit.

They were written by commit 0211ae4, before the model kinds: `git archive 0211ae4 | tar -x -C
/tmp/old` then `PYTHONPATH=/tmp/old .venv/bin/python tests/training/data/make_old_artifacts.py
tests/training/data`.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

import service.training.train as T
from service.training.artifacts import load_artifact
from service.training.spec import TrainingSpec

out = Path(sys.argv[1])
rng = np.random.default_rng(7)
n = 120
x = rng.normal(size=n)
z = rng.normal(size=n)
color = np.array(["red", "green", "blue"])[rng.integers(0, 3, size=n)]
label = np.where(x + (color == "red") + rng.normal(scale=0.5, size=n) > 0.3, "yes", "no")
amount = 2 * x - z + rng.normal(scale=0.3, size=n)
table = pa.table(
    {"x": x, "z": z, "color": color.tolist(), "label": label.tolist(), "amount": amount}
)
rows = [
    {"x": 0.5, "z": -1.0, "color": "red"},
    {"x": -1.2, "z": 0.3, "color": "blue"},
    {"x": 0.0, "z": 0.0, "color": None},
]
cases = {
    "linear-classification.skops": {
        "target": "label",
        "regularization": {"penalty": "l1", "strength": 0.01},
    },
    "mlp-regression.zip": {
        "target": "amount",
        "model": {"kind": "mlp", "hidden_layers": [4], "epochs": 3, "batch_size": 16},
    },
}
expected = {}
for name, body in cases.items():
    spec = TrainingSpec.model_validate(body)
    data = table.drop_columns(["amount" if body["target"] == "label" else "label"])
    result = T.train(data, spec)
    (out / name).write_bytes(result.artifact)
    p = load_artifact(result.artifact).predict(rows)
    expected[name] = {
        "sha256": result.artifact_sha256,
        "kind": result.artifact_kind,
        "predictions": p.predictions,
        "probabilities": p.probabilities,
    }
(out / "old-artifacts.json").write_text(
    json.dumps({"rows": rows, "artifacts": expected}, indent=1) + "\n"
)
