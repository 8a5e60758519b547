"""Shared helpers of the benchmarks: processes, keys, RSS sampling, polling, results, tables.

Every benchmark starts its own `ridgeline` processes on free loopback ports against a fresh
database in a temp dir, talks to them over HTTP only, and stops them on the way out. Figures
are `Figure` rows; a ratio is always against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the helpers shared with the tests live in tests/support.py
    sys.path.insert(0, str(REPO))

from tests.support import free_port, wait_for  # noqa: E402

OUT_DIR = REPO / "bench" / "out"
TERMINAL = ("succeeded", "failed", "cancelled")
MB = 1_000_000
MiB = 1 << 20


# -- results ------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure; `ok` is None for figures given for information only."""

    bench: str
    name: str
    value: float | None
    unit: str
    target: str = "-"
    ok: bool | None = None
    note: str = ""


def verdict(ok: bool | None) -> str:
    return "info" if ok is None else ("PASS" if ok else "MISS")


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def print_table(figures: list[Figure], title: str = "Summary") -> None:
    header = ("benchmark", "figure", "value", "target", "result", "baseline / notes")
    rows = [
        (f.bench, f.name, f"{fmt(f.value)} {f.unit}".strip(), f.target, verdict(f.ok), f.note)
        for f in figures
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]

    def line(row: tuple[str, ...]) -> str:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        return "  ".join([*cells, row[-1]]).rstrip()

    rule = "-" * min(160, sum(widths) + 2 * len(widths) + 40)
    print(f"\n{title}\n{rule}")
    print(line(header))
    print(rule)
    for row in rows:
        print(line(row))
    print(rule)
    counted = [f.ok for f in figures if f.ok is not None]
    print(f"{sum(counted)} of {len(counted)} targeted figures PASS, {len(figures)} figures in all")


def write_json(figures: list[Figure], path: Path, **meta: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "generated_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        **meta,
        "figures": [asdict(f) for f in figures],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results written to {path}")


def machine_info() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parser_for(
    description: str, add_arguments: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="Small sizes: a smoke check.")
    add_arguments(parser)
    return parser


def load_note() -> str:
    """The load average: other work on this machine makes every figure here slower."""
    one, five, _ = os.getloadavg()
    cpus = os.cpu_count() or 1
    busy = ""
    if one > cpus / 2:
        busy = "  (busy: other processes share these CPUs; figures are pessimistic)"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {cpus} CPUs{busy}"


def main(
    name: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], list[Figure]],
    description: str,
) -> None:
    """The command line of one benchmark run alone: parse, run, print the table, save JSON."""
    args = parser_for(description, add_arguments).parse_args()
    load_before = load_note()
    log(load_before)
    figures = run(args)
    print_table(figures, f"{name} benchmark")
    print(f"before: {load_before}\nafter:  {load_note()}")
    write_json(
        figures,
        OUT_DIR / f"{name}.json",
        args=vars(args),
        load_before=load_before,
        load_after=load_note(),
    )


# -- statistics and time ------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def seconds_between(start: str, end: str) -> float:
    return (parse_time(end) - parse_time(start)).total_seconds()


# -- processes ----------------------------------------------------------------------------------


def cli_env(database_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """A clean RIDGELINE_* environment; the repository is importable (bench plugins)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDGELINE_")}
    path = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(dict.fromkeys(path)),
            "RIDGELINE_DATABASE_URL": database_url,
            "RIDGELINE_DATA_DIR": str(workdir / "data"),
            "RIDGELINE_TMP_DIR": str(workdir / "tmp"),
            "RIDGELINE_LOG_LEVEL": "WARNING",
            # The benchmarks poll far faster than a client should; they measure, not get throttled.
            "RIDGELINE_RATE_LIMIT_PER_MINUTE": "0",
        }
    )
    env.update(extra)
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def sqlite_url(workdir: Path) -> str:
    return f"sqlite:///{(workdir / f'ridgeline-{uuid.uuid4().hex[:8]}.db').as_posix()}"


class Process:
    """A `ridgeline` command we started, in its own session so all it spawned can be stopped."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "service.cli", *args],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (a graceful drain), then SIGKILL whatever is left of its process group."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


class Server(Process):
    """`ridgeline serve` on a free loopback port, with or without its embedded worker."""

    def __init__(
        self, database_url: str, workdir: Path, *, worker: bool, env: dict[str, str] | None = None
    ) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        args = ["serve", "--port", str(self.port)]
        if not worker:
            args.append("--no-worker")
        super().__init__(
            args,
            cli_env(database_url, workdir, **(env or {})),
            workdir / f"server-{self.port}.log",
        )
        try:
            wait_for(self._ready, timeout=120, interval=0.1, message="the server to be ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"the server exited early:\n{self.log_tail()}")
        try:
            return httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def new_key(self, tenant: str | None = None) -> str:
        return new_key(self.database_url, tenant)

    def client(self, key: str, timeout: float | None = 600) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
        )


class Worker(Process):
    """`ridgeline worker`; ready once it logs so (its forkserver has preloaded torch)."""

    def __init__(self, database_url: str, workdir: Path, name: str, **env: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            ["worker"],
            cli_env(database_url, workdir, RIDGELINE_LOG_LEVEL="INFO", **env),
            workdir / f"{name}.log",
        )

    def ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"a worker exited early:\n{self.log_tail()}")
        return " ready: " in self.logs()


