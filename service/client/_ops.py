"""Every endpoint once: its URL, parameters and body, and how to read its answer.

Client and AsyncClient call these builders and run the resulting :class:`Op` with their own
transport, so the two can never drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from service.client._core import Call, Op, new_idempotency_key, path_id
from service.client.models import (
    Alias,
    Aliases,
    Dataset,
    Job,
    Metrics,
    ModelVersion,
    Page,
    Prediction,
    Preview,
    RegisteredModel,
    Sweep,
)

M = TypeVar("M", bound=BaseModel)

DatasetFormat = Literal["csv", "parquet"]
PlotFormat = Literal["svg", "png"]

JOB_PLOTS = frozenset({"loss-curve", "coefficients", "learning-curve"})
SWEEP_PLOTS = frozenset({"validation-curve", "regularization-path"})
MULTI_JOB_PLOTS = frozenset({"loss-curves"})
PLOT_KINDS = JOB_PLOTS | SWEEP_PLOTS | MULTI_JOB_PLOTS


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return cls.model_validate(response.json())

    return parse


def _none(response: httpx.Response) -> None:
    return None


def _bytes(response: httpx.Response) -> bytes:
    return response.content


def _spec_dict(spec: dict[str, Any] | BaseModel) -> dict[str, Any]:
    if isinstance(spec, BaseModel):
        return spec.model_dump(mode="json", exclude_none=True)
    if isinstance(spec, dict):
        # UUIDs, datetimes or models inside a dict spec become their JSON forms.
        return dict(to_jsonable_python(spec))
    raise TypeError(f"a spec is a dict or a pydantic model, not {type(spec).__name__}")


# --- datasets --------------------------------------------------------------------------------


def list_datasets(limit: int | None = None, cursor: str | None = None) -> Op[Page[Dataset]]:
    call = Call("GET", "/v1/datasets", params={"limit": limit, "cursor": cursor})
    return Op(call, _model(Page[Dataset]))


def get_dataset(dataset_id: str) -> Op[Dataset]:
    return Op(Call("GET", f"/v1/datasets/{path_id(dataset_id)}"), _model(Dataset))


def preview(dataset_id: str, limit: int | None = None) -> Op[Preview]:
    call = Call("GET", f"/v1/datasets/{path_id(dataset_id)}/preview", params={"limit": limit})
    return Op(call, _model(Preview))


def download_dataset(dataset_id: str, format: DatasetFormat = "csv") -> Call:
    if format not in ("csv", "parquet"):
        raise ValueError("format is 'csv' or 'parquet'")
    return Call("GET", f"/v1/datasets/{path_id(dataset_id)}/download", params={"format": format})


def delete_dataset(dataset_id: str) -> Op[None]:
    return Op(Call("DELETE", f"/v1/datasets/{path_id(dataset_id)}"), _none)


UPLOAD_PATH = "/v1/datasets"
parse_dataset = _model(Dataset)

# --- jobs ------------------------------------------------------------------------------------


def submit(
    spec: dict[str, Any] | BaseModel,
    idempotency_key: str | None = None,
    *,
    dataset_id: str | None = None,
) -> Op[Job]:
    """POST /v1/jobs with an Idempotency-Key (made up when not given), so retrying is safe."""
    body = _spec_dict(spec)
    if dataset_id is not None:
        body["dataset_id"] = str(dataset_id)
    key = idempotency_key or new_idempotency_key()
    call = Call("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key}, retry=True)
    return Op(call, _model(Job))


def get_job(job_id: str) -> Op[Job]:
    return Op(Call("GET", f"/v1/jobs/{path_id(job_id)}"), _model(Job))


def tag_params(tags: dict[str, str] | None) -> list[str] | None:
    """{"team": "risk"} as the list filter's repeated ``tag=team:risk``."""
    return [f"{key}:{value}" for key, value in tags.items()] if tags else None


def list_jobs(
    status: str | None,
    dataset_id: str | None,
    limit: int | None,
    cursor: str | None,
    tags: dict[str, str] | None,
    order_by: str | None,
    order: Literal["asc", "desc"] | None,
    include_trials: bool,
) -> Op[Page[Job]]:
    """The query behind the clients' ``list_jobs`` (whose signature gives the defaults)."""
    params = {
        "status": status,
        "dataset_id": dataset_id,
        "limit": limit,
        "cursor": cursor,
        "tag": tag_params(tags),
        "order_by": order_by,
        "order": order,
        "include_trials": "true" if include_trials else None,
    }
    return Op(Call("GET", "/v1/jobs", params=params), _model(Page[Job]))


