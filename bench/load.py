"""Hardening under load: job reads against a bare FastAPI endpoint, and concurrent uploads.

One `ridgeline serve` (embedded worker, SQLite, the per-key rate limit set far above anything
this machine can send, so it never throttles):
  (a) 50 concurrent clients on loopback for 30 s (--quick: 10 s) GET /v1/jobs/{id} of a finished
      job: requests/s, p50 and p99 latency, errors; against a bare FastAPI app measured in the
      same run (one sync route returning the same job's JSON as a dict, served by uvicorn in a
      subprocess with the settings `ridgeline serve` uses). Target: >= 0.5 x the bare endpoint's
      requests/s with zero errors. Load generator: `wrk` (one thread) when installed, else
      httpx.AsyncClient with 50 tasks sharing one connection pool; both targets get a 2 s
      warm-up first. The generator and the servers share this machine's cores, so absolute
      figures understate a real deployment.
  (b) 20 concurrent 50 MB CSV uploads (POST /v1/datasets, each in its own client thread): zero
      errors, the total time, and the peak RSS growth of the server's process tree (its VmRSS
      summed over /proc every 50 ms). Target: bounded, < 1 GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common
import httpx
from common import MB, Figure, MiB

NAME = "load"
BENCH_DIR = Path(__file__).resolve().parent
CLIENTS = 50
WARMUP_S = 2.0
RATIO_TARGET = 0.5
UPLOADS = 20
UPLOAD_MB = 50
RSS_LIMIT = 1 << 30
ROW_BYTES = 545  # a row of write_classification_csv at 50 float32 features, about
SERVER_ENV = {"RIDGELINE_RATE_LIMIT_PER_MINUTE": str(10**9)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, help="Seconds per target (default 30; quick 10).")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="Concurrent clients.")
    parser.add_argument("--uploads", type=int, default=UPLOADS, help="Concurrent uploads.")
    parser.add_argument("--upload-mb", type=float, default=UPLOAD_MB, help="Size of each upload.")
    parser.add_argument(
        "--generator", choices=["auto", "wrk", "httpx"], default="auto", help="Load generator."
    )
    parser.add_argument(
        "--only", choices=["reads", "uploads"], action="append", help="Run only these parts."
    )


# -- the bare endpoint ----------------------------------------------------------------------------


def serve_bare(port: int, payload_path: str) -> None:
    """A one-route FastAPI app, run like `ridgeline serve` runs the service (see service/cli.py)."""
    import uvicorn
    from fastapi import FastAPI

    from service.cli import UVICORN_SETTINGS

    payload: dict[str, Any] = json.loads(Path(payload_path).read_text())
    app = FastAPI()

    @app.get("/item")
    def item() -> dict[str, Any]:
        return payload

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **UVICORN_SETTINGS)


class BareServer:
    """serve_bare() in a subprocess on a free loopback port."""

    def __init__(self, payload_path: Path, log_path: Path) -> None:
        self.port = common.free_port()
        self.url = f"http://127.0.0.1:{self.port}/item"
        code = f"import load; load.serve_bare({self.port}, {str(payload_path)!r})"
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=BENCH_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            common.wait_for(self._ready, timeout=60, interval=0.1, message="the bare server")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.popen.poll() is not None:
            raise RuntimeError(f"the bare server exited early:\n{self.log_path.read_text()}")
        try:
            return httpx.get(self.url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


# -- load generators ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    tool: str
    error_detail: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def wrk_load(url: str, headers: dict[str, str], clients: int, seconds: float) -> LoadResult:
    """`wrk` with one thread (the fewest cores taken from the servers) and `clients` connections."""
    args = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency"]
    args += ["--timeout", "30s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", out)
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    if not (done and p50 and p99):
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    errors, detail = 0, []
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        errors += int(non_2xx[1])
        detail.append(f"{non_2xx[1]} non-2xx")
    sockets = re.search(r"Socket errors: (.*)", out)
    if sockets:
        errors += sum(int(n) for n in re.findall(r"\d+", sockets[1]))
        detail.append(f"socket errors {sockets[1].strip()}")
    return LoadResult(
        requests=int(done[1]),
        errors=errors,
        seconds=_ms(done[2] + done[3]) / 1e3,
        p50_ms=_ms(p50[1]),
        p99_ms=_ms(p99[1]),
        tool="wrk -t1",
        error_detail=", ".join(detail),
    )


def httpx_load(
    url: str,
    headers: dict[str, str],
    clients: int,
    seconds: float,
    *,
    body: Any = None,
    on_answer: Callable[[float, float, httpx.Response | None], None] | None = None,
) -> LoadResult:
    """`clients` asyncio tasks sharing one httpx.AsyncClient pool, each looping GETs (or POSTs
    of the JSON `body`); `on_answer(started, ended, response)` sees each (None: no answer)."""

    async def main() -> LoadResult:
        latencies: list[float] = []
        errors: list[str] = []
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
            deadline = time.perf_counter() + seconds

            async def one_client() -> None:
                while (started := time.perf_counter()) < deadline:
                    response = None
                    try:
                        if body is None:
                            response = await client.get(url)
                        else:
                            response = await client.post(url, json=body)
                        await response.aread()
                        if response.status_code != 200:
                            errors.append(f"HTTP {response.status_code}")
                    except httpx.HTTPError as exc:
                        errors.append(type(exc).__name__)
                    ended = time.perf_counter()
                    latencies.append(ended - started)
                    if on_answer is not None:
                        on_answer(started, ended, response)

            started = time.perf_counter()
            await asyncio.gather(*(one_client() for _ in range(clients)))
            elapsed = time.perf_counter() - started
        kinds = sorted(set(errors))
        return LoadResult(
            requests=len(latencies),
            errors=len(errors),
            seconds=elapsed,
            p50_ms=common.percentile(latencies, 50) * 1e3,
            p99_ms=common.percentile(latencies, 99) * 1e3,
            tool="httpx.AsyncClient",
            error_detail=", ".join(kinds[:5]),
        )

    return asyncio.run(main())


def pick_generator(choice: str) -> Any:
    if choice == "wrk" or (choice == "auto" and shutil.which("wrk")):
        if not shutil.which("wrk"):
            raise RuntimeError("wrk is not installed (apt-get install wrk), use --generator httpx")
        return wrk_load
    return httpx_load


# -- (a) reads -------------------------------------------------------------------------------------


def finished_job(client: httpx.Client, work: Path) -> str:
    """A succeeded job (a tiny dataset, a tiny linear job): what GET /v1/jobs/{id} reads."""
    dataset = common.upload_csv(client, common.write_tiny_csv(work / "tiny.csv"))
    job = common.check(client.post("/v1/jobs", json=common.tiny_job(dataset["id"])), 202)
    return str(common.wait_job(client, job["id"], interval=0.05, timeout=300)["id"])


def reads(
    server: common.Server,
    key: str,
    client: httpx.Client,
    work: Path,
    args: argparse.Namespace,
    job_id: str,
) -> list[Figure]:
    duration = args.duration or (10.0 if args.quick else 30.0)
    generate = pick_generator(args.generator)
    url = f"{server.base_url}/v1/jobs/{job_id}"
    headers = {"Authorization": f"Bearer {key}"}
    response = client.get(url)
    size = len(response.content)
    payload = work / "payload.json"
    payload.write_text(json.dumps(common.check(response, 200)))
    bare = BareServer(payload, work / "bare.log")
    try:
        bare_size = len(httpx.get(bare.url).content)
        results: dict[str, LoadResult] = {}
        for label, target, target_headers in (
            ("bare", bare.url, {}),
            ("service", url, headers),
        ):
            common.log(f"{NAME}: {label}: {args.clients} clients, {duration:g} s (+ warm-up)")
            generate(target, target_headers, args.clients, WARMUP_S)
            results[label] = generate(target, target_headers, args.clients, duration)
    finally:
        bare.stop()
    svc, base = results["service"], results["bare"]
    ratio = svc.rps / base.rps if base.rps else float("nan")
    setup = (
        f"{args.clients} clients, {svc.seconds:.0f} s, {svc.tool}; generator and servers share "
        f"{common.machine_info()['cpus']} CPUs"
    )
    return [
        Figure(
            NAME,
            "GET /v1/jobs/{id} requests/s",
            svc.rps,
            "req/s",
            note=f"{svc.requests:,} requests, {size:,} B body; {setup}",
        ),
        Figure(
            NAME,
            "bare FastAPI endpoint requests/s",
            base.rps,
            "req/s",
            note=f"{base.requests:,} requests, {bare_size:,} B body (same JSON), sync route, "
            f"uvicorn as in `ridgeline serve`; errors {base.errors}",
        ),
        Figure(
            NAME,
            "GET job / bare requests/s",
            ratio,
            "x",
            f">= {RATIO_TARGET:g}, 0 errors",
            ratio >= RATIO_TARGET and svc.errors == 0,
            note=f"p50 {svc.p50_ms:.1f} ms vs {base.p50_ms:.1f} ms bare, "
            f"p99 {svc.p99_ms:.1f} ms vs {base.p99_ms:.1f} ms bare",
        ),
        Figure(
            NAME,
            "GET /v1/jobs/{id} p50 latency",
            svc.p50_ms,
            "ms",
            note=f"bare {base.p50_ms:.1f} ms",
        ),
        Figure(
            NAME,
            "GET /v1/jobs/{id} p99 latency",
            svc.p99_ms,
            "ms",
            note=f"bare {base.p99_ms:.1f} ms",
        ),
        Figure(
            NAME,
            "GET /v1/jobs/{id} errors",
            svc.errors,
            "",
            "0",
            svc.errors == 0,
            note=svc.error_detail
            or f"rate limit set to {SERVER_ENV['RIDGELINE_RATE_LIMIT_PER_MINUTE']}/min",
        ),
    ]


# -- (b) uploads -----------------------------------------------------------------------------------


def uploads(server: common.Server, key: str, work: Path, args: argparse.Namespace) -> list[Figure]:
    csv_path = work / "upload.csv"
    rows = max(1_000, round(args.upload_mb * MB / ROW_BYTES))
    common.log(f"{NAME}: writing a ~{args.upload_mb:g} MB CSV ({rows:,} rows)")
    size = common.write_classification_csv(csv_path, rows, 50, "y")
    n = args.uploads
    barrier = threading.Barrier(n)
    errors: list[str] = []

    def upload(_: int) -> float:
        with server.client(key) as client:
            barrier.wait()
            started = time.perf_counter()
            try:
                common.upload_csv(client, csv_path)
            except (httpx.HTTPError, RuntimeError) as exc:
                errors.append(str(exc).splitlines()[0][:200])
            return time.perf_counter() - started

    common.log(f"{NAME}: {n} concurrent uploads of {size / MB:.0f} MB")
    with (
        common.RssSampler(server.pid, interval=0.05) as rss,
        common.ProcessRssSampler(server.pid) as api,
        ThreadPoolExecutor(n) as pool,
    ):
        started = time.perf_counter()
        each = list(pool.map(upload, range(n)))
        total = time.perf_counter() - started
    growth = rss.growth
    return [
        Figure(
            NAME,
            f"{n} concurrent {size / MB:.0f} MB uploads, errors",
            len(errors),
            "",
            "0",
            not errors,
            note="; ".join(sorted(set(errors))[:3]),
        ),
        Figure(
            NAME,
            "server peak RSS growth during uploads",
            growth / MiB,
            "MiB",
            f"< {RSS_LIMIT // MiB} MiB",
            growth < RSS_LIMIT,
            note=f"process tree (API + embedded worker) from {rss.baseline / MiB:.0f} MiB to "
            f"{rss.peak / MiB:.0f} MiB, {rss.samples} samples at 50 ms; the API process alone "
            f"grew {api.growth / MiB:.0f} MiB",
        ),
        Figure(
            NAME,
            f"{n} concurrent uploads, total time",
            total,
            "s",
            note=f"{n * size / MB / total:.0f} MB/s in all; each upload "
            f"{common.median(each):.1f} s median, {max(each):.1f} s max",
        ),
    ]


def run(args: argparse.Namespace) -> list[Figure]:
    parts = args.only or ["reads", "uploads"]
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="ridgeline-bench-load-") as tmp:
        work = Path(tmp)
        server = common.Server(common.sqlite_url(work), work, worker=True, env=SERVER_ENV)
        key = server.new_key()
        with common.running(server), server.client(key) as client:
            # Also waits for the embedded worker to be up, so its start-up is not counted as
            # the server's RSS growth during the uploads.
            job_id = finished_job(client, work)
            if "reads" in parts:
                figures += reads(server, key, client, work, args, job_id)
            if "uploads" in parts:
                figures += uploads(server, key, work, args)
    return figures


if __name__ == "__main__":
    common.main(NAME, add_arguments, run, __doc__ or NAME)