@contextlib.contextmanager
def running(*processes: Process) -> Iterator[None]:
    """Stop the processes on the way out; show their logs when something failed."""
    try:
        yield
    except BaseException:
        for process in processes:
            print(f"--- last lines of {process.log_path.name} ---", file=sys.stderr)
            print(process.log_tail(), file=sys.stderr)
        raise
    finally:
        for process in processes:
            process.stop()


def new_key(database_url: str, tenant: str | None = None) -> str:
    """An API key made with the code the CLI uses (the benchmark's only direct DB write)."""
    from service.auth.service import create_key
    from service.config import Settings
    from service.db import Database

    database = Database(Settings(database_url=database_url))
    try:
        with database.transaction() as session:
            _, key = create_key(session, name=f"bench-{uuid.uuid4().hex[:10]}", tenant_id=tenant)
    finally:
        database.dispose()
    return key


def threads_per_job(concurrency: int = 1) -> int:
    """What a worker child gets: the service's own rule (all cores at concurrency 1)."""
    from service.config import Settings

    return Settings(worker_concurrency=concurrency, worker_threads=0).threads_per_job


# -- HTTP helpers -------------------------------------------------------------------------------


def check(response: httpx.Response, *expected: int) -> dict[str, Any]:
    if response.status_code not in expected:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:2000]}"
        )
    return response.json()


def upload_csv(client: httpx.Client, path: Path) -> dict[str, Any]:
    """POST /v1/datasets with the file streamed from disk (httpx reads it in chunks)."""
    with path.open("rb") as fh:
        response = client.post("/v1/datasets", files={"file": (path.name, fh, "text/csv")})
    return check(response, 201)


def follow_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """Wait for a job as a script does: on its event stream, which closes after the terminal
    status (no polling, so the API takes no CPU from the training child); raise unless it
    succeeded."""
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=60) as events:
        check_status = events.status_code
        for _ in events.iter_lines():
            pass
    if check_status != 200:
        raise RuntimeError(f"the event stream of job {job_id} answered {check_status}")
    job = check(client.get(f"/v1/jobs/{job_id}"), 200)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('error')}")
    return job


def follow_sweep(client: httpx.Client, sweep_id: str) -> dict[str, Any]:
    """Wait for a sweep on its event stream; the data of its last (terminal) status event."""
    last: dict[str, Any] = {}
    with client.stream("GET", f"/v1/sweeps/{sweep_id}/events", timeout=60) as events:
        if events.status_code != 200:
            raise RuntimeError(f"sweep {sweep_id}'s event stream answered {events.status_code}")
        for line in events.iter_lines():
            if line.startswith("data: "):
                last = json.loads(line.removeprefix("data: "))
    if last.get("status") not in TERMINAL:
        raise RuntimeError(f"the event stream of sweep {sweep_id} closed before it ended")
    return last


