"""Security: tenants cannot reach each other's resources through any id route, keys are stored
only as hashes, a revoked key stops working on every API process within seconds, a tampered
artifact is refused, and cross-origin requests get no CORS grant."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, String, Text, create_engine, select, update

from service.auth.service import create_key
from service.blobs import BlobChunk
from service.config import Settings
from service.db import Database
from service.jobs.models import Job
from service.main import create_app
from tests.conftest import Server, run_cli, wait_for
from tests.hardening.conftest import TenantResources, make_resources

METHODS = ("get", "post", "put", "patch", "delete")

# How a path parameter is filled from tenant A's resources. A new `{..._id}` route whose
# parameter is not here fails test_every_id_route_is_covered, so it cannot slip past unchecked.
ID_PARAMS = {"dataset_id": "dataset_id", "job_id": "job_id", "sweep_id": "sweep_id"}
# Query parameters that carry ids (lists of them, comma-separated, count too).
ID_QUERY = {
    "jobs": "job_id",
    "job_ids": "job_id",
    "dataset_id": "dataset_id",
    "sweep_id": "sweep_id",
}
# Plausible bodies, so a route fails on the tenant check and not on validation first.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/jobs/{job_id}/predict"): {"rows": [{"x": 1}]},
}


def _problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers.get("content-type", "").startswith("application/problem+json"), (
        response.status_code,
        response.headers.get("content-type"),
        response.text[:300],
    )
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys(), body
    return body


@pytest.fixture(scope="module")
def tenant_a(server: Server, worker: subprocess.Popen[str]) -> TenantResources:
    return make_resources(server, wait_for_sweep=True)


@pytest.fixture(scope="module")
def openapi(server: Server) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{server.base_url}/openapi.json", timeout=30).json()
    return document


def _operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def _parameters(operation: dict[str, Any], where: str) -> list[dict[str, Any]]:
    return [p for p in operation.get("parameters", []) if p.get("in") == where]


def _fill_path(
    path: str, operation: dict[str, Any], ids: dict[str, str]
) -> tuple[str, list[str]] | None:
    """The path with tenant A's ids (and a valid value for other parameters, e.g. an enum),
    plus the ids it holds; None when the route has no id parameter."""
    values: dict[str, str] = {}
    used: list[str] = []
    names = re.findall(r"{(\w+)}", path)
    if not any(name.endswith("_id") or name == "id" for name in names):
        return None
    for param in _parameters(operation, "path"):
        name, schema = param["name"], param.get("schema", {})
        if name in ID_PARAMS:
            values[name] = ids[ID_PARAMS[name]]
            used.append(values[name])
        elif "enum" in schema:
            values[name] = str(schema["enum"][0])
        else:
            raise AssertionError(
                f"path parameter {name!r} of {path} is not mapped: add it to ID_PARAMS (if it "
                "is an id) so the cross-tenant walk covers this route"
            )
    return path.format(**values), used


def test_every_id_route_is_covered(openapi: dict[str, Any]) -> None:
    """Every path parameter that looks like an id, and every query parameter that carries ids,
    is one the cross-tenant walk knows how to fill."""
    unknown = []
    for method, path, operation in _operations(openapi):
        for param in operation.get("parameters", []):
            name = param["name"]
            looks_like_id = name.endswith(("_id", "_ids")) or name in ("id", "ids", "jobs")
            if param["in"] == "path" and looks_like_id and name not in ID_PARAMS:
                unknown.append((method, path, name))
            if param["in"] == "query" and looks_like_id and name not in ID_QUERY:
                unknown.append((method, path, name))
    assert not unknown, f"id parameters the cross-tenant test does not cover: {unknown}"


def test_no_id_route_hides_from_the_schema() -> None:
    """The walk below covers the OpenAPI document; a route with an id that is left out of it
    (include_in_schema=False, a mounted app) would escape it, so there must be none, or the
    walk must be taught about it."""
    app = create_app(Settings(database_url="sqlite:///unused-by-routes.db"))
    documented = set(app.openapi()["paths"])
    hidden = []
    for route in app.routes:
        path = getattr(route, "path", "")
        if "{" in path and path not in documented:
            hidden.append(path)
        for sub in getattr(getattr(route, "app", None), "routes", []) or []:
            sub_path = path.rstrip("/") + getattr(sub, "path", "")
            if "{" in sub_path and sub_path not in documented:
                hidden.append(sub_path)
    assert not hidden, f"routes with path parameters outside the OpenAPI document: {hidden}"


def test_another_tenant_gets_404_on_every_id_route(
    server: Server, tenant_a: TenantResources, openapi: dict[str, Any]
) -> None:
    key_b = server.new_key()
    ids = tenant_a.ids
    checked: list[str] = []
    leaks: list[str] = []
    answers_b: dict[str, str] = {}
    with server.client(key_b) as b, server.client(tenant_a.key) as a:
        sweep_status = a.get(f"/v1/sweeps/{ids['sweep_id']}").json()["status"]
        for method, path, operation in _operations(openapi):
            filled = _fill_path(path, operation, ids)
            if filled is None:
                continue
            url, used = filled
            body = BODIES.get((method, path))
            kwargs: dict[str, Any] = {"json": body} if body is not None else {}
            response = b.request(method, url, timeout=30, **kwargs)
            checked.append(f"{method} {path}")
            if response.status_code != 404:
                leaks.append(f"{method} {url}: {response.status_code} {response.text[:200]}")
                continue
            detail = _problem(response)["detail"]
            answers_b[url] = detail
            # The same answer as for an id that exists nowhere: no existence oracle.
            fakes = {real: str(uuid.uuid4()) for real in used}
            unknown_url = url
            for real, fake in fakes.items():
                unknown_url = unknown_url.replace(real, fake)
            unknown = b.request(method, unknown_url, timeout=30, **kwargs)
            assert unknown.status_code == 404, (unknown_url, unknown.text)
            unknown_detail = _problem(unknown)["detail"]
            for real, fake in fakes.items():
                unknown_detail = unknown_detail.replace(fake, real)
            assert detail == unknown_detail, (method, path, detail, unknown_detail)
        # Tenant A's own reads find the resources (a 404 of A, e.g. "no per-epoch history" for
        # a plot, must differ from B's), so the ids were right and B's 404s meant something.
        for method, path, operation in _operations(openapi):
            filled = _fill_path(path, operation, ids)
            if filled is None or method != "GET":
                continue
            response = a.get(filled[0], timeout=60)
            assert response.status_code not in (401, 403) and response.status_code < 500, (
                path,
                response.text[:300],
            )
            if response.status_code == 404:
                assert _problem(response)["detail"] != answers_b.get(filled[0]), path
        # Nothing tenant B sent changed tenant A's resources.
        assert a.get(f"/v1/datasets/{ids['dataset_id']}").status_code == 200
        assert a.get(f"/v1/jobs/{ids['job_id']}").json()["status"] == "succeeded"
        assert a.get(f"/v1/sweeps/{ids['sweep_id']}").json()["status"] == sweep_status
    assert not leaks, "tenant B reached tenant A's resources:\n" + "\n".join(leaks)
    assert len(checked) >= 15, checked


def test_ids_in_queries_and_bodies_are_scoped_too(
    server: Server, tenant_a: TenantResources, openapi: dict[str, Any]
) -> None:
    ids = tenant_a.ids
    with server.client(server.new_key()) as b:
        for method, path, operation in _operations(openapi):
            if method != "GET" or "{" in path:
                continue
            query = {
                p["name"]: ids[ID_QUERY[p["name"]]]
                for p in _parameters(operation, "query")
                if p["name"] in ID_QUERY
            }
            if not query:
                continue
            response = b.get(path, params=query, timeout=30)
            if response.status_code == 200 and "application/json" in response.headers.get(
                "content-type", ""
            ):
                assert response.json().get("items") == [], (path, query, response.text[:300])
            else:
                assert response.status_code == 404, (path, query, response.status_code)
        # A's dataset in B's job or sweep: as unknown as any other id.
        job = b.post("/v1/jobs", json={"dataset_id": ids["dataset_id"], "target": "y"})
        assert job.status_code in (404, 422), job.text
        assert "dataset" in _problem(job)["detail"]
        sweep = b.post(
            "/v1/sweeps",
            json={
                "dataset_id": ids["dataset_id"],
                "target": "y",
                "search": {"penalty": ["l2"], "strength": [0.1]},
                "cv": {"folds": 2},
            },
        )
        assert sweep.status_code in (404, 422), sweep.text
        assert b.get("/v1/jobs").json()["items"] == []
        assert b.get("/v1/datasets").json()["items"] == []
        assert b.get("/v1/sweeps").json()["items"] == []


# --- keys ----------------------------------------------------------------------------------


def test_keys_are_stored_only_as_hashes(server: Server) -> None:
    key = server.new_key()
    with server.client(key) as client:
        assert client.get("/v1/jobs").status_code == 200
    secret = key.removeprefix("rl_")
    engine = create_engine(server.database_url)
    found = []
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            # Every text column of every table: the key, or most of its secret part, nowhere.
            for table in metadata.tables.values():
                columns = [c for c in table.columns if isinstance(c.type, (String, Text))]
                if not columns:
                    continue
                for row in conn.execute(select(*columns)):
                    for column, value in zip(columns, row, strict=True):
                        if value and (key in str(value) or secret[4:] in str(value)):
                            found.append(f"{table.name}.{column.name}")
            api_keys = metadata.tables["api_keys"]
            digests = {r.key_hash for r in conn.execute(select(api_keys.c.key_hash))}
    finally:
        engine.dispose()
    assert not found, f"the plaintext key is stored in {found}"
    assert hashlib.sha256(key.encode()).hexdigest() in digests
    assert key not in server.logs()


def test_a_revoked_key_stops_working_on_every_api_process_within_5_s(
    server: Server, peer: Server
) -> None:
    """Keys are cached per process: the shared server and its peer on the same database."""
    name = f"revoke-{uuid.uuid4().hex[:8]}"
    database = Database(Settings(database_url=server.database_url))
    try:
        with database.transaction() as session:
            _, key = create_key(session, name=name)
    finally:
        database.dispose()
    clients = [api.client(key) for api in (server, peer)]
    try:
        for client in clients:  # used, so each process has it cached
            assert client.get("/v1/jobs").status_code == 200
            assert client.get("/v1/jobs").status_code == 200
        run_cli(server.database_url, "keys", "revoke", name)
        revoked_at = time.monotonic()
        for client in clients:

            def refused(c: httpx.Client = client) -> bool:
                return c.get("/v1/jobs").status_code == 401

            wait_for(
                refused,
                timeout=max(0.1, 5 - (time.monotonic() - revoked_at)),
                interval=0.1,
                message=f"the revoked key to be refused by {client.base_url}",
            )
            response = client.get("/v1/jobs")
            assert response.status_code == 401
            assert _problem(response)["status"] == 401
            assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
    finally:
        for client in clients:
            client.close()


# --- tampered artifacts ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tampered_job(server: Server, tenant_a: TenantResources) -> tuple[str, str]:
    """A succeeded job never loaded for prediction (tenant A's spare) whose artifact bytes were
    altered in the database."""
    key, job_id = tenant_a.key, tenant_a.spare_job_id
    engine = create_engine(server.database_url)
    try:
        with engine.begin() as conn:
            blob_id = conn.execute(
                select(Job.artifact_blob_id).where(Job.id == uuid.UUID(job_id))
            ).scalar_one()
            where = (BlobChunk.blob_id == blob_id, BlobChunk.seq == 0)
            data = conn.execute(select(BlobChunk.data).where(*where)).scalar_one()
            middle = len(data) // 2
            altered = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
            conn.execute(update(BlobChunk).where(*where).values(data=altered))
    finally:
        engine.dispose()
    return key, job_id


INTEGRITY_WORDS = re.compile(r"integrity|sha-?256|checksum|corrupt|tamper", re.IGNORECASE)


def test_a_tampered_artifact_is_not_used_for_predictions(
    server: Server, tampered_job: tuple[str, str]
) -> None:
    key, job_id = tampered_job
    with server.client(key) as client:
        response = client.post(f"/v1/jobs/{job_id}/predict", json={"rows": [{"x": 1}]})
    assert response.status_code >= 400, response.text
    body = _problem(response)
    assert "predictions" not in body


def test_a_tampered_artifact_is_refused_with_a_clear_error(
    server: Server, tampered_job: tuple[str, str]
) -> None:
    key, job_id = tampered_job
    with server.client(key) as client:
        predicted = client.post(f"/v1/jobs/{job_id}/predict", json={"rows": [{"x": 1}]})
        assert INTEGRITY_WORDS.search(_problem(predicted)["detail"]), predicted.text
        try:
            download = client.get(f"/v1/jobs/{job_id}/artifact")
        except httpx.HTTPError as exc:
            raise AssertionError(f"the artifact download broke off: {exc!r}") from exc
        assert download.status_code >= 400, "the altered artifact was served with a 200"
        assert INTEGRITY_WORDS.search(_problem(download)["detail"]), download.text


# --- CORS -----------------------------------------------------------------------------------


def test_no_cors_grant_for_other_origins_by_default(server: Server) -> None:
    origin = "https://evil.example"
    with server.client(server.new_key()) as client:
        simple = client.get("/v1/jobs", headers={"Origin": origin})
        preflight = client.options(
            "/v1/jobs",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        health = client.get("/healthz", headers={"Origin": origin})
    for response in (simple, preflight, health):
        granted = {k: v for k, v in response.headers.items() if k.startswith("access-control-")}
        assert not granted, (response.request.method, response.url, granted)


# --- a live event stream and the key behind it -------------------------------------------------


def _stream_until_closed(
    stream: httpx.Response, on_first_epoch: Any, *, deadline_s: float
) -> list[str]:
    """Every line of an SSE stream until the server closes it; `on_first_epoch` runs once the
    first epoch arrives. Fails if the stream is still open `deadline_s` after that."""
    lines: list[str] = []
    acted_at: float | None = None
    for line in stream.iter_lines():
        lines.append(line)
        if acted_at is None and line == "event: epoch":
            on_first_epoch()
            acted_at = time.monotonic()
        if acted_at is not None and time.monotonic() - acted_at > deadline_s:
            raise AssertionError(f"the stream was still open {deadline_s} s later")
    return lines


def test_an_event_stream_ends_when_its_key_is_revoked(
    server: Server, worker: subprocess.Popen[str]
) -> None:
    from tests.conftest import insert_job, upload_tiny

    name = f"sse-{uuid.uuid4().hex[:8]}"
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    database = Database(Settings(database_url=server.database_url))
    try:
        with database.transaction() as session:
            _, key = create_key(session, name=name, tenant_id=tenant)
    finally:
        database.dispose()
    with server.client(key) as client:
        dataset_id = upload_tiny(client)
    job_id = insert_job(  # an epoch every 0.1 s for a minute
        server.database_url, tenant=tenant, dataset_id=dataset_id, trainer="test-sleep", seed=60
    )
    try:
        with (
            server.client(key) as client,
            client.stream("GET", f"/v1/jobs/{job_id}/events") as stream,
        ):
            assert stream.status_code == 200
            lines = _stream_until_closed(
                stream, lambda: run_cli(server.database_url, "keys", "revoke", name), deadline_s=20
            )
        assert any(line.startswith(": the credential was revoked") for line in lines)
        assert not any(
            line.startswith('data: {"attempt": 1, "status": "succeeded"') for line in lines
        )
    finally:
        with server.client(server.new_key(tenant)) as cleanup:
            cleanup.post(f"/v1/jobs/{job_id}/cancel")
