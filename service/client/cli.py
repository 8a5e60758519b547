"""Command line for people, talking to a remote Ridgeline through its HTTP API.

``datasets_app``, ``jobs_app`` and ``sweeps_app`` are typer apps (``ridgeline datasets ...``);
``app`` bundles them for ``python -m service.client``. The service is found through
RIDGELINE_URL and RIDGELINE_API_KEY, or ``--url`` and ``--api-key``. Every command takes
``--json`` to print the raw answer for scripts. An error answer prints the problem's detail
(and its field errors) and exits 1; a usage error exits 2.

This module imports only the client, typer and rich, so it starts fast.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, cast

import typer
from pydantic import BaseModel
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table

from service.client import (
    Aliases,
    Client,
    Event,
    Job,
    Metrics,
    ModelVersion,
    Prediction,
    Preview,
    RegisteredModel,
    RidgelineError,
    Sweep,
)

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["app", "datasets_app", "jobs_app", "models_app", "sweeps_app"]

T = TypeVar("T")


def _group(name: str, help: str) -> typer.Typer:
    """A command group (``ridgeline NAME ...``) that shows its help when given no command."""
    return typer.Typer(name=name, help=help, no_args_is_help=True, pretty_exceptions_enable=False)


datasets_app = _group("datasets", "Upload, inspect and download datasets.")
jobs_app = _group("jobs", "Submit, watch and use training jobs.")
sweeps_app = _group("sweeps", "Hyperparameter sweeps and their leaderboards.")
models_app = _group(
    "models", "Registered models: versions, aliases, predictions by name, model cards."
)
app = typer.Typer(
    help="Ridgeline client: work with a remote Ridgeline service "
    "(RIDGELINE_URL, RIDGELINE_API_KEY).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(datasets_app, name="datasets")
app.add_typer(jobs_app, name="jobs")
app.add_typer(sweeps_app, name="sweeps")
app.add_typer(models_app, name="models")

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="RIDGELINE_URL",
        help="The service's base URL (default http://127.0.0.1:8000).",
        show_default=False,
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="RIDGELINE_API_KEY",
        help="API key (better through RIDGELINE_API_KEY than on the command line).",
        show_default=False,
        show_envvar=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the raw JSON (for scripts).")]
IdArgument = Annotated[str, typer.Argument(metavar="ID", help="The id.", show_default=False)]


def _stdout() -> Console:
    # Piped output is for grep and people's scrollback, not an 80-column terminal: ids and
    # statuses must come out whole.
    wide = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return Console(highlight=False, width=160 if wide else None)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def make_client(url: str | None, api_key: str | None) -> Client:
    """The client the commands use (tests replace this to inject a transport)."""
    return Client.from_env(base_url=url, api_key=api_key)


def _print_error(exc: RidgelineError, as_json: bool) -> None:
    err = _stderr()
    label = f"{exc.status} {exc.title}" if exc.status else exc.title
    messages = [str(item.get("message", "")) for item in exc.errors]
    if messages and all(m in exc.detail for m in messages):
        # The detail only joins the field errors listed below: say it once.
        err.print(f"[bold red]error:[/bold red] {escape(label)}")
    else:
        err.print(f"[bold red]error:[/bold red] {escape(label)}: {escape(exc.detail)}")
    for item in exc.errors:
        field = item.get("field", "")
        message = item.get("message", item)
        err.print(f"  [red]•[/red] {escape(str(field))}: {escape(str(message))}")
    if exc.status == 401:
        err.print("  set RIDGELINE_API_KEY (or --api-key) to a valid key")
    if as_json:
        _echo_json(exc.to_dict())


def _echo_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _print(*renderables: RenderableType | None) -> None:
    """Each table or line on stdout, in order; None (a table with nothing to show) is skipped."""
    out = _stdout()
    for renderable in renderables:
        if renderable is not None:
            out.print(renderable)


@dataclass(frozen=True)
class Remote:
    """The options every command that talks to the service takes: --url, --api-key, --json."""

    url: str | None
    api_key: str | None
    as_json: bool

    @contextmanager
    def session(self) -> Iterator[Client]:
        """A client; an error answer prints its detail and exits 1 (no traceback)."""
        try:
            with make_client(self.url, self.api_key) as client:
                yield client
        except RidgelineError as exc:
            _print_error(exc, self.as_json)
            raise typer.Exit(1) from None
        except OSError as exc:
            _stderr().print(f"[bold red]error:[/bold red] {escape(str(exc))}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            _stderr().print("interrupted")
            raise typer.Exit(130) from None

    def report(self, value: Any, text: str) -> None:
        """One outcome: JSON on stdout for scripts (--json), else a line for people."""
        if self.as_json:
            _echo_json(value)
        else:
            _stdout().print(text)

    def show(self, value: T, *views: Callable[[T], RenderableType | None]) -> None:
        """The answer as JSON (--json), else each view of it (a table) for people."""
        if self.as_json:
            _echo_json(value)
        else:
            _print(*[view(value) for view in views])

    def saved(self, path: Path, note: str = "") -> None:
        """A download's outcome: where it went and its size."""
        size = path.stat().st_size
        self.report({"path": str(path), "bytes": size}, f"saved {path} ({_size(size)}{note})")


