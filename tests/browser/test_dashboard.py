"""The dashboard in real Chromium: sign in with a key, upload a CSV, start an MLP from the form,
follow it live to the end, see its loss curve; and the session cookie's CSRF rule."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, insert_job, upload_tiny

pytestmark = pytest.mark.slow

JOB_DEADLINE_MS = 90_000
# Records every status the job page shows, across the reload at the end (sessionStorage).
STATUS_RECORDER = """
document.addEventListener("DOMContentLoaded", () => {
  const badge = document.querySelector('#job [data-role="status"]');
  if (!badge) return;
  const seen = JSON.parse(sessionStorage.getItem("statuses") || "[]");
  const push = () => {
    const text = badge.textContent.trim();
    if (seen[seen.length - 1] !== text) {
      seen.push(text);
      sessionStorage.setItem("statuses", JSON.stringify(seen));
    }
  };
  push();
  new MutationObserver(push).observe(badge, {childList: true, characterData: true, subtree: true});
});
"""


@pytest.fixture(scope="module")
def cancer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_breast_cancer

    path = tmp_path_factory.mktemp("data") / "cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(path, index=False)
    return path


def sign_in(page: Any, server: Server, key: str) -> None:
    page.goto(f"{server.base_url}/")
    page.wait_for_url(re.compile(r"/signin"))
    page.fill("#key", key)
    page.click("form[action='/signin'] button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs$"))


def session_cookies(page: Any) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in page.context.cookies()}


def test_sign_in_upload_train_and_follow_a_job(
    page: Any, server: Server, worker: subprocess.Popen[str], cancer_csv: Path
) -> None:
    key = server.new_key()
    page.add_init_script(STATUS_RECORDER)

    # A wrong key is refused on the page itself.
    page.goto(f"{server.base_url}/signin")
    page.fill("#key", "rl_not-a-key")
    page.click("form[action='/signin'] button[type=submit]")
    assert "unknown or revoked" in page.locator("[role=alert]").inner_text()

    sign_in(page, server, key)
    cookies = session_cookies(page)
    session = cookies["ridgeline_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert key not in session["value"] and key not in cookies["ridgeline_csrf"]["value"]
    assert not cookies["ridgeline_csrf"]["httpOnly"]

    # Upload through the page's form.
    page.click("nav >> text=Datasets")
    page.set_input_files("#upload-form input[type=file]", str(cancer_csv))
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/datasets\?uploaded="))
    row = page.locator("tr.highlight")
    assert "cancer.csv" in row.inner_text() and "569" in row.inner_text()

    # Start an MLP from the form.
    row.locator("text=Train a model").click()
    page.wait_for_url(re.compile(r"/jobs/new\?dataset_id="))
    assert page.locator("#f-target").input_value() == "target"
    page.select_option("#f-kind", "mlp")
    page.fill("#f-layers", "16")
    page.fill("#f-epochs", "8")
    page.select_option("#f-penalty", "l2")
    page.fill("#f-strength", "0.001")
    page.fill("#f-dropout", "0.1")
    page.fill("#f-name", "browser <mlp>")
    page.click("#job-form button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[1]
    assert page.locator("h1").inner_text().startswith("browser <mlp>")  # escaped, not markup

    # Follow it live (SSE) to the end; the page reloads itself with the results.
    status = page.locator('#job [data-role="status"]')
    status.filter(has_text="succeeded").wait_for(timeout=JOB_DEADLINE_MS)
    page.wait_for_load_state("load")
    seen = page.evaluate("JSON.parse(sessionStorage.getItem('statuses') || '[]')")
    assert seen[0] in ("queued", "running") and seen[-1] == "succeeded", seen
    assert page.locator('[data-role="progress-text"]').first.inner_text() == "100%"

    # The loss curve is an <img> the browser fetched with the session cookie and drew.
    page.wait_for_function(
        "() => { const i = document.querySelector('#loss-curve');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    assert page.locator("#gap").is_visible()
    assert page.locator("#diagnosis .verdict").inner_text() in (
        "overfitting",
        "underfitting",
        "over-regularized",
        "good fit",
        "unknown",
    )
    assert not page.problems, page.problems

    # The jobs list shows it, finished.
    page.click("nav >> text=Jobs")
    listed = page.locator(f"tr[data-job-id='{job_id}']")
    assert listed.get_attribute("data-status") == "succeeded"
    assert "browser <mlp>" in listed.inner_text()

    # The cookie authenticates the API, but a state change needs the CSRF header.
    cookies = session_cookies(page)
    jar = {name: c["value"] for name, c in cookies.items()}
    body = {
        "dataset_id": json.loads(
            httpx.get(f"{server.base_url}/v1/jobs/{job_id}", cookies=jar).text
        )["dataset_id"],
        "target": "target",
        "model": {"kind": "linear"},
    }
    with httpx.Client(base_url=server.base_url, cookies=jar, timeout=30) as client:
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200
        refused = client.post("/v1/jobs", json=body)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "CSRF" in refused.json()["detail"]
        forged = client.post("/v1/jobs", json=body, headers={"X-CSRF-Token": "forged"})
        assert forged.status_code == 403
        accepted = client.post(
            "/v1/jobs", json=body, headers={"X-CSRF-Token": jar["ridgeline_csrf"]}
        )
        assert accepted.status_code == 202, accepted.text
        client.post(
            f"/v1/jobs/{accepted.json()['id']}/cancel",
            headers={"X-CSRF-Token": jar["ridgeline_csrf"]},
        )
    # Bearer requests need no CSRF token.
    with server.client(key) as api:
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 409)

    # Signing out clears both cookies; the pages ask to sign in again.
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/signin$"))
    assert not {"ridgeline_session", "ridgeline_csrf"} & set(session_cookies(page))
    page.goto(f"{server.base_url}/jobs/{job_id}")
    page.wait_for_url(re.compile(r"/signin\?next="))


# Records, per epoch, when the page's own stream handler received it and when the live chart
# showed it (the chart's data-epoch), in page time.
LIVE_CHART_RECORDER = """
window.__received = {};
window.__drawn = {};
const addListener = EventSource.prototype.addEventListener;
EventSource.prototype.addEventListener = function (type, listener, options) {
  if (type !== "epoch") return addListener.call(this, type, listener, options);
  return addListener.call(this, type, function (event) {
    const epoch = JSON.parse(event.data).epoch;
    if (!(epoch in window.__received)) window.__received[epoch] = performance.now();
    return listener.call(this, event);
  }, options);
};
document.addEventListener("DOMContentLoaded", () => {
  const chart = document.querySelector('[data-role="live-chart"]');
  if (!chart) return;
  new MutationObserver(() => {
    const epoch = chart.getAttribute("data-epoch");
    if (epoch !== null && !(epoch in window.__drawn)) window.__drawn[epoch] = performance.now();
  }).observe(chart, {attributes: true, attributeFilter: ["data-epoch"]});
});
"""


def test_the_live_chart_follows_each_epoch_as_it_arrives(
    page: Any, server: Server, worker: subprocess.Popen[str]
) -> None:
    key, tenant = server.new_tenant()
    with server.client(key) as api:
        dataset_id = upload_tiny(api)
    # An "MLP" whose trainer reports an epoch every 0.1 s for 15 s.
    job_id = insert_job(
        server.database_url,
        tenant=tenant,
        dataset_id=dataset_id,
        trainer="test-sleep",
        seed=15,
        model={"kind": "mlp", "hidden_layers": [4], "epochs": 150},
    )
    page.add_init_script(LIVE_CHART_RECORDER)
    sign_in(page, server, key)
    page.goto(f"{server.base_url}/jobs/{job_id}")
    page.wait_for_function("() => Object.keys(window.__drawn).length >= 20", timeout=60_000)
    received = page.evaluate("window.__received")
    drawn = page.evaluate("window.__drawn")
    late = {
        epoch: round(drawn[epoch] - at)
        for epoch, at in received.items()
        if epoch in drawn and drawn[epoch] - at > 1000
    }
    assert not late, f"epochs drawn more than a second after their event (ms): {late}"
    # Read in one turn of the page's event loop: the newest epoch received is the one shown.
    state = page.evaluate(
        """() => ({
          newest: Math.max(...Object.keys(window.__received).map(Number)),
          shown: Number(document.querySelector('[data-role="live-chart"]').dataset.epoch),
        })"""
    )
    assert state["shown"] == state["newest"], state
    assert not page.problems, page.problems


def test_start_a_sweep_from_the_form(
    page: Any, server: Server, worker: subprocess.Popen[str]
) -> None:
    key = server.new_key()
    with server.client(key) as api:
        dataset_id = upload_tiny(api)
    sign_in(page, server, key)
    page.click("nav >> text=Sweeps")
    page.click("text=New sweep")
    page.wait_for_url(re.compile(r"/sweeps/new$"))
    option = page.locator(f"#s-dataset option[value='{dataset_id}']")
    assert re.search(
        r"tiny\.csv · 40 rows · \d+ B · \d{4}-\d\d-\d\d \d\d:\d\d", option.inner_text()
    )
    page.select_option("#s-dataset", dataset_id)
    assert page.locator("#s-target").input_value() == "y"
    assert page.locator("#s-ratios").is_hidden()
    page.check("input[name=penalty][value=elasticnet]")
    assert page.locator("#s-ratios").is_visible()
    page.fill("#s-ratios", "0.5")
    page.fill("#s-num", "3")
    page.fill("#s-cv-value", "2")
    page.uncheck("#s-refit")
    page.fill("#s-name", "sweep from the form")
    page.click("#sweep-form button[type=submit]")
    page.wait_for_url(re.compile(r"/sweeps/[0-9a-f-]{36}$"))
    sweep_id = page.url.rsplit("/", 1)[1]
    with server.client(key) as api:
        sweep = api.get(f"/v1/sweeps/{sweep_id}").json()
    assert sweep["name"] == "sweep from the form"
    assert sweep["spec"]["search"]["penalty"] == ["l1", "l2", "elasticnet"]
    assert sweep["spec"]["search"]["l1_ratio"] == [0.5]
    assert sweep["spec"]["cv"] == {"folds": 2, "validation_fraction": None}
    assert sweep["n_configs"] == 9 and sweep["spec"]["refit"] is False
    page.locator('#sweep [data-role="status"]').filter(has_text="succeeded").wait_for(
        timeout=JOB_DEADLINE_MS
    )
    page.locator("#leaderboard").wait_for()
    assert not page.problems, page.problems
