"""The story Ridgeline exists for, told over HTTP against a running service.

A model that overfits without regularization; L1, L2, dropout and early stopping each closing
the gap; then a sweep that picks the strength. Prints a table and saves the plots.

    RIDGELINE_API_KEY=rl_... python examples/overfitting.py [--out examples/out]

It uses only the HTTP API, through the Python client (`service.client`, which loads nothing
but httpx and pydantic). The data is the README walkthrough's: scikit-learn's breast cancer set
(569 rows, 30 columns, the class in `target`). It prints a line as each job and the sweep move on;
the whole run takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from service.client import Client, Sweep


def write_dataset(folder: Path) -> Path:
    """The walkthrough's cancer.csv (scikit-learn ships the data; no download)."""
    from sklearn.datasets import load_breast_cancer

    path = folder / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    return path


def variants(dataset_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Each variant's name and spec; the job carries the name, so plots label it."""
    return [(name, {**spec, "name": name}) for name, spec in _variants(dataset_id)]


def _variants(dataset_id: str) -> list[tuple[str, dict[str, Any]]]:
    base = {
        "dataset_id": dataset_id,
        "target": "target",
        "seed": 0,
        "validation": {"fraction": 0.3},
    }
    poly = {**base, "preprocessing": {"polynomial_degree": 2}}
    mlp = {
        "kind": "mlp",
        "hidden_layers": [256, 256],
        "epochs": 60,
        "batch_size": 32,
        "learning_rate": 0.001,
    }
    return [
        ("linear, degree 2, no penalty", {**poly, "regularization": {"penalty": "none"}}),
        (
            "linear, degree 2, L1 0.01",
            {**poly, "regularization": {"penalty": "l1", "strength": 0.01}},
        ),
        (
            "linear, degree 2, L2 0.1",
            {**poly, "regularization": {"penalty": "l2", "strength": 0.1}},
        ),
        ("MLP, no regularization", {**base, "model": mlp, "regularization": {"penalty": "none"}}),
        (
            "MLP, dropout 0.5 (input 0.2)",
            {
                **base,
                "model": mlp,
                "regularization": {"penalty": "none", "dropout": 0.5, "input_dropout": 0.2},
            },
        ),
        (
            "MLP, L2 0.01",
            {**base, "model": mlp, "regularization": {"penalty": "l2", "strength": 0.01}},
        ),
        (
            "MLP, early stopping",
            {
                **base,
                "model": mlp,
                "regularization": {"penalty": "none", "early_stopping": {"patience": 10}},
            },
        ),
    ]


def row(name: str, metrics: Any) -> list[str]:
    train = metrics.final["train"]
    val = metrics.final["validation"]
    gap = metrics.generalization_gap or {}
    weights = metrics.weights or {}
    return [
        name,
        f"{train['accuracy']:.3f}",
        f"{val['accuracy']:.3f}",
        f"{gap.get('score', 0):+.3f}",
        f"{train['log_loss']:.3f}",
        f"{val['log_loss']:.3f}",
        f"{gap.get('loss', 0):+.3f}",
        f"{weights.get('sparsity', 0):.0%}",
        (metrics.diagnosis or {}).get("verdict", ""),
    ]


def print_table(rows: list[list[str]]) -> None:
    header = [
        "variant",
        "train acc",
        "val acc",
        "acc gap",
        "train loss",
        "val loss",
        "loss gap",
        "sparsity",
        "diagnosis",
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def sweep_progress() -> Any:
    """Print the sweep's progress when it moves by a tenth or more."""
    shown = [-1.0]

    def show(sweep: Sweep) -> None:
        progress = sweep.progress or 0.0
        if progress - shown[0] >= 0.1 or (sweep.status != "running" and progress != shown[0]):
            shown[0] = progress
            print(f"  sweep {sweep.status}: {progress:.0%}")

    return show


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with Client.from_env() as client, tempfile.TemporaryDirectory() as tmp:
        dataset = client.upload(write_dataset(Path(tmp)), name="breast cancer")
        print(f"uploaded {dataset.name}: {dataset.n_rows} rows, {dataset.n_columns} columns\n")

        jobs = [
            (name, client.submit({**spec, "name": name})) for name, spec in variants(dataset.id)
        ]
        print(f"submitted {len(jobs)} jobs; the worker trains them one after another")
        started = time.monotonic()
        rows, mlp_jobs = [], []
        for i, (name, job) in enumerate(jobs, 1):
            done = client.wait(job.id, timeout=900)
            if done.status != "succeeded":
                raise SystemExit(f"{name}: {done.status}: {done.error}")
            print(f"  [{i}/{len(jobs)}] {name}: done ({time.monotonic() - started:.0f} s)")
            rows.append(row(name, client.metrics(job.id)))
            if name.startswith("MLP"):
                mlp_jobs.append(job.id)
        print()
        print_table(rows)

        sweep = client.submit_sweep(
            {
                "dataset_id": dataset.id,
                "name": "L1 or L2, and how strong",
                "target": "target",
                "seed": 0,
                "preprocessing": {"polynomial_degree": 2},
                "validation": {"test_fraction": 0.2},
                "search": {
                    "penalty": ["l1", "l2"],
                    "strength": {"min": 1e-4, "max": 1.0, "num": 12, "scale": "log"},
                },
                "cv": {"folds": 5},
                "metric": "log_loss",
                "refit": True,
            }
        )
        print(f"\nsweep: {sweep.n_configs} configurations in {sweep.n_jobs} jobs, 5 folds each")
        sweep = client.wait_sweep(
            sweep.id, timeout=900, include_refit=True, on_update=sweep_progress()
        )
        best = sweep.best or {}
        print(
            f"\nsweep over {sweep.n_configs} configurations ({sweep.n_jobs} path jobs): best is "
            f"{best.get('penalty')} at strength {best.get('strength', 0):.3g}, "
            f"CV log-loss {best.get('cv_mean', 0):.3f} ± {best.get('cv_std', 0):.3f}, "
            f"train {best.get('train_mean', 0):.3f}; held-out test log-loss "
            f"{best.get('test', float('nan')):.3f} (refit job {sweep.refit_job_id})"
        )

        plots = {
            "loss-curves.svg": client.plot("loss-curves", job_ids=mlp_jobs),
            "coefficients-l1.svg": client.plot("coefficients", job_id=jobs[1][1].id),
            "validation-curve.svg": client.plot("validation-curve", sweep_id=sweep.id),
            "validation-curve.png": client.plot("validation-curve", sweep_id=sweep.id, fmt="png"),
            "regularization-path.svg": client.plot("regularization-path", sweep_id=sweep.id),
        }
        for filename, data in plots.items():
            (args.out / filename).write_bytes(data)
        print(f"\nplots saved in {args.out}/: {', '.join(plots)}")


if __name__ == "__main__":
    main()
