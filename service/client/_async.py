"""The asynchronous client: the same methods as Client, awaited (asyncio)."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from service.client import _ops as ops
from service.client._base import ClientBase
from service.client._core import (
    CHUNK_SIZE,
    Call,
    DownloadSink,
    MultipartFile,
    Op,
    Progress,
    SSEDecoder,
    content_length,
    describe_transport_error,
    download_target,
    sse_headers,
)
from service.client.errors import (
    ConnectionFailed,
    ServerError,
    WaitTimeout,
    error_from_response,
)
from service.client.models import (
    TERMINAL_STATUSES,
    Alias,
    Aliases,
    Dataset,
    Event,
    Job,
    Metrics,
    ModelVersion,
    Page,
    Prediction,
    Preview,
    RegisteredModel,
    Sweep,
)

T = TypeVar("T")
StrPath = str | os.PathLike[str]
DownloadProgress = Callable[[int, int | None], None]


class AsyncClient(ClientBase[httpx.AsyncBaseTransport, httpx.AsyncClient]):
    """A typed, asynchronous (asyncio) client of a Ridgeline service.

    >>> async with AsyncClient.from_env() as rl:
    ...     dataset = await rl.upload("cancer.csv")
    ...     job = await rl.submit({"dataset_id": dataset.id, "target": "target"})
    ...     job = await rl.wait(job.id)

    ``on_event``/``on_update`` callbacks may be plain functions or coroutine functions.

    Every non-2xx answer raises a :class:`~service.client.errors.RidgelineError` subclass.
    Idempotent requests are retried with backoff on 429/502/503/504 and connection errors.
    """

    def _open(
        self, transport: httpx.AsyncBaseTransport | None, verify: bool | str
    ) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers=self.headers,
            timeout=self.timeout,
            transport=transport,
            verify=verify,
        )

    @classmethod
    def from_env(cls, **kwargs: Any) -> AsyncClient:
        """RIDGELINE_URL (default http://127.0.0.1:8000) and RIDGELINE_API_KEY; kwargs win."""
        return cls(**cls.env_settings(**kwargs))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- transport ---------------------------------------------------------------------------

    async def _send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        """Send with retries; a non-2xx answer raises its typed error."""
        attempt = 0
        while True:
            content = call.acontent() if call.acontent is not None else None
            request = self._http.build_request(
                call.method, call.path, content=content, **call.request_kwargs()
            )
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry.delay_after_error(call, attempt, exc)
                if delay is None:
                    raise ConnectionFailed(describe_transport_error(exc, self.base_url)) from exc
            else:
                if response.is_success:
                    return response
                try:
                    await response.aread()
                except httpx.TransportError:
                    pass
                finally:
                    await response.aclose()
                delay = self.retry.delay_after_response(call, attempt, response)
                if delay is None:
                    raise error_from_response(response)
            await _sleep(delay)
            attempt += 1

    async def _run(self, op: Op[T]) -> T:
        return op.parse(await self._send(op.call))

    @asynccontextmanager
    async def _stream(self, call: Call) -> AsyncIterator[httpx.Response]:
        response = await self._send(call, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def _download(
        self,
        call: Call,
        path: StrPath | None,
        fallback_name: str,
        *,
        sha_header: str | None = None,
        progress: DownloadProgress | None = None,
    ) -> Path:
        """Stream a GET to disk (temp file, then rename), restarting it on a dropped connection."""
        attempt = 0
        while True:
            async with self._stream(call) as response:
                expected = response.headers.get(sha_header) if sha_header else None
                target = download_target(path, response, fallback_name)
                sink = DownloadSink(
                    target,
                    expected_sha256=expected,
                    progress=progress,
                    total=content_length(response),
                )
                try:
                    async for chunk in response.aiter_bytes(CHUNK_SIZE):
                        sink.write(chunk)
                except httpx.TransportError as exc:
                    sink.abort()
                    delay = self.retry.delay_after_error(call, attempt, exc)
                    if delay is None:
                        raise ConnectionFailed(
                            describe_transport_error(exc, self.base_url)
                        ) from exc
                except BaseException:
                    sink.abort()
                    raise
                else:
                    return sink.commit()
            await _sleep(delay)
            attempt += 1

    # --- datasets ----------------------------------------------------------------------------

    async def upload(
        self,
        path: StrPath,
        name: str | None = None,
        delimiter: str | None = None,
        progress: Progress | None = None,
    ) -> Dataset:
        """Upload a CSV or Parquet file, streamed from disk; ``progress(bytes_sent, total)``."""
        body = MultipartFile(path, fields={"name": name, "delimiter": delimiter}, progress=progress)
        response = await self._send(body.call(ops.UPLOAD_PATH, timeout=self.upload_timeout))
        return ops.parse_dataset(response)

    async def list_datasets(
        self, limit: int | None = None, cursor: str | None = None
    ) -> Page[Dataset]:
        return await self._run(ops.list_datasets(limit, cursor))

    async def iter_datasets(self, page_size: int = 100) -> AsyncIterator[Dataset]:
        """Every dataset, newest first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = await self.list_datasets(page_size, cursor)
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get_dataset(self, dataset_id: str) -> Dataset:
        return await self._run(ops.get_dataset(dataset_id))

    async def preview(self, dataset_id: str, limit: int | None = None) -> Preview:
        return await self._run(ops.preview(dataset_id, limit))

    async def download(
        self,
        dataset_id: str,
        path: StrPath | None = None,
        format: ops.DatasetFormat = "csv",
        *,
        progress: DownloadProgress | None = None,
    ) -> Path:
        """Stream the data to ``path`` (a file, or a directory for the server's file name)."""
        return await self._download(
            ops.download_dataset(dataset_id, format),
            path,
            f"dataset-{dataset_id}.{format}",
            progress=progress,
        )

    async def delete_dataset(self, dataset_id: str) -> None:
        await self._run(ops.delete_dataset(dataset_id))

    # --- jobs --------------------------------------------------------------------------------

    async def submit(
        self,
        spec: dict[str, Any] | BaseModel,
        idempotency_key: str | None = None,
        *,
        dataset_id: str | None = None,
    ) -> Job:
        """Queue a training job. An Idempotency-Key is generated when none is given, so the
        request is retried safely; ``dataset_id`` overrides the spec's."""
        return await self._run(ops.submit(spec, idempotency_key, dataset_id=dataset_id))

    async def get_job(self, job_id: str) -> Job:
        return await self._run(ops.get_job(job_id))

    async def list_jobs(
        self,
        status: str | None = None,
        dataset_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        *,
        tags: dict[str, str] | None = None,
        order_by: str | None = None,
        order: Literal["asc", "desc"] | None = None,
        include_trials: bool = False,
    ) -> Page[Job]:
        """Newest first; ``order_by="validation.log_loss"`` ranks by a final metric (best first
        unless ``order`` says); ``tags`` keeps the jobs that carry all of them; sweeps' trial
        jobs only with ``include_trials``."""
        return await self._run(
            ops.list_jobs(status, dataset_id, limit, cursor, tags, order_by, order, include_trials)
        )

    async def iter_jobs(
        self, status: str | None = None, dataset_id: str | None = None, page_size: int = 100
    ) -> AsyncIterator[Job]:
        cursor: str | None = None
        while True:
            page = await self.list_jobs(status, dataset_id, page_size, cursor)
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def metrics(self, job_id: str) -> Metrics:
        return await self._run(ops.metrics(job_id))

    async def cancel(self, job_id: str) -> Job:
        return await self._run(ops.cancel(job_id))

    async def delete_job(self, job_id: str) -> None:
        await self._run(ops.delete_job(job_id))

    async def download_artifact(
        self, job_id: str, path: StrPath | None = None, *, progress: DownloadProgress | None = None
    ) -> Path:
        """Stream the model artifact to disk and check it against X-Artifact-SHA256."""
        return await self._download(
            ops.download_artifact(job_id),
            path,
            f"job-{job_id}.artifact",
            sha_header="x-artifact-sha256",
            progress=progress,
        )

    async def predict(self, job_id: str, rows: Sequence[dict[str, Any]]) -> Prediction:
        return await self._run(ops.predict(job_id, rows))

    async def predict_csv(self, job_id: str, path: StrPath) -> Prediction:
        """Score a CSV file (streamed from disk; its header names the columns)."""
        body = MultipartFile(path)
        call = body.call(ops.predict_path(job_id), timeout=self.upload_timeout)
        return ops.parse_prediction(await self._send(call))

    # --- events ------------------------------------------------------------------------------

    def events(
        self, job_id: str, *, last_event_id: int | None = None, reconnect: bool = True
    ) -> AsyncIterator[Event]:
        """The job's Server-Sent Events (status, progress, epoch) from the start (or after
        ``last_event_id``), ending after the terminal status. A dropped stream is resumed with
        Last-Event-ID, so no event is lost or repeated."""
        return self._events(job_id, last_event_id, reconnect, None)

    async def _events(
        self, job_id: str, last_event_id: int | None, reconnect: bool, deadline: float | None
    ) -> AsyncGenerator[Event, None]:
        last = last_event_id
        failures = 0
        while True:
            got_any = False
            remaining = None if deadline is None else deadline - time.monotonic()
            call = Call(
                "GET",
                ops.events_path(job_id),
                headers=sse_headers(last),
                timeout=self.sse_timeout(remaining),
            )
            try:
                async with self._stream(call) as response:
                    decoder = SSEDecoder()
                    async for line in response.aiter_lines():
                        if deadline is not None and time.monotonic() > deadline:
                            raise WaitTimeout(f"job {job_id} did not end in time")
                        event = decoder.feed(line)
                        if event is None:
                            continue
                        got_any, failures = True, 0
                        if event.id is not None:
                            last = event.id
                        yield event
                        if event.terminal:
                            return
            except httpx.TransportError as exc:
                if deadline is not None and time.monotonic() > deadline:
                    raise WaitTimeout(f"job {job_id} did not end in time") from exc
                failures += 1
                if not reconnect or failures > self.retry.max_retries:
                    raise ConnectionFailed(describe_transport_error(exc, self.base_url)) from exc
                await _sleep(self.retry.backoff(failures - 1))
                continue
            # The server closed the stream without a terminal status (it restarted, say).
            if not got_any or not reconnect:
                return

    async def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_event: Callable[[Event], Any] | None = None,
        *,
        poll_interval: float = 1.0,
    ) -> Job:
        """Block until the job ends and return it, following its event stream (``on_event``
        sees every event). Falls back to polling if the stream cannot be used. Raises
        WaitTimeout after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        status: str | None = None
        try:
            async with aclosing(self._events(job_id, None, True, deadline)) as events:
                async for event in events:
                    if event.status:
                        status = event.status
                    if on_event is not None:
                        await _call(on_event, event)
                    if event.terminal:
                        break
            if status in TERMINAL_STATUSES:
                return await self.get_job(job_id)
        except (ConnectionFailed, ServerError):
            pass
        return await self._poll_job(job_id, deadline, poll_interval, on_event, status)

    async def _poll_job(
        self,
        job_id: str,
        deadline: float | None,
        interval: float,
        on_event: Callable[[Event], Any] | None,
        status: str | None,
    ) -> Job:
        while True:
            job = await self.get_job(job_id)
            if job.status != status:
                status = job.status
                if on_event is not None:
                    event = Event(event="status", data={"attempt": job.attempt, "status": status})
                    await _call(on_event, event)
            if job.status in TERMINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() + interval > deadline:
                raise WaitTimeout(f"job {job_id} did not end in time (status {job.status})")
            await _sleep(interval)

    # --- sweeps ------------------------------------------------------------------------------

    async def submit_sweep(
        self, spec: dict[str, Any] | BaseModel, idempotency_key: str | None = None
    ) -> Sweep:
        return await self._run(ops.submit_sweep(spec, idempotency_key))

    async def get_sweep(self, sweep_id: str) -> Sweep:
        return await self._run(ops.get_sweep(sweep_id))

    async def list_sweeps(
        self,
        limit: int | None = None,
        cursor: str | None = None,
        status: str | None = None,
        *,
        tags: dict[str, str] | None = None,
    ) -> Page[Sweep]:
        return await self._run(ops.list_sweeps(limit, cursor, status, tags=tags))

    async def iter_sweeps(self, page_size: int = 100) -> AsyncIterator[Sweep]:
        cursor: str | None = None
        while True:
            page = await self.list_sweeps(page_size, cursor)
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def cancel_sweep(self, sweep_id: str) -> Sweep:
        return await self._run(ops.cancel_sweep(sweep_id))

    async def wait_sweep(
        self,
        sweep_id: str,
        timeout: float | None = None,
        on_update: Callable[[Sweep], Any] | None = None,
        *,
        poll_interval: float = 2.0,
        include_refit: bool = False,
    ) -> Sweep:
        """Poll until the sweep ends; ``on_update`` sees each state. With ``include_refit``,
        also wait for the refit of the winner (whose test score then shows in ``best``).
        WaitTimeout on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = await self.get_sweep(sweep_id)
            if on_update is not None:
                await _call(on_update, sweep)
            if sweep.done:
                if include_refit and sweep.refit_job_id:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    await self.wait(sweep.refit_job_id, remaining)
                    sweep = await self.get_sweep(sweep_id)
                    if on_update is not None:
                        await _call(on_update, sweep)
                return sweep
            if deadline is not None and time.monotonic() + poll_interval > deadline:
                raise WaitTimeout(f"sweep {sweep_id} did not end in time (status {sweep.status})")
            await _sleep(poll_interval)

    # --- registered models -------------------------------------------------------------------

    async def create_model(
        self, name: str, description: str | None = None, tags: dict[str, str] | None = None
    ) -> RegisteredModel:
        """A registered model: a stable name other services call (409 if it exists)."""
        return await self._run(ops.create_model(name, description, tags))

    async def get_model(self, name: str) -> RegisteredModel:
        return await self._run(ops.get_model(name))

    async def list_models(
        self,
        limit: int | None = None,
        cursor: str | None = None,
        *,
        tags: dict[str, str] | None = None,
    ) -> Page[RegisteredModel]:
        return await self._run(ops.list_models(limit, cursor, tags=tags))

    async def iter_models(
        self, page_size: int = 100, *, tags: dict[str, str] | None = None
    ) -> AsyncIterator[RegisteredModel]:
        cursor: str | None = None
        while True:
            page = await self.list_models(page_size, cursor, tags=tags)
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def delete_model(self, name: str) -> None:
        """Delete a model that has no versions left."""
        await self._run(ops.delete_model(name))

    async def register(
        self, name: str, job_id: str, description: str | None = None
    ) -> ModelVersion:
        """Register a succeeded job as the model's next version."""
        return await self._run(ops.register(name, job_id, description))

    async def list_versions(
        self, name: str, limit: int | None = None, cursor: str | None = None
    ) -> Page[ModelVersion]:
        return await self._run(ops.list_versions(name, limit, cursor))

    async def get_version(self, name: str, version: int) -> ModelVersion:
        return await self._run(ops.get_version(name, version))

    async def delete_version(self, name: str, version: int) -> None:
        """Delete a version no alias points at."""
        await self._run(ops.delete_version(name, version))

    async def set_alias(self, name: str, alias: str, version: int) -> Alias:
        """Point the alias at the version (created, or moved atomically)."""
        return await self._run(ops.set_alias(name, alias, version))

    async def delete_alias(self, name: str, alias: str) -> None:
        await self._run(ops.delete_alias(name, alias))

    async def aliases(self, name: str) -> Aliases:
        """The model's aliases and every move, newest first."""
        return await self._run(ops.aliases(name))

    async def predict_model(
        self,
        name: str,
        rows: Sequence[dict[str, Any]],
        *,
        alias: str | None = None,
        version: int | None = None,
    ) -> Prediction:
        """Predict by ``name@alias`` or a version; ``model_version`` says which answered."""
        return await self._run(ops.predict_model(name, rows, alias, version))

    async def predict_model_csv(
        self, name: str, path: StrPath, *, alias: str | None = None, version: int | None = None
    ) -> Prediction:
        """Score a CSV file (streamed from disk) by ``name@alias`` or a version."""
        body = MultipartFile(path)
        target = ops.model_ref_path(name, alias, version) + "/predict"
        return ops.parse_model_prediction(
            await self._send(body.call(target, timeout=self.upload_timeout))
        )

    async def model_card(self, name: str, version: int) -> str:
        """The version's model card, in Markdown."""
        return await self._run(ops.model_card(name, version))

    async def download_model_artifact(
        self,
        name: str,
        path: StrPath | None = None,
        *,
        alias: str | None = None,
        version: int | None = None,
        format: str = "native",
        progress: DownloadProgress | None = None,
    ) -> Path:
        """Stream a version's artifact (by alias or number) to disk, checked against its sha256."""
        return await self._download(
            ops.download_model_artifact(name, alias, version, format),
            path,
            f"{name}.artifact",
            sha_header="x-artifact-sha256",
            progress=progress,
        )

    # --- plots -------------------------------------------------------------------------------

    async def plot(
        self,
        kind: str,
        *,
        job_id: str | None = None,
        sweep_id: str | None = None,
        job_ids: Sequence[str] | None = None,
        fmt: ops.PlotFormat = "svg",
    ) -> bytes:
        """A plot's bytes (SVG or PNG). Job plots: loss-curve, coefficients, learning-curve;
        sweep plots: validation-curve, regularization-path; loss-curves compares job_ids."""
        return await self._run(
            ops.plot(kind, job_id=job_id, sweep_id=sweep_id, job_ids=job_ids, fmt=fmt)
        )


async def _sleep(seconds: float) -> None:
    # asyncio is imported on first use: it costs the CLI's start-up 70 ms it never needs.
    import asyncio

    await asyncio.sleep(seconds)


async def _call(callback: Callable[[Any], Any], value: Any) -> None:
    result = callback(value)
    if inspect.isawaitable(result):
        await result


__all__ = ["AsyncClient"]