def metrics(job_id: str) -> Op[Metrics]:
    return Op(Call("GET", f"/v1/jobs/{path_id(job_id)}/metrics"), _model(Metrics))


def cancel(job_id: str) -> Op[Job]:
    return Op(Call("POST", f"/v1/jobs/{path_id(job_id)}/cancel"), _model(Job))


def delete_job(job_id: str) -> Op[None]:
    return Op(Call("DELETE", f"/v1/jobs/{path_id(job_id)}"), _none)


def download_artifact(job_id: str) -> Call:
    return Call("GET", f"/v1/jobs/{path_id(job_id)}/artifact")


def predict(job_id: str, rows: Sequence[dict[str, Any]]) -> Op[Prediction]:
    if isinstance(rows, dict):
        raise TypeError("rows is a list of records (dicts), one per row")
    call = Call("POST", f"/v1/jobs/{path_id(job_id)}/predict", json={"rows": list(rows)})
    return Op(call, _model(Prediction))


def predict_path(job_id: str) -> str:
    return f"/v1/jobs/{path_id(job_id)}/predict"


parse_prediction = _model(Prediction)


def events_path(job_id: str) -> str:
    return f"/v1/jobs/{path_id(job_id)}/events"


# --- sweeps ----------------------------------------------------------------------------------