#: --url, --api-key and --json, which ``_command`` adds to each command's own parameters.
_REMOTE_PARAMETERS = [
    inspect.Parameter("url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=UrlOption),
    inspect.Parameter(
        "api_key", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=KeyOption
    ),
    inspect.Parameter(
        "as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOption
    ),
]


def _command(group: typer.Typer, name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command that talks to the service: the function takes a Remote first, and
    its command line gains --url, --api-key and --json after its own options."""

    def register(func: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(func, eval_str=True)
        own = list(signature.parameters.values())[1:]

        @functools.wraps(func)
        def command(
            *args: Any, url: str | None = None, api_key: str | None = None, as_json: bool = False,
            **kwargs: Any,
        ) -> None:  # fmt: skip
            func(Remote(url, api_key, as_json), *args, **kwargs)

        parameters = [*own, *_REMOTE_PARAMETERS]
        command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        group.command(name)(command)
        return func

    return register


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _when(value: Any) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value is not None else "—"


def _read_json_file(path: Path, what: str) -> Any:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint=what) from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{path} is not valid JSON: {exc}", param_hint=what) from exc


def _read_json_spec(path: Path) -> dict[str, Any]:
    """A spec file (or '-': stdin) that holds a JSON object."""
    spec = _read_json_file(path, "SPEC.json")
    if not isinstance(spec, dict):
        raise typer.BadParameter("the spec is a JSON object", param_hint="SPEC.json")
    return spec


def _list_table(*columns: str) -> Table:
    """A list table whose first column holds ids, never shortened (people copy them)."""
    table = Table()
    table.add_column("id", no_wrap=True, min_width=36)
    for column in columns:
        table.add_column(column)
    return table


def _kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, escape(_fmt(value)))
    return table


# --- datasets ---------------------------------------------------------------------------------


def _columns_table(dataset: Any) -> Table:
    table = Table("column", "type", "missing", "unique", "min", "max", "mean")
    for col in dataset.columns:
        unique = _fmt(col.n_unique) + ("" if col.n_unique_exact in (None, True) else "≈")
        table.add_row(
            escape(col.name),
            col.dtype,
            _fmt(col.n_missing),
            unique,
            _fmt(col.min),
            _fmt(col.max),
            _fmt(col.mean),
        )
    return table


def _dataset_summary(dataset: Any) -> Table:
    return _kv_table(
        f"dataset {dataset.id}",
        [
            ("name", dataset.name),
            ("format", dataset.format),
            ("rows", dataset.n_rows),
            ("columns", dataset.n_columns),
            ("size", _size(dataset.size_bytes)),
            ("stored", _size(dataset.stored_bytes)),
            ("delimiter", dataset.delimiter),
            ("sha256", dataset.sha256),
            ("created", _when(dataset.created_at)),
        ],
    )


LimitOption = Annotated[int, typer.Option(min=1, max=200, help="Page size.")]
CursorOption = Annotated[str | None, typer.Option(help="next_cursor of the previous page.")]
OutOption = Annotated[Path | None, typer.Option("--out", help="File or directory; default: here.")]


def _print_page(table: Table, next_cursor: str | None) -> None:
    """A list's table, and how to ask for the next page when there is one."""
    out = _stdout()
    out.print(table)
    if next_cursor:
        out.print(f"more: --cursor {next_cursor}")


def _preview_table(preview: Preview) -> Table:
    table = Table(*[escape(c) for c in preview.columns])
    for row in preview.rows:
        table.add_row(*[escape(_fmt(row.get(c))) for c in preview.columns])
    return table


@_command(datasets_app, "upload")
def datasets_upload(
    remote: Remote,
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="A CSV or Parquet file."),
    ],
    name: Annotated[str | None, typer.Option(help="Defaults to the file name.")] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="CSV delimiter (',', ';', '|', 'tab'); detected if unset.")
    ] = None,
) -> None:
    """Upload a dataset, streamed from disk with a progress bar."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with remote.session() as client:
        if remote.as_json:
            _echo_json(client.upload(file, name=name, delimiter=delimiter))
            return
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=_stderr(),
        )
        task = progress.add_task(f"uploading {file.name}", total=file.stat().st_size)
        with progress:
            dataset = client.upload(
                file,
                name=name,
                delimiter=delimiter,
                progress=lambda sent, total: progress.update(task, completed=sent, total=total),
            )
        _print(_dataset_summary(dataset), _columns_table(dataset))


@_command(datasets_app, "list")
def datasets_list(
    remote: Remote,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Every page.")] = False,
) -> None:
    """List datasets, newest first."""
    with remote.session() as client:
        if all_pages:
            items, next_cursor = list(client.iter_datasets(page_size=limit)), None
        else:
            page = client.list_datasets(limit=limit, cursor=cursor)
            items, next_cursor = page.items, page.next_cursor
        if remote.as_json:
            _echo_json(
                {"items": [d.model_dump(mode="json") for d in items], "next_cursor": next_cursor}
            )
            return
        table = _list_table("name", "rows", "cols", "size", "created")
        for d in items:
            table.add_row(
                d.id, escape(d.name), _fmt(d.n_rows), _fmt(d.n_columns), _size(d.size_bytes),
                _when(d.created_at),
            )  # fmt: skip
        _print_page(table, next_cursor)


@_command(datasets_app, "show")
def datasets_show(remote: Remote, dataset_id: IdArgument) -> None:
    """A dataset's schema and per-column statistics."""
    with remote.session() as client:
        remote.show(client.get_dataset(dataset_id), _dataset_summary, _columns_table)


