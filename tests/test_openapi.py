"""The OpenAPI document: valid 3.1, every operation described, every error problem+json."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from pydantic import ValidationError

from service.config import Settings
from service.main import create_app
from service.sweeps.schemas import CVSpec


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi')}/x.db"
    return create_app(Settings(database_url=url)).openapi()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def test_valid_openapi_31(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_operation_is_described_and_tagged(spec: dict[str, Any]) -> None:
    for path, method, op in _operations(spec):
        assert op.get("summary"), (method, path)
        assert op.get("description"), (method, path)
        assert op.get("tags"), (method, path)


def test_every_error_is_problem_json(spec: dict[str, Any]) -> None:
    for path, method, op in _operations(spec):
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                assert list(response.get("content", {})) == ["application/problem+json"], (
                    method,
                    path,
                    code,
                )
        if path.startswith("/v1"):
            assert {"401", "422"} <= set(op["responses"]), (method, path)


def test_json_request_bodies_have_examples(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for name in ("JobCreate", "SweepCreate", "PredictRequest"):
        assert schemas[name].get("examples"), name


# What schemathesis' positive-data-acceptance check sent and saw refused: each is now invalid by
# the schema (so no client is promised it works), or documented as refused.


def _parameter(spec: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    params = spec["paths"][path][method]["parameters"]
    found: dict[str, Any] = next(p for p in params if p["name"] == name)
    return found


def _valid(schema: dict[str, Any], value: Any, spec: dict[str, Any]) -> bool:
    validator = jsonschema.Draft202012Validator(
        {**schema, "components": spec["components"]}, format_checker=None
    )
    return validator.is_valid(value)


def test_cursors_must_be_of_the_issued_alphabet_and_others_are_documented_as_422(
    spec: dict[str, Any], api: httpx.Client
) -> None:
    for path in ("/v1/jobs", "/v1/datasets", "/v1/sweeps"):
        cursor = _parameter(spec, path, "get", "cursor")
        assert not _valid(cursor["schema"], "not a cursor!", spec)
        assert _valid(cursor["schema"], "", spec)
        assert "Only a cursor this service issued is valid" in cursor["description"]
        assert api.get(path, params={"cursor": ""}).status_code == 200
        assert api.get(path, params={"cursor": "not a cursor!"}).status_code == 422
        refused = api.get(path, params={"cursor": "QUJD"})  # the alphabet, but never issued
        assert refused.status_code == 422 and "cursor" in refused.text


def test_an_empty_job_list_is_invalid_by_the_schema(
    spec: dict[str, Any], api: httpx.Client
) -> None:
    jobs = _parameter(spec, "/v1/plots/loss-curves", "get", "jobs")
    for value in ("", " ", "a,,b", ",".join(["x"] * 11)):
        assert not _valid(jobs["schema"], value, spec), value
        assert api.get("/v1/plots/loss-curves", params={"jobs": value}).status_code == 422
    assert _valid(jobs["schema"], "a, b,c", spec)


def test_last_event_id_is_an_integer_never_null(spec: dict[str, Any]) -> None:
    header = _parameter(spec, "/v1/jobs/{job_id}/events", "get", "last-event-id")
    assert not _valid(header["schema"], None, spec)
    assert _valid(header["schema"], 0, spec) and not _valid(header["schema"], -1, spec)


def test_cv_takes_exactly_one_number(spec: dict[str, Any]) -> None:
    cv = {"$ref": "#/components/schemas/CVSpec"}
    refused: list[dict[str, Any]] = [
        {},
        {"folds": None},
        {"folds": None, "validation_fraction": None},
        {"folds": 3, "validation_fraction": 0.2},
        {"x": 1},
    ]
    for shape in refused:
        assert not _valid(cv, shape, spec), shape
        with pytest.raises(ValidationError):
            CVSpec.model_validate(shape)
    for shape in (
        {"folds": 3},
        {"validation_fraction": 0.25},
        {"folds": 3, "validation_fraction": None},
    ):
        assert _valid(cv, shape, spec), shape
        CVSpec.model_validate(shape)
