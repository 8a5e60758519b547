"""The dashboard's session cookie without a browser (fast; CI's first stage): what it holds, when
it stops working, the CSRF rule, sign-in and sign-out, and that pages escape what users wrote."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from service.auth import sessions
from service.auth.service import create_key, hash_key, revoke_key
from service.config import Settings
from service.db import Database
from tests.conftest import Server, upload_tiny, wait_for

SECRET = b"s" * 32
DIGEST = "ab" * 32


# -- the token itself ----------------------------------------------------------------------------


def test_token_round_trip_expiry_and_tampering() -> None:
    token = sessions.issue_token(SECRET, DIGEST, lifetime=60, epoch=3, now=1000)
    read = sessions.read_token(SECRET, token, now=1030)
    assert read is not None and read.key_digest == DIGEST and read.expires_at == 1060
    assert read.epoch == 3
    assert sessions.read_token(SECRET, token, now=1060) is None  # expired
    assert sessions.read_token(b"x" * 32, token, now=1030) is None  # another secret
    version, digest, epoch, expires, signature = token.split(".")
    longer = ".".join([version, digest, epoch, str(int(expires) + 3600), signature])
    assert sessions.read_token(SECRET, longer, now=1030) is None
    other = ".".join([version, "cd" * 32, epoch, expires, signature])
    assert sessions.read_token(SECRET, other, now=1030) is None
    newer = ".".join([version, digest, "4", expires, signature])  # a signed-out epoch revived
    assert sessions.read_token(SECRET, newer, now=1030) is None
    for junk in ("", "v2", "v2.a.b.c.d", "v1." + token[3:], token + "."):
        assert sessions.read_token(SECRET, junk, now=1030) is None


def test_csrf_token_belongs_to_its_session() -> None:
    first = sessions.issue_token(SECRET, DIGEST, lifetime=60, now=1000)
    second = sessions.issue_token(SECRET, DIGEST, lifetime=60, now=2000)
    assert sessions.csrf_matches(SECRET, first, sessions.csrf_token(SECRET, first))
    assert not sessions.csrf_matches(SECRET, first, sessions.csrf_token(SECRET, second))
    assert not sessions.csrf_matches(SECRET, first, None)
    assert not sessions.csrf_matches(SECRET, first, "")


def test_secret_comes_from_settings_or_the_process() -> None:
    class WithSecret:
        session_secret = "configured-secret"

    assert sessions.session_secret(WithSecret()) == b"configured-secret"
    process = sessions.session_secret(Settings())
    assert len(process) == 32 and sessions.session_secret(Settings()) == process


def _request(scheme: str, headers: dict[str, str] | None = None) -> Request:
    all_headers = {"host": "ridgeline.example", **(headers or {})}
    raw = [(k.lower().encode(), v.encode()) for k, v in all_headers.items()]
    return Request(
        {"type": "http", "scheme": scheme, "headers": raw, "path": "/", "query_string": b""}
    )


def test_cookies_are_secure_behind_https() -> None:
    assert not sessions.is_https(_request("http"))
    assert sessions.is_https(_request("https"))
    assert sessions.is_https(_request("http", {"X-Forwarded-Proto": "https"}))


# -- against the real server -------------------------------------------------------------------


def named_key(server: Server) -> tuple[str, str]:
    database = Database(Settings(database_url=server.database_url))
    try:
        with database.transaction() as session:
            name = f"dash-{uuid.uuid4().hex[:10]}"
            _, key = create_key(session, name=name)
    finally:
        database.dispose()
    return name, key


def signed_in(server: Server, key: str) -> httpx.Client:
    client = httpx.Client(base_url=server.base_url, timeout=30)
    response = client.post("/signin", data={"key": key, "next": "/datasets"})
    assert response.status_code == 303 and response.headers["location"] == "/datasets"
    return client


@pytest.fixture
def browserless(server: Server) -> Iterator[tuple[httpx.Client, str, str]]:
    name, key = named_key(server)
    client = signed_in(server, key)
    try:
        yield client, name, key
    finally:
        client.close()


def set_cookie_headers(response: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def test_sign_in_sets_a_signed_cookie_without_the_key(server: Server) -> None:
    _, key = named_key(server)
    with httpx.Client(base_url=server.base_url) as client:
        response = client.post("/signin", data={"key": key})
    cookies = set_cookie_headers(response)
    session = cookies["ridgeline_session"]
    assert "HttpOnly" in session and "samesite=strict" in session.lower()
    assert "Secure" not in session  # plain http on loopback; https sets it
    assert key not in session and hash_key(key) in session  # the digest, signed
    assert "HttpOnly" not in cookies["ridgeline_csrf"]
    assert response.headers["location"] == "/jobs"


def test_cookie_authenticates_reads_and_csrf_guards_writes(
    server: Server, browserless: tuple[httpx.Client, str, str]
) -> None:
    client, _, key = browserless
    with server.client(key) as api:
        dataset_id = upload_tiny(api)
    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 200
    body = {"dataset_id": dataset_id, "target": "y", "model": {"kind": "linear"}}
    refused = client.post("/v1/jobs", json=body)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/forbidden")
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 403
    token = client.cookies["ridgeline_csrf"]
    assert client.post("/v1/jobs", json=body, headers={"X-CSRF-Token": token}).status_code == 202


def test_bearer_header_wins_over_the_cookie(
    server: Server, browserless: tuple[httpx.Client, str, str]
) -> None:
    client, _, _ = browserless
    other_key = server.new_key()
    with server.client(other_key) as api:
        other_dataset = upload_tiny(api)
    # Bearer: the other tenant, and no CSRF token needed.
    response = client.get(
        f"/v1/datasets/{other_dataset}", headers={"Authorization": f"Bearer {other_key}"}
    )
    assert response.status_code == 200
    # Cookie alone: the signed-in tenant, which cannot see it.
    assert client.get(f"/v1/datasets/{other_dataset}").status_code == 404
    # A wrong bearer is a 401 even with a good cookie.
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer rl_nope"}).status_code == 401


def test_revoking_the_key_ends_its_sessions(
    server: Server, browserless: tuple[httpx.Client, str, str]
) -> None:
    client, name, _ = browserless
    assert client.get("/v1/jobs").status_code == 200
    database = Database(Settings(database_url=server.database_url))
    try:
        with database.transaction() as session:
            revoke_key(session, name=name)
    finally:
        database.dispose()

    def refused() -> bool:
        return client.get("/v1/jobs").status_code == 401

    wait_for(refused, timeout=15, interval=0.2, message="the revoked key's session to end")
    page = client.get("/jobs")
    assert page.status_code == 303 and page.headers["location"].startswith("/signin")


def test_a_forged_cookie_is_refused(server: Server) -> None:
    forged = sessions.issue_token(b"not the server's" * 2, "ab" * 32, lifetime=600)
    with httpx.Client(base_url=server.base_url, cookies={"ridgeline_session": forged}) as client:
        response = client.get("/v1/jobs")
        assert response.status_code == 401
        assert "sign in again" in response.json()["detail"]
        assert client.get("/jobs").headers["location"] == "/signin?next=%2Fjobs"


def test_sign_in_refuses_wrong_keys_cross_site_posts_and_foreign_redirects(
    server: Server,
) -> None:
    _, key = named_key(server)
    with httpx.Client(base_url=server.base_url) as client:
        wrong = client.post("/signin", data={"key": "rl_wrong"})
        assert wrong.status_code == 401 and "ridgeline_session" not in wrong.cookies
        cross = client.post("/signin", data={"key": key}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403 and "ridgeline_session" not in cross.cookies
        origin = client.post(
            "/signin", data={"key": key}, headers={"Origin": "https://evil.example"}
        )
        assert origin.status_code == 403
        for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            response = client.post("/signin", data={"key": key, "next": target})
            assert response.headers["location"] == "/jobs", target
        same = client.post(
            "/signin",
            data={"key": key, "next": "/jobs?status=failed"},
            headers={"Origin": server.base_url, "Sec-Fetch-Site": "same-origin"},
        )
        assert same.status_code == 303 and same.headers["location"] == "/jobs?status=failed"


def test_sign_out_needs_the_csrf_token_and_clears_both_cookies(
    browserless: tuple[httpx.Client, str, str],
) -> None:
    client, _, _ = browserless
    assert client.post("/signout", data={}).status_code == 403
    assert client.get("/v1/jobs").status_code == 200
    response = client.post("/signout", data={"csrf_token": client.cookies["ridgeline_csrf"]})
    assert response.status_code == 303 and response.headers["location"] == "/signin"
    cleared = set_cookie_headers(response)
    assert {"ridgeline_session", "ridgeline_csrf"} <= set(cleared)
    assert all("Max-Age=0" in header for header in cleared.values())


def test_sign_out_ends_the_session_on_the_server(server: Server) -> None:
    """A copy of the cookie taken before signing out, and the key's other sessions, are
    refused afterwards; signing in again works."""
    _, key = named_key(server)
    with closing(signed_in(server, key)) as client, closing(signed_in(server, key)) as elsewhere:
        copied = dict(client.cookies)
        assert client.get("/v1/jobs").status_code == 200
        assert elsewhere.get("/v1/jobs").status_code == 200
        response = client.post("/signout", data={"csrf_token": client.cookies["ridgeline_csrf"]})
        assert response.status_code == 303
        with httpx.Client(base_url=server.base_url, cookies=copied) as replay:
            refused = replay.get("/v1/jobs")
            assert refused.status_code == 401, refused.text
            assert "signed out" in refused.json()["detail"]
            csrf = {"X-CSRF-Token": copied["ridgeline_csrf"]}
            assert replay.post("/v1/jobs", json={}, headers=csrf).status_code == 401
            page = replay.get("/jobs")
            assert page.status_code == 303 and page.headers["location"].startswith("/signin")
        assert elsewhere.get("/v1/jobs").status_code == 401
    with closing(signed_in(server, key)) as again:
        assert again.get("/v1/jobs").status_code == 200


@pytest.mark.slow  # waits for the stream's credential recheck, ~12 s
def test_signing_out_ends_an_open_event_stream(server: Server, worker: Any) -> None:
    from tests.conftest import insert_job
    from tests.hardening.test_security import _stream_until_closed

    name, key = named_key(server)
    with server.client(key) as api:
        dataset_id = upload_tiny(api)
    job_id = insert_job(
        server.database_url,
        tenant=_tenant_of(server, name),
        dataset_id=dataset_id,
        trainer="test-sleep",
        seed=60,
    )
    try:
        with closing(signed_in(server, key)) as client:
            csrf = client.cookies["ridgeline_csrf"]

            def sign_out() -> None:
                with httpx.Client(base_url=server.base_url, cookies=dict(client.cookies)) as other:
                    assert other.post("/signout", data={"csrf_token": csrf}).status_code == 303

            with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
                assert stream.status_code == 200
                lines = _stream_until_closed(stream, sign_out, deadline_s=20)
        assert any(line.startswith(": the credential was revoked or signed out") for line in lines)
    finally:
        with server.client(key) as api:
            api.post(f"/v1/jobs/{job_id}/cancel")


def _tenant_of(server: Server, name: str) -> str:
    from sqlalchemy import select

    from service.auth.models import ApiKey

    database = Database(Settings(database_url=server.database_url))
    try:
        with database.transaction(write=False) as session:
            return str(session.scalar(select(ApiKey.tenant_id).where(ApiKey.name == name)))
    finally:
        database.dispose()


def test_pages_escape_user_text_and_send_a_strict_csp(
    server: Server, browserless: tuple[httpx.Client, str, str]
) -> None:
    client, _, key = browserless
    evil = '<script>alert("x")</script>'
    with server.client(key) as api:
        uploaded = api.post(
            "/v1/datasets",
            files={"file": ("t.csv", b"a,y\n1,0\n2,1\n3,0\n4,1\n")},
            data={"name": evil},
        )
        assert uploaded.status_code == 201, uploaded.text
        job = api.post(
            "/v1/jobs",
            json={"dataset_id": uploaded.json()["id"], "target": "y", "name": evil},
        ).json()
    for path in ("/datasets", "/jobs", f"/jobs/{job['id']}", "/jobs/new"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert evil not in page.text and "&lt;script&gt;" in page.text, path
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["cache-control"] == "no-store"
        # Nothing is loaded from elsewhere, and no inline script runs.
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text), path
        assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", page.text), path


def test_dashboard_routes_stay_out_of_the_openapi_schema(server: Server) -> None:
    paths = httpx.get(f"{server.base_url}/openapi.json").json()["paths"]
    assert not {"/", "/signin", "/signout", "/jobs", "/datasets", "/sweeps"} & set(paths)
    assert all(p.startswith(("/v1/", "/healthz", "/readyz")) for p in paths)


def test_assets_and_missing_pages(server: Server, browserless: tuple[Any, str, str]) -> None:
    client, _, _ = browserless
    css = client.get("/jobs").text
    match = re.search(r'href="(/assets/dashboard\.css\?v=[0-9a-f]+)"', css)
    assert match
    asset = client.get(match.group(1))
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/css")
    assert client.get("/assets/../../etc/passwd").status_code == 404
    assert client.get("/assets/nope.js").status_code == 404
    missing = client.get(f"/jobs/{uuid.uuid4()}")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert client.get("/sweeps/not-a-uuid").status_code == 404


def test_pages_render_queued_jobs_and_sweeps(
    server: Server, browserless: tuple[httpx.Client, str, str]
) -> None:
    client, _, key = browserless
    with server.client(key) as api:
        dataset_id = upload_tiny(api)
        mlp = api.post(
            "/v1/jobs",
            json={
                "dataset_id": dataset_id,
                "target": "y",
                # Long enough to be queued or training when its page is read (cancelled below).
                "model": {"kind": "mlp", "hidden_layers": [4], "epochs": 5000},
                "regularization": {"penalty": "elasticnet", "strength": 0.01, "l1_ratio": 0.5},
            },
        ).json()
        sweep = api.post(
            "/v1/sweeps",
            json={
                "dataset_id": dataset_id,
                "target": "y",
                "name": "page sweep",
                "search": {"penalty": ["l2"], "strength": [0.01, 0.1]},
                "cv": {"folds": 2},
            },
        )
        assert sweep.status_code == 202, sweep.text
    page = client.get(f"/jobs/{mlp['id']}")
    assert page.status_code == 200
    assert "The curve appears after the first epoch" in page.text or 'id="loss-curve"' in page.text
    assert 'data-role="live-chart"' in page.text  # drawn from the event stream while it trains
    with server.client(key) as api:
        assert api.post(f"/v1/jobs/{mlp['id']}/cancel").status_code in (200, 202)
    listing = client.get("/sweeps")
    assert listing.status_code == 200 and "page sweep" in listing.text
    detail = client.get(f"/sweeps/{sweep.json()['id']}")
    assert detail.status_code == 200 and "Leaderboard" in detail.text
    trials = client.get("/jobs?trials=true")
    assert trials.status_code == 200 and 'class="tag"' in trials.text
    hidden = client.get("/jobs")
    assert 'class="tag"' not in hidden.text
    assert re.search(r"\d+ sweep trial jobs? hidden", hidden.text)
    filtered = client.get("/jobs?status=failed")
    assert filtered.status_code == 200 and mlp["id"] not in filtered.text
    new = client.get(f"/jobs/new?dataset_id={dataset_id}")
    assert new.status_code == 200 and f'<option value="{dataset_id}" selected>' in new.text


def test_a_long_leaderboard_comes_in_pages(
    server: Server, worker: Any, browserless: tuple[httpx.Client, str, str]
) -> None:
    client, _, key = browserless
    with server.client(key) as api:
        dataset_id = upload_tiny(api)
        sweep = api.post(
            "/v1/sweeps",
            json={
                "dataset_id": dataset_id,
                "target": "y",
                "search": {
                    "penalty": ["l2"],
                    "strength": {"min": 1e-4, "max": 10, "num": 30, "scale": "log"},
                },
                "cv": {"validation_fraction": 0.3},
                "refit": False,
            },
        ).json()
        wait_for(
            lambda: api.get(f"/v1/sweeps/{sweep['id']}").json()["status"] == "succeeded",
            timeout=120,
            message="the sweep to succeed",
        )
    first = client.get(f"/sweeps/{sweep['id']}")
    assert "ranks 1\u201325 of 30 (page 1 of 2)" in first.text
    assert 'href="?page=2" rel="next"' in first.text and 'rel="prev"' not in first.text
    assert first.text.count("<tr") == 26  # the header and 25 ranks
    second = client.get(f"/sweeps/{sweep['id']}?page=2")
    assert "ranks 26\u201330 of 30 (page 2 of 2)" in second.text
    assert '<td class="num">26</td>' in second.text and 'rel="next"' not in second.text
    beyond = client.get(f"/sweeps/{sweep['id']}?page=9")
    assert "page 2 of 2" in beyond.text