@_command(datasets_app, "preview")
def datasets_preview(
    remote: Remote,
    dataset_id: IdArgument,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rows to show.")] = 20,
) -> None:
    """The first rows of a dataset."""
    with remote.session() as client:
        remote.show(client.preview(dataset_id, limit=limit), _preview_table)


@_command(datasets_app, "download")
def datasets_download(
    remote: Remote,
    dataset_id: IdArgument,
    out: OutOption = None,
    format: Annotated[str, typer.Option(help="csv or parquet.")] = "csv",
) -> None:
    """Download a dataset as CSV or Parquet."""
    if format not in ("csv", "parquet"):
        raise typer.BadParameter("csv or parquet", param_hint="--format")
    with remote.session() as client:
        remote.saved(client.download(dataset_id, out, format))  # type: ignore[arg-type]


@_command(datasets_app, "delete")
def datasets_delete(remote: Remote, dataset_id: IdArgument) -> None:
    """Delete a dataset (refused while a queued or running job uses it)."""
    with remote.session() as client:
        client.delete_dataset(dataset_id)
        remote.report({"deleted": dataset_id}, f"deleted dataset {dataset_id}")


# --- jobs -------------------------------------------------------------------------------------


def _job_table(job: Job) -> Table:
    spec = job.spec or {}
    model = spec.get("model") or {}
    reg = spec.get("regularization") or {}
    rows: list[tuple[str, Any]] = [
        ("name", job.name),
        ("status", job.status),
        ("progress", f"{job.progress:.0%}"),
        ("dataset", job.dataset_id),
        ("task", job.task),
        ("model", model.get("kind")),
        ("penalty", f"{reg.get('penalty', 'l2')} (strength {_fmt(reg.get('strength'))})"),
        ("attempt", f"{job.attempt} of {_fmt(job.max_attempts)}"),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
    ]
    if job.error:
        rows.append(("error", job.error))
    if job.artifact:
        rows.append(("artifact", f"{job.artifact.kind} sha256 {job.artifact.sha256}"))
    if job.native_params:
        rows.append(("native", job.native_params))
    return _kv_table(f"job {job.id}", rows)


def _final_table(metrics: Metrics) -> Table | None:
    final = metrics.final or {}
    splits = [s for s in ("train", "validation", "test") if isinstance(final.get(s), dict)]
    if not splits:
        return None
    table = Table("metric", "better", *splits, title="final metrics", title_justify="left")
    names: list[str] = []
    for split in splits:
        names += [k for k in final[split] if k not in names]
    for name in names:
        better = _direction(metrics.greater_is_better(name)).removesuffix(" is better")
        table.add_row(name, better, *[_fmt(final[s].get(name)) for s in splits])
    return table


def _gap_table(metrics: Metrics) -> Table | None:
    gap = metrics.generalization_gap
    if not gap:
        return None
    table = Table(
        "measure", "gap", title="generalization gap (positive: overfitting)", title_justify="left"
    )
    metric = gap.get("metric", "score")
    table.add_row(f"{metric}: train - validation", _fmt(gap.get("score")))
    table.add_row("loss: validation - train", _fmt(gap.get("loss")))
    return table


def _print_summary(job: Job, metrics: Metrics) -> None:
    out = _stdout()
    final = _final_table(metrics)
    if final is not None:
        out.print(final)
    gap = _gap_table(metrics)
    if gap is not None:
        out.print(gap)
    facts = []
    if metrics.best_epoch is not None:
        facts.append(f"best epoch {metrics.best_epoch}")
    weights = metrics.weights or {}
    if weights.get("sparsity") is not None:
        facts.append(
            f"sparsity {weights['sparsity']:.1%} ({weights.get('n_zero')} of "
            f"{weights.get('n_weights')} weights are 0)"
        )
    if metrics.fit_seconds is not None:
        facts.append(f"fit in {metrics.fit_seconds:.2f} s")
    if facts:
        out.print("; ".join(facts))
    diagnosis = metrics.diagnosis
    if diagnosis:
        _print_diagnosis(diagnosis)


