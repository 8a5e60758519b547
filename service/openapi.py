"""The OpenAPI document as clients need it: every error documented as problem+json."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.datasets.schemas import DatasetImport
from service.errors import PROBLEM_MEDIA_TYPE
from service.jobs.schemas import PredictRequest

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; `errors` lists field problems.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What is wrong and what to change."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

ERROR_DESCRIPTIONS = {
    "400": "The request is malformed.",
    "401": "Missing, unknown or revoked API key.",
    "404": "No such resource in your tenant (malformed ids too).",
    "409": "The resource is not in a state that allows this.",
    "413": "Too large: upload limit or storage quota.",
    "415": "Unsupported media type or file format.",
    "422": "Invalid input; `errors` names the fields.",
    "429": "Too many requests; see Retry-After.",
    "503": "The database is unavailable; see Retry-After.",
}

# Errors every /v1 operation can answer, beside those its kind of operation adds.
COMMON = ("401", "422", "429", "503")
BY_METHOD = {
    "get": ("404",),
    "delete": ("404", "409"),
    "post": ("400", "404", "409", "413", "415"),
    "put": ("400", "404", "409"),
}


def _problem_response(code: str) -> dict[str, Any]:
    description = ERROR_DESCRIPTIONS.get(code, "Error.")
    example = {
        "type": "https://ridgeline.dev/problems/...",
        "title": HTTPStatus(int(code)).phrase,
        "status": int(code),
        "detail": description,
    }
    return {
        "description": description,
        "content": {
            PROBLEM_MEDIA_TYPE: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "example": example,
            }
        },
    }


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with problem+json errors and without the unused default schemas."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    # Bodies parsed by hand (multipart or JSON) are documented through openapi_extra.
    for model in (PredictRequest, DatasetImport):
        components.setdefault(
            model.__name__, model.model_json_schema(ref_template="#/components/schemas/{model}")
        )
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            codes = (*COMMON, *BY_METHOD.get(method, ())) if path.startswith("/v1") else ()
            for code in codes:
                responses.setdefault(code, _problem_response(code))
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    described = response.get("description") or ERROR_DESCRIPTIONS.get(code, "")
                    responses[code] = {**_problem_response(code), "description": described}
            if "description" not in operation and operation.get("summary"):
                operation["description"] = operation["summary"] + "."
    app.openapi_schema = schema
    return schema


def install_openapi(app: FastAPI) -> None:
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
