"""End to end over HTTP against the real server: uploads, read-back, the bad-upload catalogue."""

from __future__ import annotations

import io
import uuid

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import Server, insert_job, run_cli, upload_tiny, wait_for_job


def _frame(n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "k": rng.integers(0, 5, size=n),
            "color": rng.choice(["red", "green", "blue"], size=n),
            "flag": rng.choice([True, False], size=n),
        }
    )


def _upload(
    client: httpx.Client, data: bytes, filename: str = "d.csv", **fields: str
) -> httpx.Response:
    return client.post("/v1/datasets", files={"file": (filename, data)}, data=fields)


def test_key_from_cli_authorizes(server: Server) -> None:
    out = run_cli(server.database_url, "keys", "create", "--name", f"cli-{uuid.uuid4().hex[:8]}")
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("rl_")
    with server.client(key) as client:
        assert client.get("/v1/datasets").status_code == 200
    with server.client("rl_wrong") as client:
        response = client.get("/v1/datasets")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


def test_revoked_key_is_refused(server: Server) -> None:
    name = f"rev-{uuid.uuid4().hex[:8]}"
    key = run_cli(server.database_url, "keys", "create", "--name", name).stdout.splitlines()[-1]
    run_cli(server.database_url, "keys", "revoke", name)
    listing = run_cli(server.database_url, "keys", "list").stdout
    assert name in listing and "revoked" in listing
    with server.client(key) as client:
        # The verifier trusts a key for at most key_cache_seconds; this key was never seen.
        assert client.get("/v1/datasets").status_code == 401
    duplicate = run_cli(server.database_url, "keys", "create", "--name", name, check=False)
    assert duplicate.returncode != 0 and "already exists" in duplicate.stderr


