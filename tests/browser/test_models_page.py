"""The Models pages in real Chromium: register a succeeded job from its page, read the card,
point an alias at a version and see its history."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.browser.test_dashboard import sign_in
from tests.conftest import Server, upload_tiny, wait_for_job

pytestmark = pytest.mark.slow


def _succeeded_jobs(server: Server, key: str, count: int) -> list[str]:
    with server.client(key) as api:
        dataset_id = upload_tiny(api)
        ids = [
            api.post(
                "/v1/jobs",
                json={"dataset_id": dataset_id, "target": "y",
                      "regularization": {"penalty": "l1", "strength": 0.01 * (n + 1)}},
            ).json()["id"]
            for n in range(count)
        ]  # fmt: skip
        assert all(wait_for_job(api, job_id)["status"] == "succeeded" for job_id in ids)
    return ids


def _register_from_job_page(page: Any, server: Server, job_id: str, model: str) -> None:
    page.goto(f"{server.base_url}/jobs/{job_id}")
    page.click('[data-action="show-register"]')
    page.fill("#register-form input[name=model]", model)
    page.fill("#register-form input[name=description]", f"from {job_id[:8]}")
    page.click("#register-form button[type=submit]")
    page.wait_for_url(re.compile(rf"/models/{model}\?version=\d+#card$"))


def test_register_read_the_card_and_move_an_alias(
    page: Any, server: Server, worker: subprocess.Popen[str]
) -> None:
    key = server.new_key()
    first, second = _succeeded_jobs(server, key, 2)
    sign_in(page, server, key)

    _register_from_job_page(page, server, first, "tiny")  # creates the model
    assert page.url.endswith("version=1#card")
    card = page.locator("#card")
    assert card.locator("h1").inner_text() == "tiny, version 1"
    assert "Loading it" in card.locator("h2").all_inner_texts()
    assert "load_model(path, sha256=" in card.locator("pre code.language-python").inner_text()
    # The card's curve is an <img> of the plots API, fetched with the session cookie.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#card img')].some("
        "i => i.complete && i.naturalWidth > 0)"
    )

    _register_from_job_page(page, server, second, "tiny")  # the model exists: version 2
    assert page.url.endswith("version=2#card")
    assert page.locator("#versions tbody tr").count() == 2

    for version in ("1", "2"):
        page.fill("#alias-form input[name=alias]", "champion")
        page.select_option("#alias-form select[name=version]", version)
        page.click("#alias-form button[type=submit]")
        page.locator(f"#aliases tr[data-alias=champion] td.num:text-is('{version}')").wait_for()
    history = page.locator("#alias-history tbody tr").all_inner_texts()
    assert len(history) == 2 and "champion" in history[0]

    # The job page says what it is registered as; the Models list shows the alias.
    page.goto(f"{server.base_url}/jobs/{second}")
    assert "tiny v2" in page.locator("dl.facts").first.inner_text()
    page.click("nav >> text=Models")
    assert "champion → 2" in page.locator("#models tr[data-model=tiny]").inner_text()
    assert not page.problems, page.problems