def wait_job(
    client: httpx.Client, job_id: str, *, interval: float = 0.02, timeout: float = 3600
) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until the job ends; raise unless it succeeded."""

    def done() -> dict[str, Any] | None:
        job = check(client.get(f"/v1/jobs/{job_id}"), 200)
        return job if job["status"] in TERMINAL else None

    job = wait_for(done, timeout=timeout, interval=interval, message=f"job {job_id} to end")
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('error')}")
    return job


def write_tiny_csv(path: Path, rows: int = 200) -> Path:
    """A small classification table (4 numeric features, binary target)."""
    import numpy as np

    rng = np.random.default_rng(1)
    x = rng.standard_normal((rows, 4))
    y = (x @ np.array([1.0, -1.0, 0.5, 0.0]) + 0.5 * rng.standard_normal(rows) > 0).astype(int)
    lines = ["a,b,c,d,y"] + [
        ",".join(f"{v:.5f}" for v in row) + f",{t}" for row, t in zip(x, y, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_classification_csv(path: Path, rows: int, n_features: int, target: str) -> int:
    """float32 features (~550 bytes a row at 50), a binary target from a noisy logistic model."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, n_features), dtype=np.float32)
    w = rng.normal(0.0, 0.4, n_features) * (rng.random(n_features) < 0.6)
    p = 1.0 / (1.0 + np.exp(-(x @ w + 0.3)))
    y = (rng.random(rows) < p).astype(np.int64)
    cols: dict[str, Any] = {f"x{i:02d}": x[:, i] for i in range(n_features)}
    cols[target] = y
    pa_csv.write_csv(pa.table(cols), path)
    return path.stat().st_size


def tiny_job(dataset_id: str) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "target": "y",
        "model": {"kind": "linear"},
        "regularization": {"penalty": "l2", "strength": 1e-3},
    }


def warm_up(client: httpx.Client, workdir: Path) -> str:
    """Upload a tiny dataset, run one tiny job and wait out the worker's warm-up, so nothing of
    the start-up runs beside what is timed next; the tiny dataset's id."""
    dataset = upload_csv(client, write_tiny_csv(workdir / "tiny.csv"))
    job = check(client.post("/v1/jobs", json=tiny_job(dataset["id"])), 202)
    wait_job(client, job["id"], interval=0.05, timeout=300)
    wait_warm_for_every_kind(client)
    return str(dataset["id"])


def wait_warm_for_every_kind(client: httpx.Client) -> None:
    """Wait until /readyz says every local worker is warm for every model kind: the full
    forkserver's warm-up (seconds of CPU) must not run beside a timed figure. A server whose
    workers run elsewhere (their own data folders) lists none and has nothing to wait for."""

    def warm() -> bool:
        workers = check(client.get("/readyz"), 200).get("workers", [])
        return all(w["state"] == "ready" and not w.get("still_warming") for w in workers)

    wait_for(warm, timeout=300, interval=0.1, message="the worker's warm-up")


# -- memory -------------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(p) for p in fh.read().split())
    return out


def process_rss(pid: int) -> int:
    """VmRSS of one process, in bytes (0 once it is gone)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def process_pss(pid: int) -> int:
    """PSS of one process: its resident bytes with each shared page divided among its sharers,
    so a tree of forked processes is not counted once per process (0 once it is gone)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def tree_rss(root: int, *, proportional: bool = False) -> int:
    """Resident bytes of a process and all its descendants (/proc; psutil is not in the venv);
    `proportional`: PSS, shared pages counted once across the tree."""
    measure = process_pss if proportional else process_rss
    return sum(measure(pid) for pid in tree_pids(root))


def tree_pids(root: int) -> Iterator[int]:
    """A process and all its live descendants."""
    stack, seen = [root], set()
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen.add(pid)
            yield pid
            stack.extend(children_of(pid))


TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int, *, own: bool = True, reaped: bool = True) -> float:
    """CPU seconds of a process (`own`) and of the children it has reaped (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17, the 12th-15th after the name.
    return sum(int(v) for v in fields[11 if own else 13 : 15 if reaped else 13]) / TICKS


def tree_cpu(root: int) -> float:
    """CPU seconds of a process tree: the live processes and every child they have reaped."""
    return sum(process_cpu(pid) for pid in tree_pids(root))


def named_cpu(name: str) -> float:
    """CPU seconds of every process with this command name (e.g. the Postgres server's)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    total += process_cpu(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return total


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy (all cores; /proc/stat, idle and iowait out)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / TICKS


@dataclass
class RssSampler:
    """Samples a process tree's RSS (or PSS, `proportional`) every `interval` seconds."""

    pid: int
    interval: float = 0.05
    proportional: bool = False
    baseline: int = 0
    peak: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = self._measure()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _measure(self) -> int:
        return tree_rss(self.pid, proportional=self.proportional)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._measure())
            self.samples += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._measure())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


class ProcessRssSampler:
    """Peak resident size of one process alone, without its children (the API process of
    `serve`): the kernel's own high-water mark (VmHWM), reset on entry, so no peak between
    two samples is missed."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = self.peak = 0

    def __enter__(self) -> ProcessRssSampler:
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        self.baseline = self.peak = process_rss(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError), open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    self.peak = max(self.peak, int(line.split()[1]) * 1024)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline
