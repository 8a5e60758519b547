"""The `ridgeline` command: serve, worker, migrate, keys."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from service import __version__
from service.client.cli import datasets_app, jobs_app, models_app, sweeps_app

if TYPE_CHECKING:
    # Imported where used: `ridgeline datasets list` and the other client commands need neither
    # the settings (pydantic-settings) nor the database.
    from service.config import Settings
    from service.db import Database

app = typer.Typer(
    help="Ridgeline: train regularized models over HTTP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
blobs_app = typer.Typer(help="Move blobs between stores; collect garbage.", no_args_is_help=True)
app.add_typer(blobs_app, name="blobs")
app.add_typer(datasets_app, name="datasets")
app.add_typer(jobs_app, name="jobs")
app.add_typer(sweeps_app, name="sweeps")
app.add_typer(models_app, name="models")

console = Console(stderr=True)


def _settings(**overrides: object) -> Settings:
    from service.config import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValueError as exc:
        console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def _setup_logging(settings: Settings) -> None:
    from service.observability import configure_logging

    configure_logging(settings.log_level, settings.json_logs)
    # Migration chatter would bury the banner a new user needs to read.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@contextmanager
def _quiet_interrupt(
    command: str, *, speak: bool = True, started: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) ends with one line at most, not a traceback or click's "Aborted!"."""
    try:
        yield
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        if speak and signum == signal.SIGINT:
            when = "" if started() else " while starting"
            console.print(f"ridgeline {command}: interrupted{when}; stopped")
        raise typer.Exit(128 + signum) from None


def _prepare_database(settings: Settings, *, auto_migrate: bool) -> None:
    """SQLite (embedded) migrates itself; Postgres must already be at head."""
    from service.db import Database
    from service.migrate import SchemaNotAtHead, check_schema, upgrade

    if auto_migrate and settings.is_sqlite:
        upgrade(settings.database_url)
    db = Database(settings)
    try:
        check_schema(db)
    except SchemaNotAtHead as exc:
        raise _fail(str(exc)) from exc
    finally:
        db.dispose()


@contextmanager
def _database(*, log: bool = False) -> Iterator[tuple[Settings, Database]]:
    """The settings and the (migrated) database of an admin command; a ServiceError ends the
    command with its detail, and the database is disposed of either way."""
    from service.db import Database
    from service.errors import ServiceError

    settings = _settings()
    if log:
        _setup_logging(settings)
    _prepare_database(settings, auto_migrate=True)
    db = Database(settings)
    try:
        yield settings, db
    except ServiceError as exc:
        raise _fail(exc.detail) from exc
    finally:
        db.dispose()


def _first_key(settings: Settings) -> str | None:
    """On the embedded default with no key yet, create one so a new user can authorize at once."""
    from service.auth.service import count_keys, create_key
    from service.db import Database

    if not settings.is_sqlite or settings.auth == "disabled":
        return None
    db = Database(settings)
    try:
        with db.transaction() as session:
            if count_keys(session):
                return None
            _, plaintext = create_key(session, name="default", tenant_id="default")
            return plaintext
    finally:
        db.dispose()


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, or a clear exit if the address is taken or not ours to bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off only on connections whose socket names TCP,
    # and with Nagle a keep-alive response's body waited out the client's delayed ACK (40 ms).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise _fail(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); another program may be "
            "using the port: choose another with `make serve PORT=8001` or "
            "`ridgeline serve --port 8001`"
        ) from exc
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


def _display_host(host: str) -> str:
    """Where a browser on this machine reaches an address bound to every interface."""
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _print_banner(settings: Settings, base: str, key: str | None) -> None:
    print(f"Ridgeline {__version__} on {settings.database_url.split('://')[0]}")
    print(f"  API:        {base}/v1")
    print(f"  Swagger UI: {base}/docs")
    print(f"  Dashboard:  {base}/")
    if key:
        print("  First start: created API key 'default'. It is shown only this once; keep it:")
        print(f"  API key:    {key}")
    elif settings.auth != "disabled":
        print("  API keys:   `ridgeline keys create --name NAME` makes one (prints it once)")
    sys.stdout.flush()


def _print_warming(settings: Settings) -> None:
    """The first job waits for the worker's warm-up: say so, and for about how long."""
    from service.worker.status import last_warm_up_seconds

    last = last_warm_up_seconds(settings.data_dir)
    about = (
        f"about {last:.0f} s, as at the last start"
        if last is not None
        else "first start: it imports the ML libraries and trains each model kind once"
    )
    print(f"  Worker:     warming up ({about}); jobs wait queued until it is ready")
    print("              (GET /readyz shows how far it is; a line here says when it is ready)")
    sys.stdout.flush()


# How `serve` runs uvicorn (bench/load.py serves its bare endpoint the same way). The asyncio
# loop, not uvloop: with the loop saturated, uvloop kept some connections waiting ten times the
# median (p99 370 ms against 57 ms with asyncio, at the same throughput).
UVICORN_SETTINGS: dict[str, Any] = {"timeout_graceful_shutdown": 10, "loop": "asyncio"}


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.", envvar="RIDGELINE_HOST")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to bind.", envvar="RIDGELINE_PORT")] = 8000,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run an embedded worker process.")
    ] = True,
) -> None:
    """Start the API (and, by default, one embedded worker in a child process)."""
    server: Any = None
    with _quiet_interrupt("serve", started=lambda: bool(server and server.started)):
        settings = _settings(host=host, port=port)
        _setup_logging(settings)
        _prepare_database(settings, auto_migrate=True)
        # Bind before anything is created or printed: a taken port must not use up the one-time
        # key (nor start a worker).
        listener = _bind(host, port)
        child: subprocess.Popen[bytes] | None = None
        if worker:  # first, so that its warm-up overlaps the API's start
            child = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "worker", "--parent-pid", str(os.getpid())],
                env={**os.environ, "RIDGELINE_DATABASE_URL": settings.database_url},
            )
        try:
            import uvicorn

            from service.main import create_app

            key = _first_key(settings)
            _print_banner(settings, f"http://{_display_host(host)}:{port}", key)
            if worker:
                _print_warming(settings)
            config = uvicorn.Config(
                create_app(settings),
                host=host,
                port=port,
                log_level=settings.log_level.lower(),
                **UVICORN_SETTINGS,
                log_config=None,  # keep configure_logging's JSON handler
                access_log=False,  # the observability middleware writes the access line
            )
            server = uvicorn.Server(config)
            server.run(sockets=[listener])
        finally:
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()


