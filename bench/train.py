"""Training through the service against the same work done directly in-process.

On a 200k x 50 numeric classification table (binary target of a noisy logistic model), one
`ridgeline serve` (embedded worker, SQLite):
  (a)  L2 logistic job, POST -> succeeded (polled every 20 ms) against
       `service.training.train.train` on the same Parquet in this process (same pipeline, metrics
       and skops dump), every code path warmed up once first, as a long-running script would be:
       target service <= 1.15 x direct + 0.3 s. Run twice: the first job on a dataset also copies
       it from the database into the worker's cache ("cold"); the second finds it there ("warm").
       Each "warm" job runs right after a direct fit in this process, and the job's child runs
       0.3-0.6 s slower after one, so the L2 jobs also run back to back at the end ("warm, back
       to back"). The slowdown is all in first-touch copies (pandas block stacking, take,
       astype: 10x slower, same guest page-fault count); this sandbox is a Firecracker VM with
       free page reporting (page_reporting_order=11), so memory the direct fit frees goes back
       to the host and costs host faults when the child touches it next.
  (a2) L1 logistic job, POST -> succeeded, against H2O-3's published 2.5 s for one L1 GLM of this
       size; the CSV upload (import + parse) against H2O's published 2.9 s.
  (b)  MLP [128, 64], batch 256, 5 epochs: seconds per epoch from the job's fit_seconds against a
       plain torch loop here with the same model, batch size, threads and per-epoch work (a training
       pass, then evaluation of the training curve rows and the validation split): target >= 0.9.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import pyarrow.parquet as pq
from common import MB, Figure

NAME = "train"
N_FEATURES = 50
TARGET = "y"
L2 = {"penalty": "l2", "strength": 1e-4}
L1 = {"penalty": "l1", "strength": 1e-4}
MLP = {"kind": "mlp", "hidden_layers": [128, 64], "batch_size": 256, "epochs": 5}
DIRECT_FACTOR, DIRECT_FIXED = 1.15, 0.3
H2O_GLM_L1_SECONDS = 2.5  # H2O-3's published figure for one L1 logistic GLM on 200k x 50
H2O_IMPORT_SECONDS = 2.9  # H2O-3's published import + parse of the same 110 MB CSV
MLP_RATIO_TARGET = 0.9


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="Rows (default 200,000; --quick 20,000).")
    parser.add_argument("--epochs", type=int, default=MLP["epochs"], help="MLP epochs.")
    parser.add_argument(
        "--repeat", type=int, help="Interleaved rounds, best counts (default 3; --quick 1)."
    )
    parser.add_argument(
        "--skip-direct-l1", action="store_true", help="Do not fit the L1 model in-process too."
    )


def job_body(dataset_id: str, **spec: Any) -> dict[str, Any]:
    return {"dataset_id": dataset_id, "target": TARGET, **spec}


def run_job(client: Any, body: dict[str, Any]) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """(POST -> succeeded seconds, job, metrics), polling every 20 ms."""
    started = time.perf_counter()
    job = common.check(client.post("/v1/jobs", json=body), 202)
    job = common.wait_job(client, job["id"], interval=0.02)
    elapsed = time.perf_counter() - started
    metrics = common.check(client.get(f"/v1/jobs/{job['id']}/metrics"), 200)
    return elapsed, job, metrics


def phases(job: dict[str, Any], metrics: dict[str, Any]) -> str:
    """Where a job's time went, from the database's timestamps and the child's own fit time."""
    queued = common.seconds_between(job["created_at"], job["started_at"])
    ran = common.seconds_between(job["started_at"], job["finished_at"])
    return f"queued {queued:.2f} s, ran {ran:.2f} s, of which fit {metrics['fit_seconds']:.2f} s"


def direct_train(
    parquet: Path, body: dict[str, Any], threads: int, rows: int | None = None
) -> float:
    """What a script would do: read the Parquet and call the training core, same thread limit."""
    from threadpoolctl import threadpool_limits

    from service.jobs.schemas import JobCreate
    from service.training.train import train

    spec = JobCreate.model_validate(body).training_spec()
    with threadpool_limits(limits=threads):
        started = time.perf_counter()
        table = pq.read_table(parquet)
        if rows is not None:
            table = table.slice(0, rows)
        train(table, spec, max_classes=100)
        return time.perf_counter() - started


