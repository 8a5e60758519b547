"""Real headless Chromium (Debian's, driven by playwright) against the session's real server and
worker. tests/browser/setup.sh installs what is missing; no browser is downloaded.

Each test gets a fresh profile (--user-data-dir) and a page whose requests are allowed only to
127.0.0.1: anything else is aborted and recorded, so a test can assert that nothing left the
machine. A failing test leaves a screenshot in its pytest tmp dir.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path(os.environ.get("RIDGELINE_TEST_CHROMIUM", "/usr/bin/chromium"))
SETUP = Path(__file__).with_name("setup.sh")
LOCAL_HOSTS = {"127.0.0.1"}
# headless=True adds --headless; the profile is a fresh --user-data-dir per test.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_TIMEOUT_MS = 20_000


def _playwright_importable() -> bool:
    try:
        importlib.import_module("playwright.sync_api")
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium and the playwright driver, installed by setup.sh when missing."""
    if not CHROMIUM.exists() or not _playwright_importable():
        result = subprocess.run(
            ["bash", str(SETUP)],
            env={**os.environ, "PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            pytest.fail(
                f"tests/browser/setup.sh could not install Chromium or playwright:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        importlib.invalidate_caches()
    if not CHROMIUM.exists() or not _playwright_importable():
        pytest.fail(f"{CHROMIUM} or the playwright package is still missing after setup.sh")
    return CHROMIUM


@pytest.fixture(scope="session")
def playwright_driver(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


class Blocked(list[str]):
    """URLs the page tried to reach beyond 127.0.0.1 (each one aborted)."""


@pytest.fixture
def blocked() -> Blocked:
    return Blocked()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def page(
    playwright_driver: Any,
    chromium: Path,
    blocked: Blocked,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Any]:
    """A page in a fresh persistent profile; only 127.0.0.1 is reachable."""
    profile = tmp_path / "chromium-profile"
    context = playwright_driver.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(chromium),
        headless=True,
        args=CHROMIUM_FLAGS,
        viewport={"width": 1280, "height": 900},
        service_workers="block",
    )

    def guard(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    problems: list[str] = []
    page = context.pages[0] if context.pages else context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(message: Any) -> None:
        # A 4xx answer the test asked for (a wrong key) also logs "Failed to load resource".
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", on_console)
    page.problems = problems
    try:
        yield page
    finally:
        call = getattr(request.node, "rep_call", None)
        if call is not None and call.failed:
            shot = tmp_path / "failure.png"
            try:
                page.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the failure: {shot} (at {page.url})")
                if problems:
                    print("browser console:\n" + "\n".join(problems))
            except Exception as exc:  # the page may be gone; the failure itself matters more
                print(f"\nno screenshot: {exc}")
        context.close()
        shutil.rmtree(profile, ignore_errors=True)