@app.command("worker")
def worker_command(
    parent_pid: Annotated[
        int | None, typer.Option(help="Exit when this process dies (used by `serve`).")
    ] = None,
) -> None:
    """Run a worker: claims queued jobs and trains them in child processes."""
    # Started by `serve`, the worker leaves the one line about Ctrl-C to serve.
    with _quiet_interrupt("worker", speak=parent_pid is None):
        from service.childproc import stop_forkservers
        from service.worker.forkservers import start_early

        settings = _settings()
        _setup_logging(settings)
        start_early(settings)  # its imports overlap ours and the schema check
        try:
            from service.worker.supervisor import run_worker

            _prepare_database(settings, auto_migrate=False)
        except BaseException:
            stop_forkservers()
            raise
        run_worker(settings, parent_pid=parent_pid)


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the database migrations (to head by default)."""
    from service.migrate import upgrade

    settings = _settings()
    _setup_logging(settings)
    upgrade(settings.database_url, revision)
    print(f"database migrated to {revision}")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A unique name for the key.")],
    tenant: Annotated[
        str | None, typer.Option(help="Tenant to join; by default the key gets its own.")
    ] = None,
) -> None:
    """Create a key; the key itself is printed once, alone on the last line."""
    from service.auth.service import create_key

    with _database() as (_, db), db.transaction() as session:
        key, plaintext = create_key(session, name=name, tenant_id=tenant)
        tenant_id = key.tenant_id
    print(f"created key {name!r} for tenant {tenant_id!r}; it is shown only once:")
    print(plaintext)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (names, tenants, state); the keys themselves are never stored."""
    from service.auth.service import list_keys

    with _database() as (_, db), db.transaction(write=False) as session:
        rows = [
            (k.name, k.tenant_id, k.prefix + "…", k.created_at, k.revoked_at)
            for k in list_keys(session)
        ]
    table = Table("name", "tenant", "key", "created", "state")
    for name, tenant_id, prefix, created_at, revoked_at in rows:
        state = f"revoked {revoked_at:%Y-%m-%d %H:%M}" if revoked_at else "active"
        table.add_row(name, tenant_id, prefix, f"{created_at:%Y-%m-%d %H:%M}", state)
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: every API process refuses it within seconds."""
    from service.auth.service import revoke_key

    with _database() as (_, db), db.transaction() as session:
        revoke_key(session, name=name)
    print(f"revoked key {name!r}")


def _object_key_of(session: Any, blob: Any) -> str:
    """Where a migrated blob lands: <tenant>/datasets/<id>/part-00000.parquet for a dataset,
    <tenant>/jobs/<id>/artifact.<kind> for an artifact, else <tenant>/blobs/<blob id>."""
    from sqlalchemy import select

    from service.blobs import artifact_key, dataset_key
    from service.datasets.models import Dataset
    from service.jobs.models import Job

    dataset_id = session.scalar(select(Dataset.id).where(Dataset.blob_id == blob.id))
    if dataset_id is not None:
        return dataset_key(blob.tenant_id, dataset_id)
    job = session.execute(
        select(Job.id, Job.artifact_kind).where(Job.artifact_blob_id == blob.id)
    ).first()
    if job is not None:
        return artifact_key(blob.tenant_id, job[0], job[1])
    return f"{blob.tenant_id}/blobs/{blob.id}"


@blobs_app.command("migrate")
def blobs_migrate(
    to: Annotated[
        str, typer.Option(help="Target store: database, s3://bucket/prefix or file:///path.")
    ],
) -> None:
    """Copy every blob into the store TO (sha256 checked), flip its row, remove the old copy.

    Safe to interrupt and run again: a blob's row flips only after its copy is checked.
    """
    from service.blobs import migrate_blobs

    with _database(log=True) as (_, db):
        try:
            report = migrate_blobs(
                db,
                to=to,
                key_of=_object_key_of,
                progress=lambda blob_id, size: print(f"moved blob {blob_id} ({size:,} bytes)"),
            )
        except ValueError as exc:
            raise _fail(str(exc)) from exc
    print(f"moved {report.moved} blob(s), {report.bytes:,} bytes, to {to}")


@blobs_app.command("gc")
def blobs_gc(
    older_than: Annotated[
        float | None,
        typer.Option(help="Seconds; default RIDGELINE_STALE_UPLOAD_SECONDS."),
    ] = None,
) -> None:
    """Remove objects no blob row claims, and blobs whose writer died, once they are stale."""
    from datetime import timedelta

    from service.blobs import collect_garbage

    with _database(log=True) as (settings, db):
        seconds = settings.stale_upload_seconds if older_than is None else older_than
        report = collect_garbage(db, older_than=timedelta(seconds=seconds))
    for uri in report.orphan_objects:
        print(f"removed {uri}")
    print(
        f"removed {len(report.orphan_objects)} unclaimed object(s) and "
        f"{report.incomplete_rows} interrupted blob(s)"
    )


if __name__ == "__main__":
    app()