def warm_in_process(parquet: Path, bodies: list[dict[str, Any]], threads: int) -> None:
    """Run every code path once on a slice, so the timed runs pay no first-use imports.

    (pq.read_table imports pyarrow.dataset and torch.optim.Adam imports torch._dynamo on first
    use; a direct script would have paid that at start-up, outside its timing.)
    """
    import torch

    for body in bodies:
        direct_train(parquet, body, threads, rows=2_000)
    torch.optim.Adam(torch.nn.Linear(2, 2).parameters())


def plain_torch_epoch_seconds(parquet: Path, epochs: int, threads: int) -> float:
    """A plain torch loop: same net, Adam, batch size, L2 term, 80/20 split, curve evaluation."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from service.training.kinds.mlp_estimator import CURVE_ROWS

    table = pq.read_table(parquet)
    features = [c for c in table.column_names if c != TARGET]
    x = np.column_stack([table.column(c).to_numpy() for c in features]).astype(np.float64)
    y = table.column(TARGET).to_numpy().astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    n_val = math.ceil(0.2 * len(y))
    val, tr = order[:n_val], order[n_val:]
    mean, std = x[tr].mean(0), x[tr].std(0)
    x = ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    X, Y = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
    Xv, Yv = torch.from_numpy(x[val]), torch.from_numpy(y[val])
    curve = torch.from_numpy(np.sort(rng.permutation(len(tr))[:CURVE_ROWS]))
    Xc, Yc = X[curve], Y[curve]

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    widths = [X.shape[1], *MLP["hidden_layers"]]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(widths[-1], 2))
    weights = [m.weight for m in net if isinstance(m, nn.Linear)]
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    l2, bs, n = L2["strength"], int(MLP["batch_size"]), X.shape[0]  # type: ignore[call-overload]

    started = time.perf_counter()
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(n)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(net(X[idx]), Y[idx])
            loss = loss + l2 / 2 * sum((w * w).sum() for w in weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            for xe, ye in ((Xc, Yc), (Xv, Yv)):
                out = net(xe)
                F.cross_entropy(out, ye).item()
                (out.argmax(1) == ye).float().mean().item()
    return (time.perf_counter() - started) / epochs


def download_parquet(client: Any, dataset_id: str, path: Path) -> None:
    with client.stream("GET", f"/v1/datasets/{dataset_id}/download?format=parquet") as response:
        response.raise_for_status()
        with path.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)


def best(runs: list[tuple[float, dict[str, Any], dict[str, Any]]]) -> tuple[float, str]:
    """The fastest of repeated service runs, with where its time went."""
    seconds, job, metrics = min(runs, key=lambda r: r[0])
    return seconds, phases(job, metrics)


def run(args: argparse.Namespace) -> list[Figure]:
    rows = args.rows or (20_000 if args.quick else 200_000)
    repeat = args.repeat or (1 if args.quick else 3)
    comparable = rows == 200_000  # H2O's published figures are for 200k x 50
    threads = common.threads_per_job(1)
    mlp = {**MLP, "epochs": args.epochs}
    runs_of: dict[str, list[tuple[float, dict[str, Any], dict[str, Any]]]] = {
        "l2": [],
        "l1": [],
        "mlp": [],
    }
    direct: dict[str, list[float]] = {"l2": [], "l1": [], "mlp": []}
    with tempfile.TemporaryDirectory(prefix="ridgeline-bench-train-") as tmp:
        work = Path(tmp)
        csv_path = work / "train.csv"
        common.log(f"{NAME}: writing a {rows:,} x {N_FEATURES + 1} CSV")
        size = common.write_classification_csv(csv_path, rows, N_FEATURES, TARGET)
        server = common.Server(common.sqlite_url(work), work, worker=True)
        with common.running(server), server.client(server.new_key()) as client:
            common.log(f"{NAME}: warming up the embedded worker with a tiny job")
            common.warm_up(client, work)
            common.log(f"{NAME}: uploading {size / MB:.0f} MB")
            started = time.perf_counter()
            ds = common.upload_csv(client, csv_path)["id"]
            upload_s = time.perf_counter() - started
            bodies = {
                "l2": job_body(ds, regularization=L2),
                "l1": job_body(ds, regularization=L1),
                "mlp": job_body(ds, model=mlp, regularization=L2),
            }
            common.log(f"{NAME}: first L2 job (the worker copies the dataset to its cache)")
            l2_cold = run_job(client, bodies["l2"])
            parquet = work / "data.parquet"
            download_parquet(client, ds, parquet)

            # Direct runs happen here, beside the idle server, interleaved with the service's so
            # both meet the same machine; the best of `repeat` runs counts on either side.
            importlib.import_module("service.worker.preload")  # what the forkserver preloads

            warm_in_process(parquet, [bodies["l2"], bodies["l1"]], threads)
            for i in range(repeat):
                common.log(f"{NAME}: round {i + 1}/{repeat}: L2, L1, MLP in the service and direct")
                for kind in ("l2", "l1"):
                    runs_of[kind].append(run_job(client, bodies[kind]))
                    if kind == "l2" or not args.skip_direct_l1:
                        direct[kind].append(direct_train(parquet, bodies[kind], threads))
                runs_of["mlp"].append(run_job(client, bodies["mlp"]))
                direct["mlp"].append(plain_torch_epoch_seconds(parquet, args.epochs, threads))
            common.log(f"{NAME}: L2 jobs back to back, with no direct fit just before")
            back_to_back = [run_job(client, bodies["l2"]) for _ in range(repeat + 1)][1:]

    direct_l2 = min(direct["l2"])
    allowed = DIRECT_FACTOR * direct_l2 + DIRECT_FIXED
    runs = f"best of {repeat}" if repeat > 1 else "1 run"
    figures = [
        Figure(
            NAME,
            "CSV upload (import+parse)",
            upload_s,
            "s",
            f"<= {H2O_IMPORT_SECONDS} s (H2O)",
            upload_s <= H2O_IMPORT_SECONDS if comparable else None,
            note=f"{rows:,} x {N_FEATURES}, {size / MB:.0f} MB CSV, {size / MB / upload_s:.0f} "
            f"MB/s; H2O-3 published {H2O_IMPORT_SECONDS} s (other hardware)"
            + ("" if comparable else "; not 200k rows"),
        ),
    ]
    for label, (seconds, where) in (
        ("cold", best([l2_cold])),
        ("warm", best(runs_of["l2"])),
        ("warm, back to back", best(back_to_back)),
    ):
        figures.append(
            Figure(
                NAME,
                f"L2 job POST->succeeded, {label} / direct",
                seconds / direct_l2,
                "x",
                f"<= {DIRECT_FACTOR} (+{DIRECT_FIXED} s)",
                seconds <= allowed,
                note=f"service {seconds:.2f} s ({where}), direct {direct_l2:.2f} s, allowed "
                f"{allowed:.2f} s; " + ("1 run" if label == "cold" else runs),
            )
        )
    l1_s, l1_where = best(runs_of["l1"])
    convergence = min(runs_of["l1"], key=lambda r: r[0])[2]["extra"].get("convergence", {})
    figures.append(
        Figure(
            NAME,
            "L1 job POST->succeeded",
            l1_s,
            "s",
            f"<= {H2O_GLM_L1_SECONDS} s (H2O)",
            l1_s <= H2O_GLM_L1_SECONDS if comparable else None,
            note=(f"direct in-process {min(direct['l1']):.2f} s; " if direct["l1"] else "")
            + f"{l1_where}; saga n_iter {convergence.get('n_iter')}/"
            f"{convergence.get('max_iter')}; {runs}; H2O-3 published (other hardware)"
            + ("" if comparable else "; not 200k rows"),
        )
    )
    mlp_epochs = [
        float(m["fit_seconds"]) / (len(m["history"]) or args.epochs) for _, _, m in runs_of["mlp"]
    ]
    service_epoch, plain_epoch = min(mlp_epochs), min(direct["mlp"])
    mlp_s, mlp_where = best(runs_of["mlp"])
    figures += [
        Figure(
            NAME,
            "MLP s/epoch, service (fit_seconds/epochs)",
            service_epoch,
            "s",
            note=f"{args.epochs} epochs, batch {MLP['batch_size']}, {threads} threads; job "
            f"POST->succeeded {mlp_s:.2f} s ({mlp_where}); {runs}",
        ),
        Figure(
            NAME,
            "MLP epoch throughput service / plain torch",
            plain_epoch / service_epoch,
            "x",
            f">= {MLP_RATIO_TARGET}",
            plain_epoch / service_epoch >= MLP_RATIO_TARGET,
            note=f"plain loop {plain_epoch:.3f} s/epoch in-process, same threads; {runs}",
        ),
    ]
    return figures


if __name__ == "__main__":
    common.main(NAME, add_arguments, run, __doc__ or NAME)
