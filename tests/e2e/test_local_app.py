"""Seed 004's browser app (issue 18, item 4): a page on another local port downloads a model
through modelyard with ``fetch`` and polls its status — and cannot reach anything else.
Also the API docs page, rendered under the same strict Content-Security-Policy."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.e2e.conftest import browser, page
from tests.fakes.fileserver import FileServer, file_server
from tests.support.app_server import RunningApp
from tests.support.servers import ServerThread

__all__ = ["browser", "file_server", "page"]

# The guide's React app, reduced to its calls: POST the download, then poll its status.
APP_PAGE = """<!doctype html><html><body><pre id="out">starting</pre><script>
const api = "%(api)s", url = "%(url)s";
const out = document.getElementById("out");
async function run() {
  const started = await fetch(api + "/api/models/download", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({url, filename: "seed.gguf"}),
  });
  out.textContent = "started " + started.status;
  for (let i = 0; i < 600; i++) {
    const resp = await fetch(api + "/api/models/download/status?url=" + encodeURIComponent(url));
    const body = await resp.json();
    out.textContent = "status " + body.download.status + " " + body.download.progress;
    if (body.download.status !== "downloading") break;
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    const keys = await fetch(api + "/api/keys", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: '{"name":"x","scopes":["admin"]}'});
    out.dataset.keys = String(keys.status);
  } catch (err) {
    out.dataset.keys = "blocked";
  }
}
run();
</script></body></html>"""


@pytest.fixture
def local_app() -> Iterator[Callable[[str, str], str]]:
    """Serve the app page on another port of localhost; returns its address."""
    threads: list[ServerThread] = []

    def serve(api: str, url: str) -> str:
        html = APP_PAGE % {"api": api, "url": url}

        async def home(_: object) -> HTMLResponse:
            return HTMLResponse(html)

        thread = ServerThread(Starlette(routes=[Route("/", home)])).start()
        threads.append(thread)
        return thread.url.replace("127.0.0.1", "localhost")

    yield serve
    for thread in threads:
        thread.stop()


def test_a_page_on_another_local_port_downloads_and_polls(
    browser: Browser,
    modelyard: Callable[..., RunningApp],
    file_server: FileServer,
    local_app: Callable[[str, str], str],
) -> None:
    app = modelyard(monitor=False)
    data = b"GGUF" + bytes(200_000)
    file_server.add_file("seed.gguf", data)
    api = app.url.replace("127.0.0.1", "localhost")
    address = local_app(api, file_server.url_for("seed.gguf"))
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(address)

    out = page.locator("#out")
    out.filter(has_text="status completed 100").wait_for(timeout=60_000)
    saved = app.settings.resolved_models_dir / "seed.gguf"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    page.wait_for_function("document.getElementById('out').dataset.keys !== undefined")
    assert out.get_attribute("data-keys") == "blocked"  # the keys route is not for local apps
    assert app.http.get("/api/keys").json()["keys"] == []
    context.close()
    # The only errors are the browser's refusal of the keys call, nothing on the way there.
    assert errors and all("/api/keys" in e or "Failed to load resource" in e for e in errors)


def test_the_api_docs_render_from_local_files_under_the_csp(
    page: Page, modelyard: Callable[..., RunningApp]
) -> None:
    app = modelyard(monitor=False)
    outside: list[str] = []
    page.on(
        "request",
        lambda req: outside.append(req.url) if not req.url.startswith(app.url) else None,
    )

    page.goto(app.url + "/docs")

    page.get_by_text("/api/models/download/status").first.wait_for(timeout=30_000)
    assert outside == []
    assert page.title() == "modelyard API"
