"""Ridgeline against H2O-3, side by side, in one run on this machine.

The same 200k x 50 CSV (binary target of a noisy logistic model), the same lambda, features
standardized, the same 20 % validation rows on both sides (Ridgeline's own deterministic split,
written out for H2O), H2O-3 with as many threads as Ridgeline's worker child gets. Ridgeline is
timed through its HTTP API with one embedded worker (SQLite), POST -> succeeded read from the job's
or the sweep's event stream as a script waits; H2O-3 is timed around its blocking Python call.
Each figure is Ridgeline / H2O (lower is better; goal <= 0.7) with the validation log-loss of
both, which must agree (Ridgeline no worse by more than 0.001) for the linear fits to count.

Needs the `bench` extra (`pip install -e '.[bench]'`: the `h2o` package, which carries H2O-3's jar)
and a Java runtime; without either the benchmark says so and reports nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from common import MB, Figure

NAME = "peers"
N_FEATURES = 50
TARGET = "y"
STRENGTH = 1e-4
PATH_POINTS = 20
PATH_MIN_RATIO = 1e-3
MLP_HIDDEN = [64, 64]
MLP_DROPOUT = 0.2
MLP_EPOCHS = 2
RATIO_TARGET = 0.7
LOG_LOSS_SLACK = 0.001


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, help="Rows (default 200,000; --quick 20,000).")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="Rounds per figure, the two sides alternating; the best of each side counts (one "
        "round is a coin toss on a shared 2-core VM, whose speed moves by 1.5x).",
    )
    parser.add_argument(
        "--figures",
        nargs="+",
        choices=list(FIGURE_KEYS),
        default=list(FIGURE_KEYS),
        help="Figures to measure (default all; the upload always runs: the jobs train on it).",
    )


def missing_peer() -> str | None:
    """Why H2O-3 cannot run here, or None."""
    if importlib.util.find_spec("h2o") is None:
        return "the h2o package is not installed: pip install -e '.[bench]'"
    if shutil.which("java") is None:
        return "no Java runtime on PATH (H2O-3 runs on the JVM)"
    return None


@dataclass
class Side:
    """One side's best time of a figure and the validation log-loss of that run."""

    seconds: float
    log_loss: float | None
    note: str = ""


@dataclass
class Data:
    csv: Path
    train_csv: Path
    valid_csv: Path
    size: int
    path_strengths: list[float]


def prepare(work: Path, rows: int) -> Data:
    """The CSV, and Ridgeline's own train/validation rows of it written out for H2O."""
    from service.training.spec import ValidationSpec
    from service.training.train import split_indices

    csv = work / "peers.csv"
    size = common.write_classification_csv(csv, rows, N_FEATURES, TARGET)
    table = pa_csv.read_csv(csv)
    y = table.column(TARGET).to_numpy()
    split = split_indices(len(y), ValidationSpec(), 0, stratify_labels=y)
    train_csv, valid_csv = work / "train.csv", work / "valid.csv"
    pa_csv.write_csv(table.take(pa.array(split.train)), train_csv)
    pa_csv.write_csv(table.take(pa.array(split.validation)), valid_csv)
    return Data(csv, train_csv, valid_csv, size, path_strengths(table, split.train))


def path_strengths(table: pa.Table, train_rows: np.ndarray) -> list[float]:
    """From the smallest strength that zeroes every weight (standardized, L1) down by 1e3."""
    x = np.column_stack(
        [table.column(c).to_numpy().astype(np.float64) for c in table.column_names[:-1]]
    )[train_rows]
    y = table.column(TARGET).to_numpy().astype(np.float64)[train_rows]
    x = (x - x.mean(0)) / x.std(0)
    top = float(np.max(np.abs(x.T @ (y - y.mean()))) / len(y))
    return [float(s) for s in np.geomspace(top, top * PATH_MIN_RATIO, PATH_POINTS)]


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


# -- H2O-3 --------------------------------------------------------------------------------------


@contextlib.contextmanager
def h2o_cluster(threads: int) -> Iterator[Any]:
    import h2o

    h2o.init(
        nthreads=threads,
        max_mem_size="6G",
        port=common.free_port(),
        bind_to_localhost=True,
        verbose=False,
    )
    h2o.no_progress()
    try:
        yield h2o
    finally:
        with contextlib.suppress(Exception):
            h2o.cluster().shutdown()


