"""Schemathesis against the live OpenAPI schema of a running server, bounded in examples and time.

For every operation: generated valid requests, generated invalid requests, and (for id routes)
valid requests aimed at real resources of the fuzzing tenant. Every answer must be no 5xx, a
documented status code with a documented content type and a body that fits its documented
schema, invalid requests refused with a 4xx, and every 4xx/5xx body application/problem+json
with type, title, status and detail.

The operations are listed at collection time from the app's own schema (so each is a test of
its own that can carry a precise xfail), and the test checks that the live server serves
exactly that list.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from service.config import Settings
from service.main import create_app
from tests.conftest import Server
from tests.hardening.conftest import TenantResources, make_resources

POSITIVE_EXAMPLES = 20
NEGATIVE_EXAMPLES = 10
REAL_ID_EXAMPLES = 10
PER_OPERATION_SECONDS = 60

# Operations that change or remove the real resources are fuzzed with random ids only, so the
# ones after them still find the resources.
DESTRUCTIVE = ("DELETE",)


def _app_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation the app documents; building the app needs no database."""
    app = create_app(Settings(database_url="sqlite:///unused-by-openapi.db"))
    document = app.openapi()
    return sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    )


OPERATIONS = _app_operations()

# Service bugs found by this test and not yet fixed: each one xfails (strictly, so the fix is
# noticed) with the evidence in its reason. Keys are (METHOD, path).
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def _params() -> list[Any]:
    return [
        pytest.param(
            op,
            id=f"{op[0]} {op[1]}",
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[op])]
            if op in KNOWN_BUGS
            else [],
        )
        for op in OPERATIONS
    ]


def _header(response: Any, name: str) -> str:
    value = response.headers.get(name.lower()) or response.headers.get(name) or ""
    return value[0] if isinstance(value, list) and value else str(value)


def problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx body is application/problem+json with type, title, status and detail."""
    if response.status_code < 400:
        return None
    content_type = _header(response, "content-type")
    assert content_type.startswith("application/problem+json"), (
        f"{response.status_code} answered with content-type {content_type!r}, "
        "not application/problem+json"
    )
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise AssertionError(f"error body is not JSON: {response.content[:200]!r}") from exc
    missing = [k for k in ("type", "title", "status", "detail") if k not in body]
    assert not missing, f"problem body lacks {missing}: {body}"
    assert body["status"] == response.status_code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    return None


CHECKS: list[Callable[..., bool | None]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,  # invalid input (by the schema) is refused with a 4xx
    problem_json,
]


@pytest.fixture(scope="session")
def fuzz_tenant(server: Server, worker: Any) -> TenantResources:
    """Real resources of the fuzzing tenant, so valid ids reach the 200 paths too."""
    return make_resources(server, wait_for_sweep=True)


@pytest.fixture(scope="session")
def live_schema(server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")


def test_the_live_server_documents_the_operations_tested_here(live_schema: Any) -> None:
    live = sorted(
        (method.upper(), path)
        for path, item in live_schema.raw_schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    )
    assert live == OPERATIONS


def _fixed_ids(path: str, live_op: Any, ids: dict[str, str]) -> dict[str, Any]:
    """Path (and id-list query) parameters of this operation set to the tenant's real ids."""
    fixed: dict[str, Any] = {}
    for name in re.findall(r"{(\w+)}", path):
        if name in ids:
            fixed.setdefault("path_parameters", {})[name] = ids[name]
    query_names = {p.get("name") for p in live_op.definition.raw.get("parameters", [])
                   if p.get("in") == "query"}  # fmt: skip
    if "jobs" in query_names:
        fixed["query"] = {"jobs": ids["job_id"]}
    if "dataset_id" in query_names:
        fixed["query"] = {"dataset_id": ids["dataset_id"]}
    return fixed


@pytest.mark.timeout(PER_OPERATION_SECONDS * 3)
@pytest.mark.parametrize("operation", _params())
def test_fuzz_operation(
    operation: tuple[str, str],
    server: Server,
    live_schema: Any,
    fuzz_tenant: TenantResources,
) -> None:
    method, path = operation
    live_op = live_schema[path][method]
    auth = {"Authorization": f"Bearer {fuzz_tenant.key}"}
    runs: list[tuple[GenerationMode, dict[str, Any], int]] = [
        (GenerationMode.POSITIVE, {}, POSITIVE_EXAMPLES),
        (GenerationMode.NEGATIVE, {}, NEGATIVE_EXAMPLES),
    ]
    fixed = _fixed_ids(path, live_op, fuzz_tenant.ids)
    if fixed and method not in DESTRUCTIVE:
        runs.append((GenerationMode.POSITIVE, fixed, REAL_ID_EXAMPLES))
    started = time.monotonic()
    calls = 0
    for mode, overrides, examples in runs:

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=live_op.as_strategy(generation_mode=mode, headers=auth, **overrides))
        def run(case: Any) -> None:
            nonlocal calls
            if time.monotonic() - started > PER_OPERATION_SECONDS:
                return  # bounded in time as well as in examples
            calls += 1
            response = case.call(base_url=server.base_url, headers=auth, timeout=30)
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:
            # Nothing of this operation can be made invalid by its schema (a free-form string
            # path parameter and no body): there are no negative cases to send.
            if mode is not GenerationMode.NEGATIVE:
                raise
    assert calls > 0


def test_predict_csv_whose_header_is_not_utf8_is_a_422(
    server: Server, fuzz_tenant: TenantResources
) -> None:
    with server.client(fuzz_tenant.key) as client:
        response = client.post(
            f"/v1/jobs/{fuzz_tenant.job_id}/predict", files={"file": ("f.csv", b"\xff\n1\n")}
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_events_with_an_out_of_range_last_event_id(
    server: Server, fuzz_tenant: TenantResources
) -> None:
    with server.client(fuzz_tenant.key) as client:
        try:
            response = client.get(
                f"/v1/jobs/{fuzz_tenant.job_id}/events",
                headers={"Last-Event-ID": "99999999999999999999"},
                timeout=30,
            )
        except httpx.HTTPError as exc:
            raise AssertionError(f"the event stream broke: {exc!r}") from exc
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_an_undocumented_method_is_405_and_allow_lists_every_method_of_the_path(
    server: Server, live_schema: Any
) -> None:
    """RFC 9110: a 405 names the methods the resource supports. A path served by several
    routes (GET and DELETE /v1/jobs/{job_id}) used to name only the first route's."""
    methods = ("GET", "POST", "PUT", "PATCH", "DELETE")
    checked = 0
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for path, item in live_schema.raw_schema["paths"].items():
            documented = {m.upper() for m in item if m.upper() in methods}
            url = re.sub(r"{\w+}", "00000000-0000-0000-0000-000000000000", path)
            for method in sorted(set(methods) - documented):
                response = client.request(method, url)
                assert response.status_code == 405, (method, path, response.text)
                allowed = {m.strip() for m in response.headers["allow"].split(",")}
                assert allowed - {"HEAD", "OPTIONS"} == documented, (method, path, allowed)
                problem_json(None, response, None)
                checked += 1
    assert checked > 50
