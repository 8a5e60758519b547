"""The people's CLI: against the real server through RIDGELINE_URL / RIDGELINE_API_KEY, plus the
sweep leaderboard and the diagnosis display from canned answers (MockTransport)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from service.client import Client
from service.client import cli as client_cli
from service.client.cli import app
from tests.conftest import Server

REPO = Path(__file__).resolve().parents[2]
MLP = {
    "target": "target",
    "model": {"kind": "mlp", "hidden_layers": [8], "epochs": 5, "batch_size": 128},
    "regularization": {"penalty": "l2", "strength": 1e-4},
}


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.usefixtures("worker")
def test_upload_submit_watch_and_use(
    run: Callable[..., Any], cancer_csv: Path, tmp_path: Path
) -> None:
    result = run("datasets", "upload", str(cancer_csv), "--name", "cancer")
    assert result.exit_code == 0, result.output
    assert "uploading cancer.csv" in result.stderr and "kB" in result.stderr  # the progress bar
    listed = _json(run("datasets", "list", "--json"))["items"]
    assert [d["name"] for d in listed] == ["cancer"]
    dataset_id = listed[0]["id"]
    assert f"dataset {dataset_id}" in result.stdout and "mean radius" in result.stdout
    assert _json(run("datasets", "show", dataset_id, "--json"))["n_rows"] == 569
    assert len(_json(run("datasets", "preview", dataset_id, "--limit", "2", "--json"))["rows"]) == 2

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(MLP))
    result = run("jobs", "submit", str(spec), "--dataset", dataset_id, "--watch")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "succeeded" in out and "final metrics" in out
    assert "train" in out and "validation" in out and "roc_auc" in out
    assert "generalization gap" in out and "accuracy: train - validation" in out
    assert "epoch 5/5" in result.stderr and "val loss" in result.stderr
    assert "Traceback" not in result.output

    jobs = _json(run("jobs", "list", "--status", "succeeded", "--json"))["items"]
    job_id = jobs[0]["id"]
    assert _json(run("jobs", "show", job_id, "--json"))["status"] == "succeeded"
    metrics = _json(run("jobs", "metrics", job_id, "--json"))
    assert len(metrics["history"]) == 5 and metrics["generalization_gap"]["metric"] == "accuracy"
    diagnosis = metrics.get("diagnosis") or metrics["extra"].get("diagnosis")
    if diagnosis:  # the server's verdict, when this server version sends one
        assert f"diagnosis: {diagnosis['verdict']}" in out
    result = run("jobs", "metrics", job_id)
    assert result.exit_code == 0 and "history" in result.stdout

    first = _json(run("datasets", "preview", dataset_id, "--json"))["rows"][0]
    row = {k: v for k, v in first.items() if k != "target"}
    prediction = _json(run("jobs", "predict", job_id, "--rows", json.dumps([row]), "--json"))
    assert len(prediction["predictions"]) == 1
    result = run("jobs", "predict", job_id, "--csv", str(cancer_csv))
    assert result.exit_code == 0 and "P(1)" in result.stdout

    saved = _json(run("jobs", "download", job_id, "--out", str(tmp_path), "--json"))
    assert Path(saved["path"]).suffix == ".zip" and Path(saved["path"]).stat().st_size > 0

    # Without --watch, --json prints the queued job for scripts.
    queued = _json(run("jobs", "submit", str(spec), "--dataset", dataset_id, "--json"))
    assert queued["status"] == "queued"
    assert _json(run("jobs", "cancel", queued["id"], "--json"))["id"] == queued["id"]


def test_errors_print_the_detail_and_exit_1(
    run: Callable[..., Any], cancer_csv: Path, tmp_path: Path
) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    result = run("jobs", "show", missing)
    assert result.exit_code == 1
    assert f"404 Not Found: no job with id {missing}" in result.stderr
    assert "Traceback" not in result.output

    problem = json.loads(run("datasets", "show", missing, "--json").stdout)
    assert problem["status"] == 404 and problem["detail"]

    dataset_id = _json(run("datasets", "upload", str(cancer_csv), "--json"))["id"]
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"target": "nope", "regularization": {"penalty": "elasticnet"}}))
    result = run("jobs", "submit", str(spec), "--dataset", dataset_id)
    assert result.exit_code == 1
    assert "422" in result.stderr and "regularization.l1_ratio" in result.stderr
    assert "target column 'nope'" in result.stderr

    # Usage errors exit 2.
    assert run("jobs", "predict", missing).exit_code == 2
    assert run("jobs", "submit", str(tmp_path / "absent.json")).exit_code == 2
    (tmp_path / "notjson.json").write_text("{")
    assert run("jobs", "submit", str(tmp_path / "notjson.json"), "--dataset", "x").exit_code == 2


def test_bad_key_and_unreachable_service(server: Server) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["datasets", "list", "--url", server.base_url, "--api-key", "rl_wrong"]
    )
    assert result.exit_code == 1 and "401 Unauthorized" in result.stderr
    result = runner.invoke(
        app, ["jobs", "list"], env={"RIDGELINE_URL": "http://127.0.0.1:9", "RIDGELINE_API_KEY": "x"}
    )
    assert result.exit_code == 1 and "cannot connect to http://127.0.0.1:9" in result.stderr


def test_cli_in_a_subprocess(server: Server, key: str, cancer_csv: Path) -> None:
    env = {**os.environ, "RIDGELINE_URL": server.base_url, "RIDGELINE_API_KEY": key}
    command = [sys.executable, "-m", "service.client", "datasets", "upload", str(cancer_csv)]
    done = subprocess.run(
        [*command, "--json"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["n_rows"] == 569


# --- canned answers: the leaderboard and the diagnosis ------------------------------------------


def _row(strength: float, mean: float | None) -> dict[str, Any]:
    """A leaderboard row as SweepRead sends it."""
    return {
        "penalty": "l2",
        "strength": strength,
        "l1_ratio": None,
        "dropout": None,
        "metric": "roc_auc",
        "mean": mean,
        "std": 0.01 if mean is not None else None,
        "train_mean": 0.99 if mean is not None else None,
        "n_folds": 5 if mean is not None else 0,
    }


SWEEP = {
    "id": "s1",
    "status": "succeeded",
    "progress": 1.0,
    "metric": "roc_auc",
    "greater_is_better": True,
    "lower_is_better": False,
    "best": {"penalty": "l2", "strength": 0.25, "l1_ratio": None, "dropout": None, "cv_mean": 0.97},
    "refit_job_id": "j9",
    "leaderboard": [_row(1.5, 0.91), _row(0.25, 0.97), _row(0.0625, 0.95), _row(10.0, None)],
}
STRENGTHS = re.compile(r"│ (1\.5|0\.25|0\.0625|10) ")


def _canned(monkeypatch: pytest.MonkeyPatch, routes: dict[str, Any]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=routes[request.url.path])

    def make_client(url: str | None, api_key: str | None) -> Client:
        return Client("http://rl.test", "k", transport=httpx.MockTransport(handler))

    monkeypatch.setattr(client_cli, "make_client", make_client)


def _shown_order(stdout: str) -> list[tuple[str, bool]]:
    """(strength, starred) of each leaderboard row, top to bottom."""
    return [
        (match.group(1), "★" in line)
        for line in stdout.splitlines()
        if (match := STRENGTHS.search(line))
    ]


def test_sweep_leaderboard_ranks_in_the_direction_the_server_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _canned(monkeypatch, {"/v1/sweeps/s1": SWEEP})
    result = CliRunner().invoke(app, ["sweeps", "show", "s1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert _shown_order(result.stdout) == [
        ("0.25", True), ("0.0625", False), ("1.5", False), ("10", False),
    ]  # fmt: skip
    assert "leaderboard (by roc_auc)" in result.stdout and "j9" in result.stdout
    assert "higher is better" in result.stdout
    as_json = json.loads(CliRunner().invoke(app, ["sweeps", "show", "s1", "--json"]).stdout)
    assert as_json["leaderboard"] == SWEEP["leaderboard"]

    # The direction is the server's, whatever the metric's name suggests: the CLI keeps no list.
    lower = {**SWEEP, "greater_is_better": False, "lower_is_better": True}
    _canned(monkeypatch, {"/v1/sweeps/s1": lower})
    result = CliRunner().invoke(app, ["sweeps", "show", "s1"], env={"COLUMNS": "200"})
    assert "lower is better" in result.stdout
    assert _shown_order(result.stdout) == [
        ("1.5", False), ("0.0625", False), ("0.25", True), ("10", False),
    ]  # fmt: skip
    ranked = client_cli.sorted_leaderboard(client_cli.Sweep.model_validate(lower))
    assert [row["strength"] for _, row in ranked] == [1.5, 0.0625, 0.25, 10.0]


def test_final_metrics_show_the_direction_the_server_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    final = {"train": {"log_loss": 0.1, "n": 10}, "validation": {"log_loss": 0.3, "n": 5}}
    metrics = {
        "job_id": "j1",
        "status": "succeeded",
        "final": final,
        # Deliberately the opposite of log_loss's real direction: the CLI must print the server's.
        "metric_info": {"log_loss": {"greater_is_better": True, "description": "d"}},
    }
    job = {"id": "j1", "status": "succeeded"}
    _canned(monkeypatch, {"/v1/jobs/j1/metrics": metrics, "/v1/jobs/j1": job})
    result = CliRunner().invoke(app, ["jobs", "metrics", "j1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    (log_loss,) = [line for line in result.stdout.splitlines() if "log_loss" in line]
    assert "higher" in log_loss and "lower" not in log_loss
    (n,) = [line for line in result.stdout.splitlines() if "│ n " in line]
    assert "higher" not in n and "lower" not in n  # a count has no direction


def test_metrics_show_the_diagnosis(monkeypatch: pytest.MonkeyPatch) -> None:
    final = {"train": {"accuracy": 1.0, "loss": 0.01}, "validation": {"accuracy": 0.8, "loss": 0.6}}
    metrics = {
        "job_id": "j1",
        "status": "succeeded",
        "final": final,
        "generalization_gap": {"metric": "accuracy", "score": 0.2, "loss": 0.59},
        "extra": {
            "diagnosis": {
                "verdict": "overfitting",
                "reasons": ["validation log-loss is 60x the training log-loss"],
                "suggestions": [
                    {
                        "field": "regularization.strength",
                        "value": 0.01,
                        "message": "penalise the weights more",
                    },
                    "add dropout",
                ],
            }
        },
    }
    job = {"id": "j1", "status": "succeeded"}
    _canned(monkeypatch, {"/v1/jobs/j1/metrics": metrics, "/v1/jobs/j1": job})
    result = CliRunner().invoke(app, ["jobs", "metrics", "j1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "diagnosis: overfitting" in result.stdout
    assert "because validation log-loss is 60x the training log-loss" in result.stdout
    assert "→ penalise the weights more" in result.stdout
    assert "→ add dropout" in result.stdout
    assert "0.2" in result.stdout and "0.59" in result.stdout


@pytest.mark.usefixtures("worker")
def test_sweep_submit_watch_shows_the_leaderboard(
    run: Callable[..., Any], cancer_csv: Path, tmp_path: Path
) -> None:
    dataset_id = _json(run("datasets", "upload", str(cancer_csv), "--json"))["id"]
    spec = tmp_path / "sweep.json"
    spec.write_text(
        json.dumps(
            {
                "dataset_id": dataset_id,
                "target": "target",
                "search": {"penalty": ["l2"], "strength": [0.001, 0.1, 10.0]},
                "cv": {"folds": 2},
            }
        )
    )
    result = run("sweeps", "submit", str(spec), "--watch")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "leaderboard (by log_loss)" in out and "lower is better" in out
    rows = [line for line in out.splitlines() if re.search(r"│ l2 ", line)]
    assert len(rows) == 3 and "★" in rows[0] and not any("★" in r for r in rows[1:])
    sweep_id = _json(run("sweeps", "list", "--json"))["items"][0]["id"]
    shown = _json(run("sweeps", "show", sweep_id, "--json"))
    assert shown["status"] == "succeeded" and len(shown["leaderboard"]) == 3
    # The trials stay out of `jobs list` unless asked for; the refit is a model to use.
    listed = _json(run("jobs", "list", "--json"))["items"]
    assert [j["id"] for j in listed] == [shown["refit_job_id"]]
    with_trials = _json(run("jobs", "list", "--trials", "--json"))["items"]
    assert len(with_trials) == 1 + shown["n_jobs"]
    assert {j["id"] for j in with_trials} >= {shown["refit_job_id"]}
