"""Plot routes: SVG by default, PNG on request, rendered on the server and cached."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from service.deps import PrincipalDep, SessionDep
from service.ids import parse_id
from service.plots import service
from service.plots.service import JOB_LIST, MAX_OVERLAY, Format, JobPlot, PlotCache, SweepPlot

router = APIRouter(tags=["plots"])

MEDIA = {"svg": "image/svg+xml", "png": "image/png"}
IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/svg+xml": {}, "image/png": {}}, "description": "The plot."},
    404: {"description": "This plot does not exist for this resource."},
    409: {"description": "The data for this plot does not exist yet."},
}


def _cache(request: Request) -> PlotCache:
    cache: PlotCache | None = getattr(request.app.state, "plot_cache", None)
    if cache is None:
        cache = request.app.state.plot_cache = PlotCache()
    return cache


def _image(data: bytes, fmt: Format) -> Response:
    return Response(data, media_type=MEDIA[fmt], headers={"Cache-Control": "private, max-age=5"})


@router.get(
    "/v1/jobs/{job_id}/plots/{kind}",
    summary="A job's plot: loss curve, coefficients or learning curve",
    response_class=Response,
    responses=IMAGE_RESPONSES,
)
def job_plot(
    job_id: str,
    kind: JobPlot,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    format: Format = "svg",
) -> Response:
    data = service.job_plot(
        session,
        _cache(request),
        tenant_id=principal.tenant_id,
        job_id=parse_id(job_id, "job"),
        kind=kind,
        fmt=format,
    )
    return _image(data, format)


@router.get(
    "/v1/sweeps/{sweep_id}/plots/{kind}",
    summary="A sweep's plot: validation curve or regularization path",
    response_class=Response,
    responses=IMAGE_RESPONSES,
)
def sweep_plot(
    sweep_id: str,
    kind: SweepPlot,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    format: Format = "svg",
    penalty: Annotated[
        str | None, Query(description="Regularization path of this penalty; default: the best.")
    ] = None,
) -> Response:
    data = service.sweep_plot(
        session,
        _cache(request),
        tenant_id=principal.tenant_id,
        sweep_id=parse_id(sweep_id, "sweep"),
        kind=kind,
        fmt=format,
        penalty=penalty,
    )
    return _image(data, format)


@router.get(
    "/v1/plots/loss-curves",
    summary="Overlay the loss curves of several jobs",
    response_class=Response,
    responses=IMAGE_RESPONSES,
)
def loss_curves(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    job_ids: Annotated[
        str,
        Query(
            alias="jobs",
            pattern=JOB_LIST,
            description=f"1 to {MAX_OVERLAY} comma-separated job ids.",
        ),
    ],
    format: Format = "svg",
) -> Response:
    data = service.overlaid_loss_curves(
        session, _cache(request), tenant_id=principal.tenant_id, job_ids=job_ids, fmt=format
    )
    return _image(data, format)