def _as_lines(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _print_diagnosis(diagnosis: dict[str, Any]) -> None:
    """The verdict, the reasons, and what to change."""
    out = _stdout()
    verdict = diagnosis.get("verdict") or diagnosis.get("label") or diagnosis.get("status")
    out.print(f"[bold]diagnosis:[/bold] {escape(_fmt(verdict))}")
    for key in ("reasons", "reason", "message", "detail"):
        for reason in _as_lines(diagnosis.get(key)):
            out.print(f"  because {escape(_fmt(reason))}")
    for item in _as_lines(diagnosis.get("suggestions")):
        if isinstance(item, dict):
            text = str(item.get("message") or "")
            if not text and item.get("field") is not None:
                text = f"set {item['field']} to {_fmt(item.get('value'))}"
            text = text or _fmt(item)
        else:
            text = _fmt(item)
        out.print(f"  → {escape(text)}")


def _live_progress(description: str, *fields: str) -> Progress:
    """A live bar on stderr: spinner, description, bar, percentage, the fields, time elapsed."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]{description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        *[TextColumn(field) for field in fields],
        TimeElapsedColumn(),
        console=_stderr(),
    )


def _watch_job(client: Client, job: Job) -> Job:
    """Follow the job's events with a live bar (epoch, train and validation loss)."""
    model = (job.spec or {}).get("model") or {}
    epochs = model.get("epochs")
    progress = _live_progress("{task.description}", "{task.fields[epoch]}", "{task.fields[losses]}")
    task = progress.add_task(job.status, total=1.0, epoch="", losses="")

    def on_event(event: Event) -> None:
        data = event.data
        if event.event == "status" and event.status:
            progress.update(task, description=event.status)
            if event.status == "succeeded":
                progress.update(task, completed=1.0)
        elif event.event == "progress" and isinstance(data.get("progress"), int | float):
            progress.update(task, completed=float(data["progress"]))
        elif event.event == "epoch":
            of = f"/{epochs}" if epochs else ""
            losses = (
                f"train loss {_fmt(data.get('train_loss'))}  val loss {_fmt(data.get('val_loss'))}"
            )
            progress.update(task, epoch=f"epoch {data.get('epoch')}{of}", losses=losses)

    with progress:
        return client.wait(job.id, on_event=on_event)


def _finish_watch(client: Client, job: Job, as_json: bool) -> None:
    if job.status == "succeeded":
        metrics = client.metrics(job.id)
        if as_json:
            _echo_json(
                {"job": job.model_dump(mode="json"), "metrics": metrics.model_dump(mode="json")}
            )
        else:
            _stdout().print(f"job {job.id} [green]succeeded[/green]")
            _print_summary(job, metrics)
        return
    if as_json:
        _echo_json({"job": job.model_dump(mode="json")})
    reason = f": {job.error}" if job.error else ""
    _stderr().print(f"[bold red]job {job.id} {job.status}[/bold red]{escape(reason)}")
    raise typer.Exit(1)


@_command(jobs_app, "submit")
def jobs_submit(
    remote: Remote,
    spec_file: Annotated[
        Path, typer.Argument(metavar="SPEC.json", help="The training spec as JSON ('-': stdin).")
    ],
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Dataset id (overrides the spec's).")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow the training live, then summarise it.")
    ] = False,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Makes re-running this command safe (same job back).")
    ] = None,
) -> None:
    """Queue a training job from a JSON spec."""
    spec = _read_json_spec(spec_file)
    if dataset is None and "dataset_id" not in spec:
        raise typer.BadParameter(
            "the spec has no dataset_id; pass --dataset ID", param_hint="--dataset"
        )
    with remote.session() as client:
        job = client.submit(spec, idempotency_key, dataset_id=dataset)
        if not watch:
            remote.report(job, f"job {job.id} {job.status}")
            return
        if not remote.as_json:
            _stderr().print(f"job {job.id} {job.status}")
            job = _watch_job(client, job)
        else:
            job = client.wait(job.id)
        _finish_watch(client, job, remote.as_json)


@_command(jobs_app, "watch")
def jobs_watch(remote: Remote, job_id: IdArgument) -> None:
    """Follow a job until it ends, then summarise it."""
    with remote.session() as client:
        job = client.get_job(job_id)
        job = client.wait(job.id) if remote.as_json else _watch_job(client, job)
        _finish_watch(client, job, remote.as_json)


TagOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", help="key:value; repeat for several (all must match).", show_default=False
    ),
]


def _tags(values: list[str] | None) -> dict[str, str] | None:
    """--tag key:value options as a dict (None without any)."""
    tags: dict[str, str] = {}
    for value in values or []:
        key, sep, text = value.partition(":")
        if not sep or not key:
            raise typer.BadParameter(f"{value!r} is not key:value", param_hint="--tag")
        tags[key] = text
    return tags or None


def _final_figure(job: Job, order_by: str) -> Any:
    split, _, name = order_by.partition(".")
    final = (job.summary or {}).get("final") or {}
    return (final.get(split) or {}).get(name)


