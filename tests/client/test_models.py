"""The client's and the CLI's registered-model verbs against a real server and worker."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.client import AsyncClient, Client, Conflict, NotFound, ValidationFailed
from tests.conftest import Server

pytestmark = pytest.mark.usefixtures("worker")

SPEC = {"target": "target", "regularization": {"penalty": "l1", "strength": 0.05}}


def _trained(client: Client, cancer_csv: Path, count: int) -> tuple[str, list[str]]:
    dataset = client.upload(cancer_csv)
    jobs = []
    for n in range(count):
        body = {**SPEC, "dataset_id": dataset.id, "tags": {"run": str(n)}}
        body["regularization"] = {"penalty": "l2", "strength": 0.1 * (n + 1)}
        jobs.append(client.submit(body).id)
    assert all(client.wait(job_id, timeout=120).status == "succeeded" for job_id in jobs)
    return dataset.id, jobs


def test_client_registers_moves_and_predicts_by_name(
    client: Client, cancer_csv: Path, tmp_path: Path
) -> None:
    dataset_id, jobs = _trained(client, cancer_csv, 2)
    rows = [{k: v for k, v in r.items() if k != "target"} for r in client.preview(dataset_id).rows]

    model = client.create_model("cancer", "malignancy", tags={"team": "onc"})
    assert (model.name, model.latest_version, model.tags) == ("cancer", None, {"team": "onc"})
    with pytest.raises(Conflict):
        client.create_model("cancer")
    first, second = (client.register("cancer", job_id) for job_id in jobs)
    assert (first.version, second.version, second.job_id) == (1, 2, jobs[1])
    with pytest.raises(ValidationFailed) as bad:
        client.register("cancer", "00000000-0000-0000-0000-000000000000")
    assert bad.value.errors[0]["field"] == "job_id"

    assert client.set_alias("cancer", "champion", 1).version == 1
    by_alias = client.predict_model("cancer", rows, alias="champion")
    assert by_alias.model_version == 1
    assert by_alias.predictions == client.predict(jobs[0], rows).predictions
    client.set_alias("cancer", "champion", 2)
    assert client.predict_model("cancer", rows, alias="champion").model_version == 2
    assert client.predict_model("cancer", rows, version=1).model_version == 1
    assert client.predict_model_csv("cancer", cancer_csv, alias="champion").model_version == 2
    with pytest.raises(ValueError):
        client.predict_model("cancer", rows)  # neither alias nor version

    aliases = client.aliases("cancer")
    assert [(a.alias, a.version) for a in aliases.aliases] == [("champion", 2)]
    assert [(e.from_version, e.to_version) for e in aliases.history] == [(1, 2), (None, 1)]
    assert client.get_model("cancer").aliases == {"champion": 2}
    assert [v.version for v in client.list_versions("cancer").items] == [2, 1]
    assert client.get_version("cancer", 2).aliases == ["champion"]
    assert [m.name for m in client.iter_models(tags={"team": "onc"})] == ["cancer"]
    assert client.list_models(tags={"team": "other"}).items == []

    path = client.download_model_artifact("cancer", tmp_path, alias="champion")
    assert path.name == "cancer-v2.skops"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == second.artifact.sha256  # type: ignore[union-attr]
    assert client.model_card("cancer", 2).startswith("# cancer, version 2")

    ranked = client.list_jobs(order_by="validation.log_loss", tags={"run": "1"}).items
    assert [j.id for j in ranked] == [jobs[1]]

    with pytest.raises(Conflict):
        client.delete_version("cancer", 2)
    client.delete_alias("cancer", "champion")
    for version in (2, 1):
        client.delete_version("cancer", version)
    client.delete_model("cancer")
    with pytest.raises(NotFound):
        client.get_model("cancer")


def test_async_client_mirrors_the_model_verbs(server: Server, key: str, cancer_csv: Path) -> None:
    with Client(server.base_url, key) as sync:
        dataset_id, jobs = _trained(sync, cancer_csv, 1)
        rows = [
            {k: v for k, v in r.items() if k != "target"} for r in sync.preview(dataset_id).rows
        ]

    async def main() -> None:
        async with AsyncClient(server.base_url, key) as rl:
            await rl.create_model("async")
            version = await rl.register("async", jobs[0], "from asyncio")
            await rl.set_alias("async", "prod", version.version)
            answer = await rl.predict_model("async", rows, alias="prod")
            assert answer.model_version == 1 and len(answer.predictions) == len(rows)
            assert [m.name async for m in rl.iter_models()] == ["async"]
            assert (await rl.aliases("async")).aliases[0].alias == "prod"
            assert "## Loading it" in await rl.model_card("async", 1)

    asyncio.run(main())


def _ok(result: Any) -> str:
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def test_cli_models_verbs(
    server: Server, key: str, run: Callable[..., Any], cancer_csv: Path, tmp_path: Path
) -> None:
    with Client(server.base_url, key) as client:
        dataset_id, jobs = _trained(client, cancer_csv, 2)
        row = {
            k: v for k, v in client.preview(dataset_id, limit=1).rows[0].items() if k != "target"
        }

    assert "created model cancer" in _ok(run("models", "create", "cancer", "--tag", "team:onc"))
    assert "as cancer version 1" in _ok(run("models", "register", "cancer", jobs[0]))
    registered = json.loads(_ok(run("models", "register", "cancer", jobs[1], "--json")))
    assert registered["version"] == 2
    assert "cancer@champion → version 1" in _ok(run("models", "alias", "cancer", "champion", "1"))
    _ok(run("models", "alias", "cancer", "champion", "2"))

    shown = _ok(run("models", "show", "cancer"))
    assert "champion → 2" in shown and jobs[0] in shown and jobs[1] in shown
    history = _ok(run("models", "aliases", "cancer"))
    assert "history" in history and history.count("champion") >= 3
    listed = json.loads(_ok(run("models", "list", "--tag", "team:onc", "--json")))
    assert [m["name"] for m in listed["items"]] == ["cancer"]

    predicted = json.loads(
        _ok(run("models", "predict", "cancer@champion", "--rows", json.dumps([row]), "--json"))
    )
    assert predicted["model_version"] == 2 and len(predicted["predictions"]) == 1
    table = _ok(run("models", "predict", "cancer", "--version", "1", "--csv", str(cancer_csv)))
    assert "version 1" in table and "P(1)" in table
    bad = run("models", "predict", "cancer", "--rows", "[]")  # neither @ALIAS nor --version
    assert bad.exit_code == 2 and "NAME@ALIAS" in bad.output

    assert _ok(run("models", "card", "cancer", "2")).startswith("# cancer, version 2")
    saved = json.loads(_ok(run("models", "download", "cancer@champion", "--out", str(tmp_path),
                               "--json")))  # fmt: skip
    assert Path(saved["path"]).name == "cancer-v2.skops"

    refused = run("models", "delete-version", "cancer", "2")
    assert refused.exit_code == 1 and "champion" in refused.stderr
    ranked = _ok(run("jobs", "list", "--order-by", "validation.accuracy", "--tag", "run:0"))
    assert jobs[0] in ranked and jobs[1] not in ranked and "validation.accuracy" in ranked
    _ok(run("models", "unalias", "cancer", "champion"))
    for version in ("1", "2"):
        _ok(run("models", "delete-version", "cancer", version))
    assert "deleted model cancer" in _ok(run("models", "delete", "cancer"))