class H2OSide:
    """H2O-3 doing each figure's work on the same files and rows."""

    def __init__(self, h2o: Any, data: Data) -> None:
        self.h2o = h2o
        self.data = data
        self.train = h2o.import_file(str(data.train_csv))
        self.valid = h2o.import_file(str(data.valid_csv))
        for frame in (self.train, self.valid):
            frame[TARGET] = frame[TARGET].asfactor()
        self.features = [c for c in self.train.columns if c != TARGET]

    def warm_up(self, mlp: bool) -> None:
        """One fit of each kind measured first: the JVM compiles its hot paths on first use."""
        self.glm(1.0, lambda_=[STRENGTH])
        if mlp:
            self.mlp()

    def upload(self) -> Side:
        seconds, frame = timed(lambda: self.h2o.import_file(str(self.data.csv)))
        self.h2o.remove(frame)
        return Side(seconds, None)

    def glm(self, alpha: float, **params: Any) -> Side:
        from h2o.estimators import H2OGeneralizedLinearEstimator

        model = H2OGeneralizedLinearEstimator(
            family="binomial", alpha=alpha, standardize=True, seed=0, **params
        )
        seconds, _ = timed(
            lambda: model.train(
                x=self.features,
                y=TARGET,
                training_frame=self.train,
                validation_frame=self.valid,
            )
        )
        return Side(seconds, float(model.logloss(valid=True)))

    def mlp(self) -> Side:
        from h2o.estimators import H2ODeepLearningEstimator

        model = H2ODeepLearningEstimator(
            hidden=MLP_HIDDEN,
            epochs=MLP_EPOCHS,
            activation="RectifierWithDropout",
            hidden_dropout_ratios=[MLP_DROPOUT] * len(MLP_HIDDEN),
            seed=0,
        )
        seconds, _ = timed(
            lambda: model.train(
                x=self.features,
                y=TARGET,
                training_frame=self.train,
                validation_frame=self.valid,
            )
        )
        return Side(seconds, float(model.logloss(valid=True)))


# -- Ridgeline ----------------------------------------------------------------------------------


class RidgelineSide:
    """The same work through Ridgeline's HTTP API."""

    def __init__(self, client: Any, data: Data) -> None:
        self.client = client
        self.data = data
        self.dataset_id = ""

    def upload(self) -> Side:
        """The timed upload; the jobs that follow train on the dataset it made."""
        seconds, dataset = timed(lambda: common.upload_csv(self.client, self.data.csv))
        self.dataset_id = str(dataset["id"])
        return Side(seconds, None)

    def job(self, model: dict[str, Any], regularization: dict[str, Any]) -> Side:
        body = {
            "dataset_id": self.dataset_id,
            "target": TARGET,
            "model": model,
            "regularization": regularization,
            "seed": 0,
        }
        started = time.perf_counter()
        job = common.check(self.client.post("/v1/jobs", json=body), 202)
        job = common.follow_job(self.client, job["id"])
        seconds = time.perf_counter() - started
        metrics = common.check(self.client.get(f"/v1/jobs/{job['id']}/metrics"), 200)
        queued = common.seconds_between(job["created_at"], job["started_at"])
        note = f"queued {queued:.2f} s, fit {metrics.get('fit_seconds', 0):.2f} s"
        return Side(seconds, metrics["final"]["validation"].get("log_loss"), note)

    def path(self) -> Side:
        body = {
            "dataset_id": self.dataset_id,
            "target": TARGET,
            "model": {"kind": "linear"},
            "search": {"penalty": ["l1"], "strength": self.data.path_strengths},
            "cv": {"validation_fraction": 0.2},
            "refit": False,
            "seed": 0,
        }
        started = time.perf_counter()
        sweep = common.check(self.client.post("/v1/sweeps", json=body), 202)
        ended = common.follow_sweep(self.client, sweep["id"])
        seconds = time.perf_counter() - started
        if ended["status"] != "succeeded":
            raise RuntimeError(f"sweep {sweep['id']} ended {ended['status']}: {ended['error']}")
        best = ended.get("best") or {}
        return Side(seconds, best.get("cv_mean", best.get("mean")))


# -- the run ------------------------------------------------------------------------------------


FIGURES: list[tuple[str, bool, Callable[[H2OSide], Side], Callable[[RidgelineSide], Side]]] = [
    ("CSV upload + parse", False, H2OSide.upload, RidgelineSide.upload),
    (
        "one L1 logistic fit",
        True,
        lambda h: h.glm(1.0, lambda_=[STRENGTH]),
        lambda r: r.job({"kind": "linear"}, {"penalty": "l1", "strength": STRENGTH}),
    ),
    (
        "one L2 logistic fit",
        True,
        lambda h: h.glm(0.0, lambda_=[STRENGTH]),
        lambda r: r.job({"kind": "linear"}, {"penalty": "l2", "strength": STRENGTH}),
    ),
    (
        f"{PATH_POINTS}-point L1 path",
        True,
        lambda h: h.glm(1.0, lambda_=h.data.path_strengths, lambda_search=True),
        RidgelineSide.path,
    ),
    (
        f"MLP {'x'.join(map(str, MLP_HIDDEN))}, dropout {MLP_DROPOUT}, {MLP_EPOCHS} epochs",
        False,
        lambda h: h.mlp(),
        lambda r: r.job(
            {"kind": "mlp", "hidden_layers": MLP_HIDDEN, "epochs": MLP_EPOCHS},
            {"penalty": "none", "dropout": MLP_DROPOUT},
        ),
    ),
]