@_command(jobs_app, "list")
def jobs_list(
    remote: Remote,
    status: Annotated[
        str | None,
        typer.Option(help="queued, running, succeeded, failed or cancelled."),
    ] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Only this dataset's.")] = None,
    tag: TagOption = None,
    order_by: Annotated[
        str | None,
        typer.Option("--order-by", help="Rank by a final metric: validation.log_loss, test.r2, …"),
    ] = None,
    order: Annotated[
        str | None, typer.Option(help="asc or desc (with --order-by; default best first).")
    ] = None,
    trials: Annotated[
        bool, typer.Option("--trials", help="Also list the trial jobs sweeps ran.")
    ] = False,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
) -> None:
    """List jobs, newest first, or ranked by a final metric (--order-by); sweeps' trials hidden."""
    if order not in (None, "asc", "desc"):
        raise typer.BadParameter("asc or desc", param_hint="--order")
    direction = cast(Literal["asc", "desc"] | None, order)
    with remote.session() as client:
        page = client.list_jobs(
            status=status, dataset_id=dataset, limit=limit, cursor=cursor, tags=_tags(tag),
            order_by=order_by, order=direction, include_trials=trials,
        )  # fmt: skip
        if remote.as_json:
            _echo_json(page)
            return
        extra = (order_by,) if order_by else ()
        table = _list_table("name", "status", "progress", "model", "task", *extra, "created")
        for job in page.items:
            kind = ((job.spec or {}).get("model") or {}).get("kind", "")
            figure = (_fmt(_final_figure(job, order_by)),) if order_by else ()
            table.add_row(
                job.id, escape(job.name or ""), job.status, f"{job.progress:.0%}", kind,
                _fmt(job.task), *figure, _when(job.created_at),
            )  # fmt: skip
        _print_page(table, page.next_cursor)


@_command(jobs_app, "show")
def jobs_show(remote: Remote, job_id: IdArgument) -> None:
    """A job's status, progress, attempts and mapped parameters."""
    with remote.session() as client:
        remote.show(client.get_job(job_id), _job_table)


@_command(jobs_app, "cancel")
def jobs_cancel(remote: Remote, job_id: IdArgument) -> None:
    """Cancel a queued or running job."""
    with remote.session() as client:
        job = client.cancel(job_id)
        remote.report(job, f"job {job.id} {job.status} (cancel requested)")


@_command(jobs_app, "delete")
def jobs_delete(remote: Remote, job_id: IdArgument) -> None:
    """Delete a finished job and its artifact."""
    with remote.session() as client:
        client.delete_job(job_id)
        remote.report({"deleted": job_id}, f"deleted job {job_id}")


def _history_table(metrics: Metrics) -> Table | None:
    if not metrics.history:
        return None
    table = Table(
        "epoch", "train loss", "val loss", "train metric", "val metric",
        title="history", title_justify="left",
    )  # fmt: skip
    for e in metrics.history:
        mark = " ★" if e.epoch == metrics.best_epoch else ""
        table.add_row(
            f"{e.epoch}{mark}", _fmt(e.train_loss), _fmt(e.val_loss),
            _fmt(e.train_metric), _fmt(e.val_metric),
        )  # fmt: skip
    return table


@_command(jobs_app, "metrics")
def jobs_metrics(remote: Remote, job_id: IdArgument) -> None:
    """Final train/validation metrics, the generalization gap and the per-epoch history."""
    with remote.session() as client:
        metrics = client.metrics(job_id)
        remote.show(metrics, _history_table)
        if remote.as_json:
            return
        if metrics.final is None:
            _stdout().print(f"job {metrics.job_id} is {metrics.status}: no final metrics yet")
            return
        _print_summary(client.get_job(job_id), metrics)


@_command(jobs_app, "download")
def jobs_download(remote: Remote, job_id: IdArgument, out: OutOption = None) -> None:
    """Download the model artifact, checked against its sha256."""
    with remote.session() as client:
        remote.saved(client.download_artifact(job_id, out), ", sha256 verified")


RowsOption = Annotated[
    str | None,
    typer.Option(
        "--rows", help='JSON records: \'[{"x": 1}]\' (or {"rows": [...]}; @FILE reads a file).'
    ),
]
CsvOption = Annotated[
    Path | None,
    typer.Option("--csv", exists=True, dir_okay=False, help="A CSV file to score."),
]


def _records(rows: str | None, csv: Path | None) -> list[dict[str, Any]]:
    """The rows to score from --rows (JSON, or @FILE); [] when --csv is given instead."""
    if (rows is None) == (csv is None):
        raise typer.BadParameter("give exactly one of --rows and --csv", param_hint="--rows/--csv")
    if rows is None:
        return []
    text = rows
    if rows.startswith("@"):
        text = json.dumps(_read_json_file(Path(rows[1:]), "--rows"))
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--rows") from exc
    if isinstance(parsed, dict) and "rows" in parsed:
        parsed = parsed["rows"]
    if isinstance(parsed, dict):
        parsed = [parsed]
    if not isinstance(parsed, list) or not all(isinstance(r, dict) for r in parsed):
        raise typer.BadParameter("a list of JSON objects, one per row", param_hint="--rows")
    return parsed


def _prediction_table(result: Prediction) -> Table:
    classes = [str(c) for c in (result.classes or [])] if result.probabilities else []
    title = None if result.model_version is None else f"version {result.model_version}"
    table = Table("row", "prediction", *[f"P({escape(c)})" for c in classes], title=title)
    for i, prediction in enumerate(result.predictions):
        probs = result.probabilities[i] if result.probabilities else {}
        table.add_row(str(i), escape(_fmt(prediction)), *[_fmt(probs.get(c)) for c in classes])
    return table