def test_csv_upload_round_trip(api: httpx.Client) -> None:
    frame = _frame()
    response = _upload(api, frame.to_csv(index=False).encode(), name="colors")
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/datasets/{body['id']}"
    assert body["name"] == "colors" and body["format"] == "csv"
    assert (body["n_rows"], body["n_columns"]) == (500, 4)
    dtypes = {c["name"]: c["dtype"] for c in body["columns"]}
    assert dtypes == {"x": "float", "k": "integer", "color": "categorical", "flag": "boolean"}
    k = next(c for c in body["columns"] if c["name"] == "k")
    assert k["n_unique"] == 5 and k["min"] == 0 and k["max"] == 4

    preview = api.get(f"/v1/datasets/{body['id']}/preview", params={"limit": 3}).json()
    assert len(preview["rows"]) == 3
    assert preview["rows"][0]["color"] == frame["color"][0]

    csv_back = api.get(f"/v1/datasets/{body['id']}/download", params={"format": "csv"})
    assert csv_back.status_code == 200
    again = pd.read_csv(io.BytesIO(csv_back.content))
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)

    parquet_back = api.get(f"/v1/datasets/{body['id']}/download", params={"format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet_back.content))
    np.testing.assert_allclose(table.column("x").to_numpy(), frame["x"].to_numpy())

    assert api.get(f"/v1/datasets/{body['id']}").json()["sha256"] == body["sha256"]
    assert api.delete(f"/v1/datasets/{body['id']}").status_code == 204
    assert api.get(f"/v1/datasets/{body['id']}").status_code == 404


def test_a_type_found_late_is_stored_as_the_rewritten_file(api: httpx.Client) -> None:
    """The first pass streams to the store; a column widened past its first block makes the
    child write the file again, and the stored blob is that second file, whole."""
    n = 400_000  # over a megabyte: the float falls in a later parse block than the first
    k = [str(i % 7) for i in range(n - 1)] + ["2.5"]
    data = ("k,y\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate(k))).encode()
    assert len(data) > 1 << 20
    response = _upload(api, data, name="late-float")
    assert response.status_code == 201, response.text
    body = response.json()
    assert {c["name"]: c["dtype"] for c in body["columns"]}["k"] == "float"
    parquet_back = api.get(f"/v1/datasets/{body['id']}/download", params={"format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet_back.content))
    assert table.num_rows == n and pa.types.is_floating(table.schema.field("k").type)
    assert table.column("k")[n - 1].as_py() == 2.5 and table.column("k")[7].as_py() == 0


def test_parquet_upload(api: httpx.Client) -> None:
    frame = _frame(200)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    response = _upload(api, sink.getvalue(), filename="d.parquet")
    assert response.status_code == 201, response.text
    assert response.json()["format"] == "parquet"
    back = api.get(f"/v1/datasets/{response.json()['id']}/download", params={"format": "parquet"})
    pd.testing.assert_frame_equal(
        pq.read_table(io.BytesIO(back.content)).to_pandas(), frame, check_dtype=False
    )


def test_list_is_paginated(api: httpx.Client) -> None:
    ids = {_upload(api, b"a,b\n1,2\n", name=f"n{i}").json()["id"] for i in range(3)}
    first = api.get("/v1/datasets", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = api.get("/v1/datasets", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    seen = {d["id"] for d in first["items"] + second["items"]}
    assert seen == ids and second["next_cursor"] is None
    assert api.get("/v1/datasets", params={"cursor": "garbage"}).status_code == 422


BAD_UPLOADS = [
    ("empty", b"", 422, "empty"),
    ("header only", b"a,b,c\n", 422, "no data rows"),
    ("duplicate names", b"a,b,a\n1,2,3\n", 422, "'a'"),
    ("empty name", b"a,,c\n1,2,3\n", 422, "2"),
    ("ragged", b"a,b\n1,2\n3,4,5\n", 422, "row 3"),
    ("non utf-8", b"a,b\n1,caf\xe9\n", 422, "line 2"),
    ("binary garbage", bytes(range(256)) * 40, 415, "CSV or Parquet"),
    ("zip", b"PK\x03\x04" + b"\x00" * 100, 415, "CSV or Parquet"),
]


@pytest.mark.parametrize(
    ("case", "data", "status", "says"), BAD_UPLOADS, ids=[c[0] for c in BAD_UPLOADS]
)
def test_bad_uploads_are_refused_and_nothing_is_stored(
    api: httpx.Client, case: str, data: bytes, status: int, says: str
) -> None:
    before = api.get("/v1/datasets").json()["items"]
    response = _upload(api, data)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert says.lower() in problem["detail"].lower()
    assert api.get("/v1/datasets").json()["items"] == before


def test_too_many_columns(api: httpx.Client) -> None:
    header = ",".join(f"c{i}" for i in range(201))
    response = _upload(api, (header + "\n" + ",".join("1" * 201) + "\n").encode())
    assert response.status_code == 422
    assert "201" in response.json()["detail"] and "200" in response.json()["detail"]


def test_over_the_size_limit_is_413_while_streaming(api: httpx.Client) -> None:
    def body():
        boundary = b"XyZ"
        yield (
            b"--"
            + boundary
            + b'\r\nContent-Disposition: form-data; name="file"; filename="b.csv"\r\n\r\n'
        )
        yield b"a,b\n"
        for _ in range(20):  # 20 MiB against an 8 MiB limit, with no Content-Length to go by
            yield b"1,2\n" * (256 * 1024)
        yield b"\r\n--" + boundary + b"--\r\n"

    response = api.post(
        "/v1/datasets",
        content=body(),
        headers={"content-type": "multipart/form-data; boundary=XyZ"},
    )
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


def test_not_multipart_is_415(api: httpx.Client) -> None:
    response = api.post("/v1/datasets", content=b"a,b\n1,2\n", headers={"content-type": "text/csv"})
    assert response.status_code == 415


def test_malformed_and_unknown_ids_are_404(api: httpx.Client) -> None:
    for path in ("/v1/datasets/not-a-uuid", f"/v1/datasets/{uuid.uuid4()}"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json()["title"] == "Not Found"


def test_other_tenants_datasets_are_invisible(server: Server, api: httpx.Client) -> None:
    dataset_id = _upload(api, b"a,b\n1,2\n3,4\n").json()["id"]
    with server.client(server.new_key()) as other:
        assert other.get("/v1/datasets").json()["items"] == []
        for method, path in [
            ("GET", f"/v1/datasets/{dataset_id}"),
            ("GET", f"/v1/datasets/{dataset_id}/preview"),
            ("GET", f"/v1/datasets/{dataset_id}/download"),
            ("DELETE", f"/v1/datasets/{dataset_id}"),
        ]:
            assert other.request(method, path).status_code == 404, path
    assert api.get(f"/v1/datasets/{dataset_id}").status_code == 200


def test_same_tenant_keys_share_datasets(server: Server) -> None:
    tenant = f"team-{uuid.uuid4().hex[:6]}"
    with server.client(server.new_key(tenant)) as one, server.client(server.new_key(tenant)) as two:
        dataset_id = _upload(one, b"a,b\n1,2\n").json()["id"]
        assert two.get(f"/v1/datasets/{dataset_id}").status_code == 200


def test_dataset_in_use_by_an_active_job_cannot_be_deleted(server: Server) -> None:
    key, tenant = server.new_tenant()
    with server.client(key) as api:
        dataset_id = upload_tiny(api)
        # Queued, or running for ten minutes if the session's worker is up: active either way.
        job_id = insert_job(
            server.database_url,
            tenant=tenant,
            dataset_id=dataset_id,
            trainer="test-sleep",
            seed=600,
        )
        refused = api.delete(f"/v1/datasets/{dataset_id}")
        assert refused.status_code == 409
        assert "used by a queued or running job" in refused.json()["detail"]
        assert api.get(f"/v1/datasets/{dataset_id}").status_code == 200
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        wait_for_job(api, job_id, statuses=("cancelled",), timeout=30)
        assert api.delete(f"/v1/datasets/{dataset_id}").status_code == 204
        assert api.get(f"/v1/datasets/{dataset_id}").status_code == 404


FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def test_csv_downloads_escape_formulas_unless_asked_not_to(api: httpx.Client) -> None:
    """OWASP's CSV injection advice: a text cell (or name) a spreadsheet would run as a formula
    gets a leading quote; numbers, negative ones included, are left as they are."""
    source = pa.table(
        {
            "=cmd": [f"ok {i}" for i in range(len(FORMULAS))],
            "note": FORMULAS,
            "amount": [-1.5, 2.0, -3.0, 4.0, 5.0, -6.0],
        }
    )
    sink = io.BytesIO()
    pq.write_table(source, sink)
    created = _upload(api, sink.getvalue(), filename="f.parquet")
    assert created.status_code == 201, created.text
    url = f"/v1/datasets/{created.json()['id']}/download"

    escaped = pd.read_csv(io.BytesIO(api.get(url, params={"format": "csv"}).content))
    assert list(escaped.columns) == ["'=cmd", "note", "amount"]
    assert list(escaped["note"]) == ["'" + cell for cell in FORMULAS]
    assert list(escaped["amount"]) == [-1.5, 2.0, -3.0, 4.0, 5.0, -6.0]
    assert list(escaped["'=cmd"]) == [f"ok {i}" for i in range(len(FORMULAS))]

    exact = api.get(url, params={"format": "csv", "escape_formulas": "false"})
    back = pd.read_csv(io.BytesIO(exact.content), keep_default_na=False)
    assert list(back.columns) == ["=cmd", "note", "amount"]
    assert list(back["note"]) == FORMULAS
