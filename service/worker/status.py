"""Whether the workers on this machine are still warming up, for the banner and /readyz.

A worker writes `<data_dir>/workers/<pid>.json` while it starts (warming, since when, how long
the last warm-up took) and again once ready; the embedded worker shares the API's data_dir, so
`ridgeline serve` can say that the first job waits for the warm-up, and for about how long.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

LAST_WARM_UP = "last-warm-up.json"


def _dir(data_dir: Path) -> Path:
    return data_dir / "workers"


def _write(path: Path, record: dict[str, Any]) -> None:
    """Replace the file whole, so a reader never sees half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(record))
    os.replace(partial, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def last_warm_up_seconds(data_dir: Path) -> float | None:
    """How long the last warm-up on this machine took (None before the first one ended)."""
    record = _read(_dir(data_dir) / LAST_WARM_UP)
    return float(record["seconds"]) if record and "seconds" in record else None


class WarmUpStatus:
    """This worker's status file: warming, then ready; removed when the worker stops."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = _dir(data_dir) / f"{os.getpid()}.json"
        self.started = time.monotonic()
        self.ready_seconds: float | None = None

    def warming(self) -> None:
        expected = last_warm_up_seconds(self.data_dir)
        record = {"state": "warming", "since": time.time(), "expected_seconds": expected}
        self._write_quietly(self.path, record)

    def ready(self, *, still_warming: list[str]) -> float:
        """Record that jobs run now (of every kind but `still_warming`); the first warm-up's
        seconds, which the next start quotes."""
        if self.ready_seconds is None:
            self.ready_seconds = round(time.monotonic() - self.started, 2)
            self._write_quietly(_dir(self.data_dir) / LAST_WARM_UP, {"seconds": self.ready_seconds})
        record = {
            "state": "ready",
            "warm_up_seconds": self.ready_seconds,
            "still_warming": still_warming,
        }
        self._write_quietly(self.path, record)
        return self.ready_seconds

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()

    @staticmethod
    def _write_quietly(path: Path, record: dict[str, Any]) -> None:
        """A status file is a courtesy: a read-only data_dir must not stop the worker."""
        with contextlib.suppress(OSError):
            _write(path, record)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def local_workers(data_dir: Path) -> list[dict[str, Any]]:
    """The running workers that share this data_dir: pid, state, and while warming, for how
    long so far and how long the last warm-up took."""
    found = []
    folder = _dir(data_dir)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if not path.stem.isdigit() or not _running(int(path.stem)):
            continue
        record = _read(path)
        if record is None:
            continue
        entry: dict[str, Any] = {"pid": int(path.stem), "state": record.get("state")}
        if record.get("state") == "warming":
            entry["warming_for_seconds"] = round(time.time() - float(record["since"]), 1)
            entry["expected_seconds"] = record.get("expected_seconds")
        else:
            entry["warm_up_seconds"] = record.get("warm_up_seconds")
            entry["still_warming"] = record.get("still_warming", [])
        found.append(entry)
    return found


def warming_message(entry: dict[str, Any]) -> str:
    """What /readyz says while the worker warms up: for how long so far, about how long left."""
    so_far = float(entry["warming_for_seconds"])
    expected = entry.get("expected_seconds")
    if expected is not None:
        left = f"about {max(float(expected) - so_far, 0.0):.0f} s left, as at its last start"
    else:
        left = "a first start imports the ML libraries and trains each model kind once"
    return (
        f"the worker is warming up ({so_far:.0f} s so far; {left}); "
        "jobs wait queued until it is ready"
    )


def worker_readiness(data_dir: Path) -> dict[str, Any]:
    """/readyz's part about the workers on this machine: each one's state, and while none is
    ready yet, a message saying the first jobs wait for the warm-up."""
    workers = local_workers(data_dir)
    if not workers:
        return {}
    found: dict[str, Any] = {"workers": workers}
    warming = [w for w in workers if w["state"] == "warming"]
    if warming and len(warming) == len(workers):
        found["message"] = warming_message(warming[0])
    return found