@_command(jobs_app, "predict")
def jobs_predict(
    remote: Remote,
    job_id: IdArgument,
    rows: RowsOption = None,
    csv: CsvOption = None,
) -> None:
    """Predict with a trained model (--rows JSON or --csv FILE)."""
    records = _records(rows, csv)
    with remote.session() as client:
        result = client.predict(job_id, records) if csv is None else client.predict_csv(job_id, csv)
        remote.show(result, _prediction_table)


# --- sweeps -----------------------------------------------------------------------------------

#: A leaderboard row's configuration, as SweepRead's LeaderboardRow names it.
_CONFIG_KEYS = ("penalty", "strength", "l1_ratio", "dropout")


def _direction(greater: bool | None) -> str:
    """The server's word on which way a metric is better, for a table."""
    if greater is None:
        return ""
    return "higher is better" if greater else "lower is better"


def _is_best(row: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """The row whose configuration the server named the winner."""
    if not best:
        return False
    return all(row.get(k) == best.get(k) for k in _CONFIG_KEYS)


def sorted_leaderboard(sweep: Sweep) -> list[tuple[bool, dict[str, Any]]]:
    """(is best, row), best first by the rows' cross-validated ``mean`` in the direction the
    server gives (its own order where it gives none); rows without a mean last."""
    rows = list(sweep.leaderboard)
    greater = sweep.ranks_greater_first
    if greater is not None:
        sign = -1.0 if greater else 1.0

        def key(row: dict[str, Any]) -> tuple[int, float]:
            mean = row.get("mean")
            return (1, 0.0) if mean is None or math.isnan(mean) else (0, sign * float(mean))

        rows.sort(key=key)
    return [(_is_best(row, sweep.best), row) for row in rows]


def _leaderboard_table(sweep: Sweep) -> Table:
    metric = sweep.metric or "metric"
    table = Table(
        "", "#", f"{metric} (mean)", "std", "train mean", "folds", *_CONFIG_KEYS,
        title=f"leaderboard (by {metric})", title_justify="left",
    )  # fmt: skip
    for rank, (best, row) in enumerate(sorted_leaderboard(sweep), start=1):
        table.add_row(
            "★" if best else "", str(rank), _fmt(row.get("mean")), _fmt(row.get("std")),
            _fmt(row.get("train_mean")), _fmt(row.get("n_folds")),
            *[escape(_fmt(row.get(k))) for k in _CONFIG_KEYS],
            style="bold green" if best else None,
        )  # fmt: skip
    return table


def _best_rows(best: dict[str, Any], metric: str) -> list[tuple[str, Any]]:
    """The winning configuration and its scores: cross-validated, train, held-out test."""
    rows: list[tuple[str, Any]] = []
    config = [f"{k} {_fmt(best[k])}" for k in _CONFIG_KEYS if best.get(k) is not None]
    if config:
        rows.append(("best", ", ".join(config)))
    if best.get("cv_mean") is not None:
        rows.append((f"best cv {metric}", f"{_fmt(best['cv_mean'])} ± {_fmt(best.get('cv_std'))}"))
    if best.get("train_mean") is not None:
        rows.append((f"best train {metric}", best["train_mean"]))
    if best.get("test") is not None:
        rows.append((f"best test {metric}", best["test"]))
    return rows


def _sweep_table(sweep: Sweep) -> Table:
    rows: list[tuple[str, Any]] = [("status", sweep.status)]
    if sweep.progress is not None:
        rows.append(("progress", f"{sweep.progress:.0%}"))
    metric = sweep.metric
    if metric:
        rows.append(("metric", metric))
    if sweep.ranks_greater_first is not None:
        rows.append(("ranking", _direction(sweep.ranks_greater_first)))
    if sweep.n_configs is not None:
        rows.append(("configurations", f"{sweep.n_configs} in {sweep.n_jobs} jobs"))
    best = sweep.best or {}
    rows.extend(_best_rows(best, metric or "score"))
    if sweep.refit_job_id:
        refit = sweep.refit_job_id
        if best.get("refit_status"):
            refit += f" ({best['refit_status']})"
        rows.append(("refit job", refit))
    if sweep.failed_trials:
        rows.append(("failed trials", len(sweep.failed_trials)))
    if sweep.error:
        rows.append(("error", sweep.error))
    return _kv_table(f"sweep {sweep.id}", rows)


#: What `sweeps show` and `sweeps submit` print: the sweep, then its leaderboard if it has one.
_SWEEP_VIEWS = (_sweep_table, lambda s: _leaderboard_table(s) if s.leaderboard else None)


@_command(sweeps_app, "submit")
def sweeps_submit(
    remote: Remote,
    spec_file: Annotated[
        Path, typer.Argument(metavar="SPEC.json", help="The sweep spec as JSON ('-': stdin).")
    ],
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow it until it ends, then show the leaderboard.")
    ] = False,
) -> None:
    """Start a hyperparameter sweep from a JSON spec."""
    spec = _read_json_spec(spec_file)
    with remote.session() as client:
        sweep = client.submit_sweep(spec)
        if watch:
            sweep = (
                client.wait_sweep(sweep.id, include_refit=True)
                if remote.as_json
                else _watch_sweep(client, sweep)
            )
        remote.show(sweep, *_SWEEP_VIEWS)
        if watch and sweep.status != "succeeded":
            raise typer.Exit(1)


