"""The harness works end to end: Chromium loads a page warroom rendered, served over real HTTP,
Playwright reads its text, and a screenshot lands in ``tests/artifacts/``.

The page is the HTML incident digest of a hand-built summary whose telemetry carries markup, so
the smoke test also shows, in a real browser, that the markup stays text and no script runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from summarize.render import render
from tests.summarize.test_render import EVIL, _evil_summary, _summary


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """The digests as static files on a local HTTP server; yields its base URL."""
    (tmp_path / "digest.html").write_text(render(_summary(), "html"), encoding="utf-8")
    (tmp_path / "evil.html").write_text(render(_evil_summary(), "html"), encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_chromium_loads_the_digest_and_reads_it(
    page: Any, site: str, screenshot: Callable[..., Path]
) -> None:
    response = page.goto(f"{site}/digest.html")
    assert response is not None and response.ok
    assert "checkout failing after deploy 2.4.0" in page.title()
    body = page.inner_text("body")
    assert "INC-42" in body and "rollback_deployment" in body
    assert page.locator("#evidence-E1").count() == 1  # evidence items are link targets
    shot = screenshot(page)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5_000


def test_markup_in_telemetry_stays_text_in_a_real_browser(
    page: Any, site: str, screenshot: Callable[..., Path]
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{site}/evil.html")
    assert "<script>alert(1)</script>" in page.inner_text("body")
    assert page.locator("a[href='http://evil.example']").count() == 0
    assert dialogs == []  # the injected script never ran
    assert EVIL.split(" ")[0] in page.title()
    screenshot(page, "escaped")
