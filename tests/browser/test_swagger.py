"""Swagger UI in real Chromium: it loads from the service alone, authorizes with a key through
the Authorize dialog, uploads a dataset and queues a job with "Try it out"."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Blocked
from tests.conftest import TINY_CSV, Server

pytestmark = pytest.mark.slow

UPLOAD = "#operations-datasets-upload_dataset_v1_datasets_post"
CREATE_JOB = "#operations-jobs-create_job_v1_jobs_post"


def try_it_out(page: Any, operation: str) -> Any:
    block = page.locator(operation)
    block.locator(".opblock-summary").first.click()
    block.locator("button.try-out__btn").click()
    return block


def execute(block: Any) -> tuple[str, dict[str, Any]]:
    """Press Execute; the status code and JSON body that the UI shows."""
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    body = block.locator(".live-responses-table .response-col_description pre").first
    return status.inner_text().strip(), json.loads(body.inner_text())


def test_swagger_ui_offline_authorize_upload_and_queue(
    page: Any, server: Server, blocked: Blocked, tmp_path: Path
) -> None:
    key = server.new_key()
    csv = tmp_path / "tiny.csv"
    csv.write_bytes(TINY_CSV)

    page.goto(f"{server.base_url}/docs")
    page.locator(UPLOAD).wait_for()

    # Authorize with the key through the dialog.
    page.click("button.authorize")
    dialog = page.locator(".modal-ux")
    dialog.locator("#auth-bearer-value").fill(key)
    dialog.locator("button.authorize[type=submit]").click()
    dialog.locator("button", has_text="Logout").wait_for()  # the dialog took the key
    dialog.locator("button.btn-done").click()
    dialog.wait_for(state="detached")

    # POST /v1/datasets: set the file input and execute.
    block = try_it_out(page, UPLOAD)
    block.locator("tr[data-property-name='file'] input[type=file]").set_input_files(str(csv))
    # Swagger UI pre-fills optional text fields with the word "string": name it, and empty the
    # delimiter so it is detected (an empty field is not sent).
    block.locator("tr[data-property-name='name'] input[type=text]").fill("tiny from swagger")
    block.locator("tr[data-property-name='delimiter'] input[type=text]").fill("")
    status, dataset = execute(block)
    assert status == "201", dataset
    assert dataset["n_rows"] == 40 and dataset["name"] == "tiny from swagger"

    # POST /v1/jobs: edit the JSON body and execute.
    block = try_it_out(page, CREATE_JOB)
    spec = {
        "dataset_id": dataset["id"],
        "target": "y",
        "name": "from swagger",
        "model": {"kind": "linear"},
        "regularization": {"penalty": "l2", "strength": 0.01},
    }
    block.locator("textarea.body-param__text").fill(json.dumps(spec, indent=2))
    status, job = execute(block)
    assert status == "202", job
    assert job["status"] == "queued" and job["name"] == "from swagger"
    assert re.fullmatch(r"[0-9a-f-]{36}", job["id"])
    with server.client(key) as api:
        assert api.get(f"/v1/jobs/{job['id']}").json()["dataset_id"] == dataset["id"]

    # Everything came from the service: no request left 127.0.0.1.
    assert blocked == [], blocked
    assert not page.problems, page.problems