def _watch_sweep(client: Client, sweep: Sweep) -> Sweep:
    progress = _live_progress("sweep {task.description}")
    task = progress.add_task(sweep.status, total=1.0)

    def on_update(current: Sweep) -> None:
        status = current.status
        if current.done and current.refit_job_id:
            status = f"{status}, refitting the best"
        progress.update(task, description=status, completed=current.progress or 0.0)

    with progress:
        return client.wait_sweep(
            sweep.id, on_update=on_update, include_refit=True, poll_interval=1.0
        )


@_command(sweeps_app, "show")
def sweeps_show(remote: Remote, sweep_id: IdArgument) -> None:
    """A sweep's status and its leaderboard, best first (marked ★)."""
    with remote.session() as client:
        remote.show(client.get_sweep(sweep_id), *_SWEEP_VIEWS)


@_command(sweeps_app, "list")
def sweeps_list(
    remote: Remote,
    tag: TagOption = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
) -> None:
    """List sweeps, newest first."""
    with remote.session() as client:
        page = client.list_sweeps(limit=limit, cursor=cursor, tags=_tags(tag))
        if remote.as_json:
            _echo_json(page)
            return
        table = _list_table("status", "progress", "metric", "best", "created")
        for sweep in page.items:
            best = ranked[0][1] if (ranked := sorted_leaderboard(sweep)) else {}
            table.add_row(
                sweep.id, sweep.status, _pct(sweep.progress), _fmt(sweep.metric),
                _fmt(best.get("mean")), _when(sweep.created_at),
            )  # fmt: skip
        _print_page(table, page.next_cursor)


@_command(sweeps_app, "cancel")
def sweeps_cancel(remote: Remote, sweep_id: IdArgument) -> None:
    """Cancel a sweep and its remaining jobs."""
    with remote.session() as client:
        sweep = client.cancel_sweep(sweep_id)
        remote.report(sweep, f"sweep {sweep.id} {sweep.status}")


# --- registered models ------------------------------------------------------------------------

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The model's name.")]
RefArgument = Annotated[
    str, typer.Argument(metavar="NAME[@ALIAS]", help="cancer@champion, or cancer with --version.")
]
VersionArgument = Annotated[int, typer.Argument(metavar="VERSION", min=1, help="A version number.")]
VersionOption = Annotated[
    int | None, typer.Option("--version", min=1, help="A version number instead of an alias.")
]


def _ref(ref: str, version: int | None) -> tuple[str, str | None, int | None]:
    """NAME@ALIAS, or NAME with --version: (name, alias, version)."""
    name, sep, alias = ref.partition("@")
    if bool(sep) == (version is not None) or (sep and not alias):
        raise typer.BadParameter(
            "write NAME@ALIAS, or NAME with --version N", param_hint="NAME[@ALIAS]"
        )
    return name, alias or None, version


def _model_table(model: RegisteredModel) -> Table:
    aliases = ", ".join(f"{a} → {v}" for a, v in sorted(model.aliases.items())) or None
    tags = ", ".join(f"{k}:{v}" for k, v in sorted(model.tags.items())) or None
    return _kv_table(
        f"model {model.name}",
        [
            ("description", model.description),
            ("latest version", model.latest_version),
            ("aliases", aliases),
            ("tags", tags),
            ("created", _when(model.created_at)),
        ],
    )


def _versions_table(versions: list[ModelVersion]) -> Table:
    table = Table("version", "job", "aliases", "validation", "registered", "by")
    for v in versions:
        final = ((v.metrics or {}).get("final") or {}).get("validation") or {}
        score = next((f"{k} {_fmt(final[k])}" for k in ("accuracy", "r2") if k in final), "—")
        table.add_row(
            str(v.version), v.job_id, ", ".join(v.aliases) or "—", score,
            _when(v.created_at), escape(v.created_by or ""),
        )  # fmt: skip
    return table


@_command(models_app, "create")
def models_create(
    remote: Remote,
    name: NameArgument,
    description: Annotated[str | None, typer.Option(help="What the model is for.")] = None,
    tag: TagOption = None,
) -> None:
    """Create a registered model (a name other services call)."""
    with remote.session() as client:
        model = client.create_model(name, description, _tags(tag))
        remote.report(model, f"created model {model.name}")


