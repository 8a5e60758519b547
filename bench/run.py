"""Run every benchmark in sequence; one summary table, also written to bench/out/results.json.

`make bench` runs this. `--quick` uses small sizes (a smoke check in a couple of minutes);
`--big` adds the ~1 GB upload of the ingest benchmark. Each benchmark runs alone too:
`python bench/ingest.py --help`, `bench/train.py`, `bench/worker.py`, `bench/registry.py`,
`bench/peers.py` (H2O-3 side by side; needs the `bench` extra and Java), `bench/spark.py`
(the local engine against the Spark engine on 0.5-2 M rows; needs pyspark and Java).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import blobstore
import common
import ingest
import load
import peers
import registry
import spark
import sweep
import train
import worker
from common import Figure

BENCHMARKS = {
    "ingest": ingest,
    "blobstore": blobstore,
    "train": train,
    "worker": worker,
    "sweep": sweep,
    "load": load,
    "registry": registry,
    "peers": peers,
    "spark": spark,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Small sizes: a smoke check.")
    parser.add_argument("--big", action="store_true", help="Also upload a ~1 GB CSV (ingest).")
    parser.add_argument(
        "--only", choices=list(BENCHMARKS), action="append", help="Run only these benchmarks."
    )
    args = parser.parse_args()

    plan: list[tuple[str, list[str]]] = [
        (name, ["--quick"] if args.quick else [])
        for name in BENCHMARKS
        if not args.only or name in args.only
    ]
    if args.big and (not args.only or "ingest" in args.only):
        plan.append(("ingest", ["--big"]))

    load_before = common.load_note()
    common.log(load_before)
    started = time.perf_counter()
    figures: list[Figure] = []
    failed: list[str] = []
    for name, argv in plan:
        module = BENCHMARKS[name]
        bench_parser = common.parser_for(module.__doc__ or name, module.add_arguments)
        bench_args = bench_parser.parse_args(argv)
        common.log(f"=== {name} {' '.join(argv)}".rstrip())
        try:
            figures += module.run(bench_args)
        except Exception as exc:
            traceback.print_exc()
            failed.append(name)
            note = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            figures.append(Figure(name, "benchmark crashed", None, "", "runs", False, note))

    common.print_table(figures, f"Ridgeline benchmarks ({time.perf_counter() - started:.0f} s)")
    print(f"before: {load_before}\nafter:  {common.load_note()}")
    common.write_json(
        figures,
        common.OUT_DIR / "results.json",
        quick=args.quick,
        big=args.big,
        load_before=load_before,
        load_after=common.load_note(),
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