def submit_sweep(spec: dict[str, Any] | BaseModel, idempotency_key: str | None = None) -> Op[Sweep]:
    """POST /v1/sweeps. Not retried once it may have reached the server: the sweeps API does not
    honour an Idempotency-Key yet (the header is sent when given, for when it does)."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    call = Call("POST", "/v1/sweeps", json=_spec_dict(spec), headers=headers, retry=False)
    return Op(call, _model(Sweep))


def get_sweep(sweep_id: str) -> Op[Sweep]:
    return Op(Call("GET", f"/v1/sweeps/{path_id(sweep_id)}"), _model(Sweep))


def list_sweeps(
    limit: int | None = None,
    cursor: str | None = None,
    status: str | None = None,
    *,
    tags: dict[str, str] | None = None,
) -> Op[Page[Sweep]]:
    params = {"status": status, "limit": limit, "cursor": cursor, "tag": tag_params(tags)}
    return Op(Call("GET", "/v1/sweeps", params=params), _model(Page[Sweep]))


def cancel_sweep(sweep_id: str) -> Op[Sweep]:
    return Op(Call("POST", f"/v1/sweeps/{path_id(sweep_id)}/cancel"), _model(Sweep))


# --- registered models -------------------------------------------------------------------------


def _model_path(name: str) -> str:
    return f"/v1/models/{path_id(name)}"


def model_ref_path(name: str, alias: str | None = None, version: int | None = None) -> str:
    """``/v1/models/NAME@ALIAS`` or ``/v1/models/NAME/versions/N``: give exactly one of them."""
    if alias is not None and version is None:
        return f"{_model_path(name)}@{path_id(alias)}"
    if version is not None and alias is None:
        return f"{_model_path(name)}/versions/{int(version)}"
    raise ValueError("give exactly one of alias and version")


def create_model(
    name: str, description: str | None = None, tags: dict[str, str] | None = None
) -> Op[RegisteredModel]:
    body: dict[str, Any] = {"name": name, "tags": tags or {}}
    if description is not None:
        body["description"] = description
    return Op(Call("POST", "/v1/models", json=body), _model(RegisteredModel))


def get_model(name: str) -> Op[RegisteredModel]:
    return Op(Call("GET", _model_path(name)), _model(RegisteredModel))


def list_models(
    limit: int | None = None, cursor: str | None = None, *, tags: dict[str, str] | None = None
) -> Op[Page[RegisteredModel]]:
    params = {"limit": limit, "cursor": cursor, "tag": tag_params(tags)}
    return Op(Call("GET", "/v1/models", params=params), _model(Page[RegisteredModel]))


def delete_model(name: str) -> Op[None]:
    return Op(Call("DELETE", _model_path(name)), _none)


def register(name: str, job_id: str, description: str | None = None) -> Op[ModelVersion]:
    body: dict[str, Any] = {"job_id": str(job_id)}
    if description is not None:
        body["description"] = description
    call = Call("POST", f"{_model_path(name)}/versions", json=body)
    return Op(call, _model(ModelVersion))


def list_versions(
    name: str, limit: int | None = None, cursor: str | None = None
) -> Op[Page[ModelVersion]]:
    call = Call("GET", f"{_model_path(name)}/versions", params={"limit": limit, "cursor": cursor})
    return Op(call, _model(Page[ModelVersion]))


def get_version(name: str, version: int) -> Op[ModelVersion]:
    return Op(Call("GET", model_ref_path(name, version=version)), _model(ModelVersion))


def delete_version(name: str, version: int) -> Op[None]:
    return Op(Call("DELETE", model_ref_path(name, version=version)), _none)


def set_alias(name: str, alias: str, version: int) -> Op[Alias]:
    call = Call("PUT", f"{_model_path(name)}/aliases/{path_id(alias)}", json={"version": version})
    return Op(call, _model(Alias))


def delete_alias(name: str, alias: str) -> Op[None]:
    return Op(Call("DELETE", f"{_model_path(name)}/aliases/{path_id(alias)}"), _none)


def aliases(name: str) -> Op[Aliases]:
    return Op(Call("GET", f"{_model_path(name)}/aliases"), _model(Aliases))


def parse_model_prediction(response: httpx.Response) -> Prediction:
    """A prediction by model name, with the version that answered (X-Model-Version)."""
    prediction = Prediction.model_validate(response.json())
    header = response.headers.get("x-model-version")
    if header and header.isdigit():
        prediction.model_version = int(header)
    return prediction


def predict_model(
    name: str,
    rows: Sequence[dict[str, Any]],
    alias: str | None = None,
    version: int | None = None,
) -> Op[Prediction]:
    if isinstance(rows, dict):
        raise TypeError("rows is a list of records (dicts), one per row")
    call = Call(
        "POST", f"{model_ref_path(name, alias, version)}/predict", json={"rows": list(rows)}
    )
    return Op(call, parse_model_prediction)


def model_card(name: str, version: int) -> Op[str]:
    call = Call("GET", f"{model_ref_path(name, version=version)}/card")
    return Op(call, lambda response: response.text)


def download_model_artifact(
    name: str, alias: str | None = None, version: int | None = None, format: str = "native"
) -> Call:
    if format not in ("native", "onnx"):
        raise ValueError("format is 'native' or 'onnx'")
    params = {"format": format}
    return Call("GET", f"{model_ref_path(name, alias, version)}/artifact", params=params)


def plot(
    kind: str,
    *,
    job_id: str | None = None,
    sweep_id: str | None = None,
    job_ids: Sequence[str] | None = None,
    fmt: PlotFormat = "svg",
) -> Op[bytes]:
    """The plot's URL from its kind: job plots need job_id, sweep plots sweep_id, and
    ``loss-curves`` (several jobs on one chart) job_ids."""
    if fmt not in ("svg", "png"):
        raise ValueError("fmt is 'svg' or 'png'")
    params: dict[str, Any] = {"format": fmt}
    if kind in JOB_PLOTS:
        if job_id is None or sweep_id is not None:
            raise ValueError(f"plot {kind!r} is a job plot: pass job_id")
        path = f"/v1/jobs/{path_id(job_id)}/plots/{kind}"
    elif kind in SWEEP_PLOTS:
        if sweep_id is None or job_id is not None:
            raise ValueError(f"plot {kind!r} is a sweep plot: pass sweep_id")
        path = f"/v1/sweeps/{path_id(sweep_id)}/plots/{kind}"
    elif kind in MULTI_JOB_PLOTS:
        ids = list(job_ids or ([job_id] if job_id else []))
        if not ids:
            raise ValueError(f"plot {kind!r} compares jobs: pass job_ids")
        path = f"/v1/plots/{kind}"
        params["jobs"] = ",".join(str(i) for i in ids)
    else:
        raise ValueError(f"unknown plot kind {kind!r}; one of {', '.join(sorted(PLOT_KINDS))}")
    accept = "image/svg+xml" if fmt == "svg" else "image/png"
    return Op(Call("GET", path, params=params, headers={"Accept": accept}), _bytes)
