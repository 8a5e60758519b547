"""Registered models end to end over HTTP, on both databases: every route, the 409s, alias
history, serving by name and by version, tenant isolation."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.conftest import Server, insert_job, upload_tiny, wait_for_job
from tests.registry.conftest import Trained, unique

pytestmark = pytest.mark.usefixtures("worker")


def _create(client: httpx.Client, name: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/models", json={"name": name, **body})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/v1/models/{name}"
    return response.json()


def _register(client: httpx.Client, name: str, job_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/models/{name}/versions", json={"job_id": job_id, **body})
    assert response.status_code == 201, response.text
    version = response.json()
    assert response.headers["location"] == f"/v1/models/{name}/versions/{version['version']}"
    return version


def _alias(client: httpx.Client, name: str, alias: str, version: int) -> dict[str, Any]:
    response = client.put(f"/v1/models/{name}/aliases/{alias}", json={"version": version})
    assert response.status_code == 200, response.text
    return response.json()


def _problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    for word in words:
        assert word in body["detail"], body
    return body


def test_models_and_versions(server: Server, trained: Trained) -> None:
    name = unique("cancer")
    with trained.client(server) as client:
        created = _create(client, name, description="malignancy", tags={"team": "onc"})
        assert created == {**created, "name": name, "latest_version": None, "aliases": {}}
        _problem(client.post("/v1/models", json={"name": name}), 409, "already exists")
        _problem(client.post("/v1/models", json={"name": "no spaces"}), 422)

        first = _register(client, name, trained.jobs[0]["id"], description="L1 0.05")
        second = _register(client, name, trained.jobs[1]["id"])
        assert (first["version"], second["version"]) == (1, 2)
        job = trained.jobs[0]
        assert first["job_id"] == job["id"] and first["description"] == "L1 0.05"
        assert first["artifact"]["sha256"] == job["artifact"]["sha256"]
        assert first["artifact"]["url"] == f"/v1/models/{name}/versions/1/artifact"
        assert first["dataset"]["sha256"] == trained.dataset_sha256
        assert (first["dataset"]["n_rows"], first["dataset"]["n_columns"]) == (569, 31)
        assert first["spec"] == job["spec"] and first["task"] == "classification"
        assert first["native_params"] == job["native_params"]
        assert first["metrics"]["final"] == job["summary"]["final"]
        assert first["library_versions"]["sklearn"] == job["versions"]["sklearn"]
        assert first["created_by"].startswith("k-")

        model = client.get(f"/v1/models/{name}").json()
        assert model["latest_version"] == 2 and model["tags"] == {"team": "onc"}
        assert client.get(f"/v1/models/{name}/versions/1").json() == {**first, "aliases": []}

        page = client.get(f"/v1/models/{name}/versions", params={"limit": 1}).json()
        assert [v["version"] for v in page["items"]] == [2]
        rest = client.get(
            f"/v1/models/{name}/versions", params={"limit": 1, "cursor": page["next_cursor"]}
        ).json()
        assert [v["version"] for v in rest["items"]] == [1] and rest["next_cursor"] is None

        listed = client.get("/v1/models", params={"tag": "team:onc"}).json()["items"]
        assert name in [m["name"] for m in listed]
        assert client.get("/v1/models", params={"tag": "team:other"}).json()["items"] == []
        _problem(client.get("/v1/models", params={"tag": "no-colon"}), 422, "key:value")

        _problem(client.get(f"/v1/models/{name}/versions/9"), 404, "no version 9")
        _problem(client.get("/v1/models/nothing-here"), 404, "no model named")


def test_only_a_succeeded_job_of_the_tenant_is_registered(server: Server, trained: Trained) -> None:
    name = unique("strict")
    failing = insert_job(
        server.database_url,
        tenant=trained.tenant,
        dataset_id=trained.dataset_id,
        trainer="test-raise",
        target="target",
    )
    other_key = server.new_key()
    with server.client(other_key) as other:
        foreign = upload_tiny(other)
    with trained.client(server) as client:
        _create(client, name)
        assert wait_for_job(client, failing)["status"] == "failed"
        _problem(
            client.post(f"/v1/models/{name}/versions", json={"job_id": failing}),
            409,
            "only a succeeded job",
        )
        body = _problem(
            client.post(f"/v1/models/{name}/versions", json={"job_id": foreign}), 422, "no job"
        )
        assert body["errors"] == [{"field": "job_id", "message": "unknown job"}]
        _problem(
            client.post("/v1/models/absent/versions", json={"job_id": trained.jobs[0]["id"]}),
            404,
            "no model named 'absent'",
        )
        assert client.get(f"/v1/models/{name}").json()["latest_version"] is None


def test_aliases_move_with_history_and_guard_versions(server: Server, trained: Trained) -> None:
    name = unique("aliased")
    with trained.client(server) as client:
        _create(client, name)
        for job in trained.jobs[:2]:
            _register(client, name, job["id"])
        assert _alias(client, name, "champion", 1)["version"] == 1
        moved = _alias(client, name, "champion", 2)
        assert moved["version"] == 2 and moved["updated_by"].startswith("k-")
        _alias(client, name, "challenger", 1)
        _alias(client, name, "challenger", 1)  # no move, no history
        _problem(
            client.put(f"/v1/models/{name}/aliases/champion", json={"version": 7}),
            422,
            "no version 7",
        )
        _problem(client.put(f"/v1/models/{name}/aliases/1bad", json={"version": 1}), 422, "alias")

        listed = client.get(f"/v1/models/{name}/aliases").json()
        assert {a["alias"]: a["version"] for a in listed["aliases"]} == {
            "challenger": 1,
            "champion": 2,
        }
        moves = [(e["alias"], e["from_version"], e["to_version"]) for e in listed["history"]]
        assert moves == [("challenger", None, 1), ("champion", 1, 2), ("champion", None, 1)]
        assert all(e["by"].startswith("k-") and e["at"] for e in listed["history"])
        assert client.get(f"/v1/models/{name}").json()["aliases"] == {
            "challenger": 1,
            "champion": 2,
        }
        assert client.get(f"/v1/models/{name}/versions/2").json()["aliases"] == ["champion"]

        _problem(client.delete(f"/v1/models/{name}/versions/2"), 409, "'champion'")
        _problem(client.delete(f"/v1/models/{name}"), 409, "2 version(s)")
        assert client.delete(f"/v1/models/{name}/aliases/champion").status_code == 204
        _problem(client.delete(f"/v1/models/{name}/aliases/champion"), 404, "no alias")
        first = client.get(f"/v1/models/{name}/aliases").json()["history"][0]
        assert (first["alias"], first["from_version"], first["to_version"]) == ("champion", 2, None)
        _problem(client.post(f"/v1/models/{name}@champion/predict", json={"rows": trained.rows}),
                 404, "no alias 'champion'")  # fmt: skip

        assert client.delete(f"/v1/models/{name}/versions/2").status_code == 204
        _problem(client.get(f"/v1/models/{name}/versions/2"), 404)
        _problem(client.delete(f"/v1/models/{name}/versions/1"), 409, "'challenger'")
        assert client.delete(f"/v1/models/{name}/aliases/challenger").status_code == 204
        assert client.delete(f"/v1/models/{name}/versions/1").status_code == 204
        # Numbers are never given twice.
        assert _register(client, name, trained.jobs[0]["id"])["version"] == 3
        assert client.delete(f"/v1/models/{name}/versions/3").status_code == 204
        assert client.delete(f"/v1/models/{name}").status_code == 204
        _problem(client.get(f"/v1/models/{name}/aliases"), 404)


def test_a_job_behind_a_version_is_not_deleted(server: Server, trained: Trained) -> None:
    name = unique("kept")
    with trained.client(server) as client:
        dataset_id = trained.dataset_id
        job = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "target"}).json()
        assert wait_for_job(client, job["id"])["status"] == "succeeded"
        _create(client, name)
        _register(client, name, job["id"])
        _problem(client.delete(f"/v1/jobs/{job['id']}"), 409, f"version 1 of model {name!r}")
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
        assert client.delete(f"/v1/models/{name}/versions/1").status_code == 204
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204


def test_serving_by_alias_and_version_answers_as_the_job(server: Server, trained: Trained) -> None:
    name = unique("served")
    rows = {"rows": trained.rows}
    with trained.client(server) as client:
        _create(client, name)
        for job in trained.jobs[:2]:
            _register(client, name, job["id"])
        _alias(client, name, "champion", 2)
        job = trained.jobs[1]
        by_job = client.post(f"/v1/jobs/{job['id']}/predict", json=rows)
        by_alias = client.post(f"/v1/models/{name}@champion/predict", json=rows)
        by_version = client.post(f"/v1/models/{name}/versions/2/predict", json=rows)
        assert by_job.status_code == by_alias.status_code == by_version.status_code == 200
        assert by_alias.json() == by_job.json() == by_version.json()
        assert by_alias.headers["x-model-version"] == by_version.headers["x-model-version"] == "2"
        other = client.post(f"/v1/models/{name}/versions/1/predict", json=rows)
        assert other.headers["x-model-version"] == "1"
        assert other.json()["job_id"] == trained.jobs[0]["id"]

        csv = pd.DataFrame(trained.rows).to_csv(index=False).encode()
        from_csv = client.post(
            f"/v1/models/{name}@champion/predict", files={"file": ("rows.csv", csv)}
        )
        assert from_csv.json()["predictions"] == by_job.json()["predictions"]
        scored = client.post(
            f"/v1/models/{name}@champion/predict", json={"dataset_id": trained.dataset_id}
        )
        assert scored.status_code == 200 and scored.headers["x-model-version"] == "2"
        assert scored.headers["content-type"].startswith("text/csv")
        table = pd.read_csv(io.StringIO(scored.text))
        assert len(table) == 569 and {"prediction", "proba_0", "proba_1"} <= set(table.columns)

        _problem(client.post(f"/v1/models/{name}@champion/predict", json={"rows": []}), 422)
        _problem(
            client.post(f"/v1/models/{name}@champion/predict", json={"rows": [{"x": 1}]}),
            422,
            "mean radius",
        )
        _problem(client.post(f"/v1/models/{name}@nobody/predict", json=rows), 404, "no alias")
        _problem(client.post(f"/v1/models/{name}/versions/5/predict", json=rows), 404)
        _problem(client.post("/v1/models/ghost@champion/predict", json=rows), 404, "ghost")


def test_artifacts_by_alias_and_version(server: Server, trained: Trained) -> None:
    name = unique("artifact")
    job = trained.jobs[0]
    with trained.client(server) as client:
        _create(client, name)
        _register(client, name, job["id"])
        _alias(client, name, "prod", 1)
        native = client.get(f"/v1/jobs/{job['id']}/artifact").content
        for path in (f"/v1/models/{name}@prod/artifact", f"/v1/models/{name}/versions/1/artifact"):
            response = client.get(path)
            assert response.status_code == 200, response.text
            assert response.content == native
            assert response.headers["x-artifact-sha256"] == hashlib.sha256(native).hexdigest()
            assert response.headers["x-model-version"] == "1"
            assert f"{name}-v1.skops" in response.headers["content-disposition"]
        onnx = client.get(f"/v1/models/{name}@prod/artifact", params={"format": "onnx"})
        assert onnx.status_code == 200, onnx.text
        assert onnx.content == client.get(f"/v1/jobs/{job['id']}/artifact?format=onnx").content
        _problem(client.get(f"/v1/models/{name}@prod/artifact", params={"format": "x"}), 422)


def test_tenants_do_not_see_each_others_models(server: Server, trained: Trained) -> None:
    name = unique("private")
    with trained.client(server) as client:
        _create(client, name)
        _register(client, name, trained.jobs[0]["id"])
        _alias(client, name, "champion", 1)
        assert client.post(f"/v1/models/{name}@champion/predict", json={"rows": trained.rows})
    with server.client(server.new_key()) as stranger:
        rows = {"rows": trained.rows}
        for response in (
            stranger.get(f"/v1/models/{name}"),
            stranger.get(f"/v1/models/{name}/versions"),
            stranger.get(f"/v1/models/{name}/versions/1"),
            stranger.get(f"/v1/models/{name}/versions/1/card"),
            stranger.get(f"/v1/models/{name}/aliases"),
            stranger.get(f"/v1/models/{name}@champion/artifact"),
            stranger.post(f"/v1/models/{name}@champion/predict", json=rows),
            stranger.post(f"/v1/models/{name}/versions/1/predict", json=rows),
            stranger.put(f"/v1/models/{name}/aliases/champion", json={"version": 1}),
            stranger.delete(f"/v1/models/{name}/versions/1"),
            stranger.delete(f"/v1/models/{name}"),
        ):
            _problem(response, 404, "no model named")
        assert name not in [m["name"] for m in stranger.get("/v1/models").json()["items"]]
        # The same name is free in another tenant, and its alias answers with its own model.
        _create(stranger, name)
        _problem(
            stranger.post(f"/v1/models/{name}/versions", json={"job_id": trained.jobs[0]["id"]}),
            422,
            "no job",
        )
        _problem(stranger.post(f"/v1/models/{name}@champion/predict", json=rows), 404, "no alias")