@_command(models_app, "list")
def models_list(
    remote: Remote,
    tag: TagOption = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
) -> None:
    """List registered models, newest first."""
    with remote.session() as client:
        page = client.list_models(limit, cursor, tags=_tags(tag))
        if remote.as_json:
            _echo_json(page)
            return
        table = Table("name", "latest", "aliases", "description", "created")
        for m in page.items:
            aliases = ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items()))
            table.add_row(
                escape(m.name), _fmt(m.latest_version), aliases or "—",
                escape(m.description or ""), _when(m.created_at),
            )  # fmt: skip
        _print_page(table, page.next_cursor)


@_command(models_app, "show")
def models_show(remote: Remote, name: NameArgument) -> None:
    """A model, its aliases and its versions (newest first)."""
    with remote.session() as client:
        model = client.get_model(name)
        versions = client.list_versions(name, limit=200)
        if remote.as_json:
            _echo_json({"model": model.model_dump(mode="json"), "versions": versions.items})
            return
        _print(_model_table(model), _versions_table(versions.items))


@_command(models_app, "delete")
def models_delete(remote: Remote, name: NameArgument) -> None:
    """Delete a model that has no versions left."""
    with remote.session() as client:
        client.delete_model(name)
        remote.report({"deleted": name}, f"deleted model {name}")


@_command(models_app, "register")
def models_register(
    remote: Remote,
    name: NameArgument,
    job_id: Annotated[str, typer.Argument(metavar="JOB_ID", help="A succeeded job.")],
    description: Annotated[str | None, typer.Option(help="What is new in it.")] = None,
) -> None:
    """Register a succeeded job as the model's next version."""
    with remote.session() as client:
        version = client.register(name, job_id, description)
        remote.report(version, f"registered job {job_id} as {name} version {version.version}")


@_command(models_app, "delete-version")
def models_delete_version(remote: Remote, name: NameArgument, version: VersionArgument) -> None:
    """Delete a version no alias points at."""
    with remote.session() as client:
        client.delete_version(name, version)
        deleted = {"deleted": {"model": name, "version": version}}
        remote.report(deleted, f"deleted {name} version {version}")


@_command(models_app, "alias")
def models_alias(
    remote: Remote,
    name: NameArgument,
    alias: Annotated[str, typer.Argument(metavar="ALIAS", help="champion, staging, …")],
    version: VersionArgument,
) -> None:
    """Point ALIAS at VERSION (created, or moved atomically)."""
    with remote.session() as client:
        moved = client.set_alias(name, alias, version)
        remote.report(moved, f"{name}@{moved.alias} → version {moved.version}")


@_command(models_app, "unalias")
def models_unalias(
    remote: Remote,
    name: NameArgument,
    alias: Annotated[str, typer.Argument(metavar="ALIAS")],
) -> None:
    """Remove an alias."""
    with remote.session() as client:
        client.delete_alias(name, alias)
        remote.report({"deleted": f"{name}@{alias}"}, f"removed {name}@{alias}")


def _aliases_table(found: Aliases) -> Table:
    table = Table("alias", "version", "moved", "by", title="aliases", title_justify="left")
    for a in found.aliases:
        table.add_row(escape(a.alias), str(a.version), _when(a.updated_at), a.updated_by)
    return table


def _alias_history_table(found: Aliases) -> Table:
    table = Table("when", "alias", "from", "to", "by", title="history", title_justify="left")
    for e in found.history:
        table.add_row(_when(e.at), escape(e.alias), _fmt(e.from_version), _fmt(e.to_version), e.by)
    return table


@_command(models_app, "aliases")
def models_aliases(remote: Remote, name: NameArgument) -> None:
    """A model's aliases, and every move (newest first)."""
    with remote.session() as client:
        remote.show(client.aliases(name), _aliases_table, _alias_history_table)


@_command(models_app, "predict")
def models_predict(
    remote: Remote,
    ref: RefArgument,
    version: VersionOption = None,
    rows: RowsOption = None,
    csv: CsvOption = None,
) -> None:
    """Predict by name: NAME@ALIAS, or NAME --version N (--rows JSON or --csv FILE)."""
    name, alias, number = _ref(ref, version)
    records = _records(rows, csv)
    with remote.session() as client:
        if csv is None:
            result = client.predict_model(name, records, alias=alias, version=number)
        else:
            result = client.predict_model_csv(name, csv, alias=alias, version=number)
        remote.show(result, _prediction_table)


@_command(models_app, "card")
def models_card(remote: Remote, name: NameArgument, version: VersionArgument) -> None:
    """Print a version's model card (Markdown)."""
    with remote.session() as client:
        card = client.model_card(name, version)
        if remote.as_json:
            _echo_json({"model": name, "version": version, "card": card})
            return
        sys.stdout.write(card)


@_command(models_app, "download")
def models_download(
    remote: Remote,
    ref: RefArgument,
    version: VersionOption = None,
    out: OutOption = None,
    format: Annotated[str, typer.Option("--format", help="native or onnx.")] = "native",
) -> None:
    """Download a version's artifact (NAME@ALIAS or NAME --version N), sha256 checked."""
    name, alias, number = _ref(ref, version)
    with remote.session() as client:
        path = client.download_model_artifact(name, out, alias=alias, version=number, format=format)
        remote.saved(path, ", sha256 verified")


if __name__ == "__main__":
    app()
