"""The OpenAPI document: valid 3.1, every operation described, every error problem+json."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from service.config import Settings
from service.main import create_app


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
