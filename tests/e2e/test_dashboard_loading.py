"""How the dashboard loads in a real browser: a page's modules all requested at once (none
waits for the module importing it; the index page's inline script asks for them before any
module has run), its first API request started before its code arrives,
nothing downloaded again on a returning visit, and a tab left open across an upgrade that
reloads itself instead of mixing old and new code."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, Route, expect

from tests.support.app_server import RunningApp

RESOURCES = """() => performance.getEntriesByType("resource").map((r) => ({
  path: new URL(r.name).pathname, start: r.startTime, end: r.responseEnd,
  transferred: r.transferSize }))"""
PRELOADS = """() => [...document.querySelectorAll('link[rel=modulepreload]')].map(
  (link) => new URL(link.href).pathname)"""
FIRST_DATA = {
    "downloads": "#download-list .empty",
    "providers": "#provider-list > *",
    "system": "#system-cards [data-testid=disk]",
    "chat": "#conv-list li",
}


def resources(page: Page) -> list[dict[str, Any]]:
    return list(page.evaluate(RESOURCES))


def test_a_pages_modules_and_first_request_start_together(
    page: Page, modelyard: Callable[..., RunningApp]
) -> None:
    app = modelyard()

    def late_entry(route: Route) -> None:
        time.sleep(1.5)  # the page's code arrives late: its data must not wait for it
        route.continue_()

    page.route("**/pages/*/index.js", late_entry)
    for name, first_data in FIRST_DATA.items():
        page.goto("about:blank")
        page.goto(f"{app.url}/#/{name}")
        expect(page.locator(first_data).first).to_be_attached()
        loaded = resources(page)
        entry = next(r for r in loaded if r["path"].endswith(f"/pages/{name}/index.js"))
        modules = [r for r in loaded if f"/pages/{name}/" in r["path"] and r is not entry]
        assert modules, loaded
        # Preloaded together: no module of the page waited for its index.js to arrive. One
        # asked for later was still named by a preload link before index.js was imported: on
        # a busy machine Chromium holds low-priority preloads back while the stylesheets load.
        preloads = set(page.evaluate(PRELOADS))
        late = [m for m in modules if m["start"] >= entry["end"] and m["path"] not in preloads]
        assert not late, (name, entry, late)
        api = [
            r
            for r in loaded
            if r["path"].startswith("/api/") and r["path"] != "/api/providers/kinds"
        ]
        assert min(r["start"] for r in api) < entry["end"], (name, api, entry)


def test_the_index_page_preloads_the_pages_modules_before_any_module_runs(
    page: Page, modelyard: Callable[..., RunningApp]
) -> None:
    """Its inline script (allowed by its hash in the page's CSP) asks for them: with the shell's
    modules never arriving, the page's are requested all the same."""
    app = modelyard()
    page.route("**/js/boot.js", lambda route: route.abort())
    page.route("**/js/app.js", lambda route: route.abort())
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    page.goto(f"{app.url}/#/chat")
    expect(page.locator("link[rel=modulepreload][href$='/pages/chat/index.js']")).to_be_attached()
    page.wait_for_function(
        "performance.getEntriesByType('resource').some(r => r.name.endsWith('/chat/picker.js'))"
    )
    assert not refused
    page.goto("about:blank")
    page.goto(app.url)  # no page named: the default one's
    expect(page.locator("link[rel=modulepreload][href$='/pages/models/index.js']")).to_be_attached()


def test_a_returning_visit_downloads_no_module_again(
    page: Page, modelyard: Callable[..., RunningApp]
) -> None:
    app = modelyard()
    page.goto(f"{app.url}/#/system")
    expect(page.get_by_test_id("disk")).to_be_visible()
    again = page.context.new_page()
    try:
        again.goto(f"{app.url}/#/system")
        expect(again.get_by_test_id("disk")).to_be_visible()
        static = [r for r in resources(again) if r["path"].startswith("/static/")]
        assert static and all(r["transferred"] == 0 for r in static), static
    finally:
        again.close()


def test_a_tab_opened_before_an_upgrade_reloads_itself(
    page: Page, modelyard: Callable[..., RunningApp]
) -> None:
    app = modelyard()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    # The System page's module is gone from the server, as after an upgrade, until the reload.
    def upgraded(route: Route) -> None:
        if len(navigations) > 1:
            route.continue_()
            return
        problem = {"status": 404, "code": "stale_dashboard", "detail": "another version"}
        route.fulfill(status=404, content_type="application/problem+json", body=json.dumps(problem))

    page.route("**/pages/system/index.js", upgraded)
    page.goto(f"{app.url}/#/system")
    expect(page.get_by_test_id("disk")).to_be_visible()
    assert len(navigations) == 2, navigations
    expect(page.locator(".toast-error")).to_have_count(0)
