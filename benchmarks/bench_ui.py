"""Dashboard cold load: how long a new user waits for each page's data, with 1,000 models.

A real modelyard (``python -m modelyard serve`` in its own process) holds 1,000 Ollama models
(the stand-in of ``bench_catalog``), three instances, downloads in every state and a dozen
conversations. Each page is opened many times, each time in a fresh context of Debian's
chromium (no cache, no cookies, a new connection), and the clock runs from the navigation's
start to the frame that draws the first element filled from the page's API answer (a model
row, a download card, a provider card…, never a skeleton).

The page is watched without Playwright on its main thread: a script added to every new document
notes the frame and says so on the console (polling with ``wait_for_function`` evaluated
Playwright's injected script in the page while it loaded, and a route through the test delayed
``index.html``: together 100–200 ms on a busy machine that no user pays).

Baselines, in the same run and interleaved with it: the same dashboard with its module
preloads taken out of ``index.html`` (the browser then finds each module only when the one
importing it has arrived, as before they existed; served from memory through a route, a small
detour the measured pages do not take), and the moment the page's first API answer arrived
(Resource Timing): no page can show its data before it. Returning visits (a second tab of the
same browser context, its cache warm) show what the caching headers save.
"""

from __future__ import annotations

import os
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Browser, BrowserContext, sync_playwright
from tests.fakes.fileserver import FileServer
from tests.fakes.fixtures import serve
from tests.fakes.ollama import create_ollama_app
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.servers import closed_port

from benchmarks.bench_catalog import _modelyard, _ollama_with_models

TITLE = "Dashboard cold load: time to the first data row, 1,000 models"
ROUNDS = 21
GOAL_MS = 300
# Each page: an element that exists only once the page's data is drawn, and the API path
# (its start) that data comes from.
PAGES = {
    "models": ("#model-list [data-key]", "/api/models/search"),
    "get": ("#recommended [data-id]", "/api/models/available"),
    "downloads": ("#download-list [data-id]", "/api/downloads"),
    "providers": ("#provider-list [data-key]", "/api/providers/status"),
    "chat": ("#conv-list [data-id]", "/api/conversations"),
    "system": ("#system-cards [data-testid=disk]", "/api/system/resources"),
}
# When the first data element enters the document, its frame's time goes to the console.
SIGNAL = "modelyard-bench-drawn"
WATCH = """(() => {
  new MutationObserver((_, observer) => {
    if (!document.querySelector(%s)) return;
    observer.disconnect();
    requestAnimationFrame(() => console.debug("%s " + performance.now()));
  }).observe(document, { childList: true, subtree: true });
})();"""
RESOURCES = """() => performance.getEntriesByType("resource").map((r) => ({
  name: r.name, start: r.startTime, end: r.responseEnd, bytes: r.transferSize }))"""
# The preload links, each page's module list and the inline script that preloads from it.
_PRELOADS = re.compile(
    r'\n\s*<link rel="modulepreload"[^>]*>|(?<=id="page-modules">)[^<]*|<script>[^<]*</script>'
)


@dataclass
class Load:
    drawn_ms: float  # the first data element's frame
    asked_ms: float  # the request for the page's data, started
    api_ms: float  # the answer the page's data comes from, complete
    requests: int
    kilobytes: float  # transferred (compressed where compressed)


def _fill(url: str, files: FileServer) -> None:
    """Downloads in every state, conversations, and the catalog synced."""
    with httpx.Client(base_url=url, timeout=60) as app:
        app.post("/api/models/sync").raise_for_status()
        files.add_file("done.gguf", b"g" * 200_000)
        app.post("/api/downloads", json={"source": "url", "url": files.url_for("done.gguf")})
        app.post("/api/downloads", json={"source": "url", "url": files.url_for("gone.gguf")})
        for i in range(4):
            files.add_file(f"slow-{i}.gguf", b"s" * 50_000_000)
            files.throttle(100_000, times=None, path=f"slow-{i}.gguf")
            task = app.post(
                "/api/downloads", json={"source": "url", "url": files.url_for(f"slow-{i}.gguf")}
            ).json()
            if i:
                app.post(f"/api/downloads/{task['id']}/pause")
        model = app.get("/api/models/list").json()["models"][0]
        for i in range(12):
            app.post(
                "/api/conversations",
                json={"provider": model["provider"], "model": model["name"], "title": f"Chat {i}"},
            ).raise_for_status()


def _without_preloads(context: BrowserContext, url: str) -> None:
    """Serve ``index.html`` without its module preloads, from memory."""
    answer = httpx.get(f"{url}/")
    answer.raise_for_status()
    body = _PRELOADS.sub("", answer.text)
    assert "modulepreload" not in body and "page-modules" in body
    dropped = {"content-length", "content-encoding"}  # httpx has inflated the body
    headers = {k: v for k, v in answer.headers.items() if k.lower() not in dropped}
    context.route(f"{url}/", lambda route: route.fulfill(status=200, headers=headers, body=body))


