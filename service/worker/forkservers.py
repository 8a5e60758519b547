"""The worker's two forkservers, and which one an attempt runs on. Light to import: the worker
starts the quick one before its own imports, so that they overlap its warm-up."""

from __future__ import annotations

from service.childproc import WarmServer
from service.config import Settings
from service.worker.late import LATE_KINDS

_started: tuple[WarmServer, WarmServer] | None = None


def warm_servers(settings: Settings) -> tuple[WarmServer, WarmServer]:
    """Two forkservers with numpy, scikit-learn, pyarrow and torch imported: a quick one without
    the late kinds' warm-up (see warming.LATE_KINDS), started now, and the full one, started
    once the quick one is ready (both at once took longer on a busy 2-core machine)."""

    # Plugins first, so a kind they register is known to the warm-up and to every child.
    def server(name: str, module: str) -> WarmServer:
        modules = [*settings.plugins, module, *settings.worker_plugins]
        return WarmServer(name, [*modules, "service.worker.preload_done"])

    full = server("full", "service.worker.preload")
    quick = server("quick", "service.worker.preload_quick") if settings.quick_warm_up else full
    quick.start()
    return quick, full


def start_early(settings: Settings) -> None:
    """Start the forkservers now; the worker takes them when its own start-up is done."""
    global _started
    _started = warm_servers(settings)


def take_servers(settings: Settings) -> tuple[WarmServer, WarmServer]:
    """The forkservers started early, or new ones."""
    global _started
    servers, _started = _started or warm_servers(settings), None
    return servers


def needs_full(payload: dict[str, object]) -> bool:
    """Whether an attempt needs the full forkserver: its model is of a late kind."""
    spec = payload.get("spec")
    model = spec.get("model") if isinstance(spec, dict) else None
    return isinstance(model, dict) and model.get("kind") in LATE_KINDS