#: Short names of FIGURES, in order, for --figures.
FIGURE_KEYS = ("upload", "l1", "l2", "path", "mlp")


def best_of(runs: list[Side]) -> Side:
    return min(runs, key=lambda side: side.seconds)


def loss_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def run(args: argparse.Namespace) -> list[Figure]:
    why = missing_peer()
    if why is not None:
        common.log(f"{NAME}: skipped: {why}")
        return [Figure(NAME, "H2O-3 side by side", None, "", "-", None, f"skipped: {why}")]
    rows = args.rows or (20_000 if args.quick else 200_000)
    threads = common.threads_per_job(1)
    results: list[tuple[str, bool, Side, Side]] = []
    with tempfile.TemporaryDirectory(prefix="ridgeline-bench-peers-") as tmp:
        work = Path(tmp)
        common.log(f"{NAME}: writing a {rows:,} x {N_FEATURES + 1} CSV and its split")
        data = prepare(work, rows)
        server = common.Server(common.sqlite_url(work), work, worker=True)
        with (
            common.running(server),
            server.client(server.new_key()) as client,
            h2o_cluster(threads) as h2o,
        ):
            common.log(f"{NAME}: warming both sides up")
            common.warm_up(client, work)
            ridgeline, peer = RidgelineSide(client, data), H2OSide(h2o, data)
            chosen = {"upload", *args.figures}
            peer.warm_up(mlp="mlp" in chosen)
            for key, (name, counts_loss, on_h2o, on_ridgeline) in zip(
                FIGURE_KEYS, FIGURES, strict=True
            ):
                if key not in chosen:
                    continue
                h2o_runs, rl_runs = [], []
                for i in range(args.repeat):
                    common.log(f"{NAME}: {name}, round {i + 1}/{args.repeat}")
                    h2o_runs.append(on_h2o(peer))
                    rl_runs.append(on_ridgeline(ridgeline))
                h2o_best, rl_best = best_of(h2o_runs), best_of(rl_runs)
                common.log(
                    f"{NAME}: {name}: H2O-3 {h2o_best.seconds:.2f} s, Ridgeline "
                    f"{rl_best.seconds:.2f} s, ratio {rl_best.seconds / h2o_best.seconds:.2f}"
                )
                results.append((name, counts_loss, h2o_best, rl_best))
    print_peer_table(results, rows, data.size, threads)
    return [figure(name, counts, h, r, rows) for name, counts, h, r in results]


def figure(name: str, counts_loss: bool, h2o: Side, ridgeline: Side, rows: int) -> Figure:
    ratio = ridgeline.seconds / h2o.seconds
    same_loss = None
    if counts_loss and h2o.log_loss is not None and ridgeline.log_loss is not None:
        same_loss = ridgeline.log_loss <= h2o.log_loss + LOG_LOSS_SLACK
    ok = ratio <= RATIO_TARGET and same_loss is not False
    return Figure(
        NAME,
        f"{name}: Ridgeline / H2O-3",
        ratio,
        "x",
        f"<= {RATIO_TARGET}" + (", same val log-loss" if counts_loss else ""),
        ok if rows == 200_000 else None,
        note=f"Ridgeline {ridgeline.seconds:.2f} s, H2O-3 {h2o.seconds:.2f} s; val log-loss "
        f"{loss_text(ridgeline.log_loss)} vs {loss_text(h2o.log_loss)}"
        + (f"; {ridgeline.note}" if ridgeline.note else ""),
    )


def print_peer_table(
    results: list[tuple[str, bool, Side, Side]], rows: int, size: int, threads: int
) -> None:
    print(
        f"\nH2O-3 and Ridgeline side by side: {rows:,} x {N_FEATURES} CSV ({size / MB:.0f} MB), "
        f"{threads} threads each, 20 % validation"
    )
    print("| figure | H2O-3 | Ridgeline | Ridgeline / H2O | val log-loss H2O / Ridgeline |")
    print("|---|---|---|---|---|")
    for name, _, h2o, ridgeline in results:
        print(
            f"| {name} | {h2o.seconds:.2f} s | {ridgeline.seconds:.2f} s | "
            f"{ridgeline.seconds / h2o.seconds:.2f} | "
            f"{loss_text(h2o.log_loss)} / {loss_text(ridgeline.log_loss)} |"
        )


if __name__ == "__main__":
    common.main(NAME, add_arguments, run, __doc__ or NAME)
