"""Browser tests: Debian's chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# The README's pictures are refreshed on purpose (`make screenshots`), not by every test run:
# otherwise each run rewrites them with a different clock and a dirty checkout.
SHOTS = (
    DOCS_SHOTS
    if os.environ.get("MODELYARD_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "modelyard-screenshots"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's sync API keeps an event loop on the main thread while it runs,
    # which would break later tests that call asyncio.run().
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; any JavaScript error fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: ConsoleMessage) -> None:
        if (
            msg.type == "error"
            and "WebSocket" not in msg.text
            and "Failed to load resource" not in msg.text
        ):
            errors.append(msg.text)

    page.on("console", on_console)
    page.set_default_timeout(15000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot (under docs/screenshots with ``MODELYARD_SCREENSHOTS=1``; the README
    shows some of them)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
