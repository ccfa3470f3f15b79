"""The browser-test harness: Playwright (Python) driving Debian's Chromium.

Why Debian's browser: Playwright's own download (``playwright install``) cannot reach its CDN from
here, so ``make test`` installs the ``chromium`` package instead (``make browsers``) and every test
launches ``/usr/bin/chromium``. Where that binary is missing, the tests that need a browser skip
and say why, rather than fail on a machine that cannot have one.

Fixtures: ``browser`` (one headless Chromium per session), ``page`` (a fresh context and page per
test, closed after it, so cookies never leak between tests) and ``screenshot`` (saves
``tests/artifacts/<test name>[-<label>].png``; the folder is gitignored, CI keeps it as evidence).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

# Headless as root in a container: no sandbox, no GPU. The background-networking switches keep
# Chromium from calling Google's services, which this machine's closed network refuses by the dozen.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no {CHROMIUM}: run `make browsers` (installs Debian's chromium with apt-get); "
            "Playwright's own browser download does not work here"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[..., Path]:
    """``screenshot(page, label="")`` → the PNG it wrote, named after the test (and the label)."""

    def save(page: Any, label: str = "", full_page: bool = True) -> Path:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name + (f"-{label}" if label else ""))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return save