def _open(context: BrowserContext, url: str, page_name: str) -> Load:
    page = context.new_page()
    try:
        with page.expect_console_message(
            lambda message: message.text.startswith(SIGNAL), timeout=30000
        ) as signal:
            page.goto(f"{url}/#/{page_name}", wait_until="commit")
        drawn = float(signal.value.text.split()[1])
        resources: list[dict[str, float | str]] = page.evaluate(RESOURCES)
    finally:
        page.close()
    data_path = PAGES[page_name][1]
    api = [r for r in resources if urlsplit(str(r["name"])).path == data_path]
    transferred = sum(float(r["bytes"]) for r in resources)
    return Load(
        drawn,
        min((float(r["start"]) for r in api), default=float("nan")),
        min((float(r["end"]) for r in api), default=float("nan")),
        len(resources),
        transferred / 1000,
    )


def _cold_and_warm(browser: Browser, url: str, page_name: str, preloads: bool) -> tuple[Load, Load]:
    """A load in a fresh context, then a returning visit in a new tab of that context."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        context.add_init_script(WATCH % (repr(PAGES[page_name][0]), SIGNAL))
        if not preloads:
            _without_preloads(context, url)
        return _open(context, url, page_name), _open(context, url, page_name)
    finally:
        context.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _measure(browser: Browser, url: str) -> dict[str, dict[str, list[Load]]]:
    runs: dict[str, dict[str, list[Load]]] = {
        p: {"cold": [], "warm": [], "no-preload": []} for p in PAGES
    }
    for page_name in PAGES:  # warm the server's caches, not the browser's
        _cold_and_warm(browser, url, page_name, True)
    for _ in range(ROUNDS):
        for page_name in PAGES:
            cold, warm = _cold_and_warm(browser, url, page_name, True)
            runs[page_name]["cold"].append(cold)
            runs[page_name]["warm"].append(warm)
            runs[page_name]["no-preload"].append(_cold_and_warm(browser, url, page_name, False)[0])
    return runs


def _table(runs: dict[str, dict[str, list[Load]]]) -> tuple[list[str], float]:
    rows = [
        "| page | first data row p50 | p90 | without preloads p50 (baseline) | ratio "
        "| its data asked for p50 | its data's API answer p50 | returning visit p50 "
        "| requests | transferred |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for page_name, loads in runs.items():
        cold = [x.drawn_ms for x in loads["cold"]]
        base = statistics.median(x.drawn_ms for x in loads["no-preload"])
        p50 = statistics.median(cold)
        worst = max(worst, p50)
        last = loads["cold"][-1]
        rows.append(
            f"| {page_name} | {p50:.0f} ms | {_pct(cold, 0.9):.0f} ms | {base:.0f} ms "
            f"| {p50 / base:.2f}× | {statistics.median(x.asked_ms for x in loads['cold']):.0f} ms "
            f"| {statistics.median(x.api_ms for x in loads['cold']):.0f} ms "
            f"| {statistics.median(x.drawn_ms for x in loads['warm']):.0f} ms "
            f"| {last.requests} | {last.kilobytes:.0f} KB |"
        )
    return rows, worst


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(workdir: Path) -> str:
    state = _ollama_with_models(1000)
    load_before = _load_average()
    with (
        serve(create_ollama_app(state), state) as ollama,
        FileServer(workdir / "www") as files,
        sync_playwright() as pw,
    ):
        refused = f"http://127.0.0.1:{closed_port()}"
        instances = ", ".join(
            [
                f"{{provider = 'ollama', id = 'default', base_url = '{ollama.url}'}}",
                f"{{provider = 'lmstudio', id = 'off', base_url = '{refused}'}}",
                f"{{provider = 'openai_compat', id = 'vllm', base_url = '{refused}'}}",
            ]
        )
        models = workdir / "models"
        models.mkdir()
        server = _modelyard(workdir / "ui", models, instances)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _fill(server.url, files)
            runs = _measure(browser, server.url)
            load_after = _load_average()
        finally:
            browser.close()
            server.stop()
    rows, worst = _table(runs)
    verdict = "met" if worst <= GOAL_MS else "NOT met"
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            f"{ROUNDS} cold loads of each page, each in a fresh Chromium context on loopback "
            "(`modelyard serve` in its own process, 1,000 Ollama models, 3 instances, "
            "6 downloads, 12 conversations), interleaved with the baseline: the same "
            "dashboard with the module preloads taken out of `index.html` (served from memory "
            "through a route). Nothing of Playwright runs in a measured page while it loads "
            "(its frame is signalled on the console). Times run from "
            "the navigation's start to the frame that draws the first element filled from "
            "the page's API answer; its data asked for is when the request for that answer "
            "started (the dashboard starts it before the page's code arrives), its API answer "
            "when the answer had arrived. "
            "A returning visit is a second tab of the same context (its cache warm: the "
            "versioned modules are not asked for again). Load average before/after: "
            f"{load_before} / {load_after} (on 2 CPUs; the pages' times grow with it, the "
            "ratios much less). Transferred counts the answers as sent: uncompressed to a "
            "loopback client (`api/compression.py`), so Chat's includes the 1,000-model "
            "list its picker reads (≈ 480 KB), asked for beside the conversations it draws "
            "first.",
            "",
            *rows,
            "",
            f"Goal: every page's first data row within {GOAL_MS} ms at the median — "
            f"**{verdict}** (slowest page {worst:.0f} ms).",
            "",
        ]
    )
