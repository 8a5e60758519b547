"""Tags on jobs and sweeps, and jobs ordered by a final metric with stable pages, on both
databases."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest

from tests.conftest import upload_tiny, wait_for, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")

# Three identical specs tie on every metric: the pages must still follow on from each other.
STRENGTHS = [0.001, 0.3, 0.3, 0.3, 3.0, 30.0]


@pytest.fixture(scope="module")
def ranked(module_api: httpx.Client, worker: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """Every job of the module's tenant: the tests that take it add none."""
    api = module_api
    dataset_id = upload_tiny(api)
    ids = []
    for number, strength in enumerate(STRENGTHS):
        body = {
            "dataset_id": dataset_id,
            "target": "y",
            "regularization": {"penalty": "l2", "strength": strength},
            "tags": {"exp": "even" if number % 2 == 0 else "odd", "suite": "order"},
        }
        response = api.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        assert response.json()["tags"] == body["tags"]
        ids.append(response.json()["id"])
    jobs = [wait_for_job(api, job_id) for job_id in ids]
    assert all(job["status"] == "succeeded" for job in jobs)
    return jobs


def _pages(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/jobs", params=query)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def _loss(job: dict[str, Any]) -> float:
    return float(job["summary"]["final"]["validation"]["log_loss"])


def test_order_by_a_final_metric_pages_stably(
    module_api: httpx.Client, ranked: list[dict[str, Any]]
) -> None:
    api = module_api
    expected = sorted(ranked, key=lambda j: (_loss(j), j["id"]))
    assert len({_loss(j) for j in ranked}) < len(ranked), "the fixture should hold ties"
    for limit in (1, 2, 4):
        paged = _pages(api, order_by="validation.log_loss", limit=limit)
        assert [j["id"] for j in paged] == [j["id"] for j in expected], limit
    descending = _pages(api, order_by="validation.log_loss", order="desc", limit=2)
    assert [j["id"] for j in descending] == [j["id"] for j in reversed(expected)]
    # Accuracy is better when greater: best first means descending by default.
    accuracy = _pages(api, order_by="validation.accuracy", limit=3)
    values = [j["summary"]["final"]["validation"]["accuracy"] for j in accuracy]
    assert values == sorted(values, reverse=True) and len(accuracy) == len(ranked)
    # Filters combine with the order.
    odd = _pages(api, order_by="validation.log_loss", tag="exp:odd", limit=1)
    assert [j["id"] for j in odd] == [j["id"] for j in expected if j["tags"]["exp"] == "odd"]
    assert _pages(api, order_by="validation.log_loss", status="failed") == []
    assert _pages(api, order_by="test.log_loss") == []  # no job held out a test split


def test_order_by_refuses_what_it_cannot_order(
    module_api: httpx.Client, ranked: list[dict[str, Any]]
) -> None:
    api = module_api
    for order_by in ("log_loss", "validation.nope", "holdout.accuracy", "validation."):
        response = api.get("/v1/jobs", params={"order_by": order_by})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "order_by"
        assert "validation.log_loss" in response.json()["detail"]
    assert (
        api.get("/v1/jobs", params={"order_by": "validation.r2", "order": "up"}).status_code == 422
    )
    first = api.get("/v1/jobs", params={"order_by": "validation.log_loss", "limit": 1}).json()
    other = api.get(
        "/v1/jobs",
        params={"order_by": "validation.accuracy", "limit": 1, "cursor": first["next_cursor"]},
    )
    assert other.status_code == 422, other.text
    assert "ordered by validation.log_loss:asc" in other.json()["detail"]
    newest = api.get("/v1/jobs", params={"limit": 1}).json()
    mixed = api.get(
        "/v1/jobs",
        params={"order_by": "validation.log_loss", "cursor": newest["next_cursor"]},
    )
    assert mixed.status_code == 422, mixed.text


def test_tags_filter_jobs(module_api: httpx.Client, ranked: list[dict[str, Any]]) -> None:
    api = module_api
    even = _pages(api, tag="exp:even")
    assert sorted(j["id"] for j in even) == sorted(ranked[i]["id"] for i in (0, 2, 4))
    both = _pages(api, tag=["exp:odd", "suite:order"])
    assert sorted(j["id"] for j in both) == sorted(ranked[i]["id"] for i in (1, 3, 5))
    assert _pages(api, tag=["exp:odd", "suite:other"]) == []
    assert _pages(api, tag="exp:") == []
    assert api.get(f"/v1/jobs/{ranked[0]['id']}").json()["tags"] == {
        "exp": "even",
        "suite": "order",
    }
    bad = api.get("/v1/jobs", params={"tag": "no colon"})
    assert bad.status_code == 422 and "key:value" in bad.json()["detail"]
    too_many = {f"k{i}": "v" for i in range(21)}
    response = api.post(
        "/v1/jobs", json={"dataset_id": ranked[0]["dataset_id"], "target": "y", "tags": too_many}
    )
    assert response.status_code == 422, response.text
    response = api.post(
        "/v1/jobs",
        json={"dataset_id": ranked[0]["dataset_id"], "target": "y", "tags": {"a b": "c"}},
    )
    assert response.status_code == 422, response.text


def test_tags_filter_sweeps_and_pass_to_the_refit(api: httpx.Client) -> None:
    dataset_id = upload_tiny(api)
    bodies = [
        {"dataset_id": dataset_id, "target": "y", "tags": tags, "cv": {"folds": 2},
         "search": {"penalty": ["l2"], "strength": [0.1]}}
        for tags in ({"team": "a"}, {"team": "b"})
    ]  # fmt: skip
    sweeps = [api.post("/v1/sweeps", json=body).json() for body in bodies]
    assert [s["tags"] for s in sweeps] == [{"team": "a"}, {"team": "b"}]
    listed = api.get("/v1/sweeps", params={"tag": "team:a"}).json()["items"]
    assert [s["id"] for s in listed] == [sweeps[0]["id"]]
    done = wait_for(
        lambda: (s := api.get(f"/v1/sweeps/{sweeps[0]['id']}").json())["refit_job_id"] and s,
        timeout=120,
        message="the sweep's refit",
    )
    refit = api.get(f"/v1/jobs/{done['refit_job_id']}").json()
    assert refit["tags"] == {"team": "a"}
    trials = api.get("/v1/jobs", params={"tag": "team:a"}).json()["items"]
    assert [j["id"] for j in trials] == [refit["id"]]  # trials are not tagged, the refit is
