"""The dashboard's files: versioned URLs cached for a year, an index page revalidated on every
visit that preloads each page's whole module graph, gzip where it pays, and never on streams."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import posixpath
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.api.assets import Assets, closure, module_imports
from modelyard.api.pages import STATIC
from modelyard.instance_config import InstanceConfig
from tests.fakes.common import ReplyScript
from tests.support.app_server import RunningApp
from tests.support.chat import events_of

# The tests below trust X-Forwarded-For from 127.0.0.1 (forwarded_allow_ips): the way a
# client on another machine reaches, through a proxy, a server that only listens on loopback.
# Such a client is never trusted as local, so it sends the key.
KEY = "remote-secret"
REMOTE = {"X-Forwarded-For": "192.0.2.7", "Authorization": f"Bearer {KEY}"}
GZIP = {"Accept-Encoding": "gzip"}
LAZY_IMPORT = re.compile(r"""\bimport\(\s*["']([^"']+)["']\s*\)""")


def index_of(app: RunningApp) -> tuple[httpx.Response, str, dict[str, list[str]]]:
    """The index page, the version it names and its per-page module lists."""
    resp = app.http.get("/")
    version = re.search(r'src="/static/([0-9a-f]{12})/js/app\.js"', resp.text)
    data = re.search(r'<script type="application/json" id="page-modules">(.*?)</script>', resp.text)
    assert version and data, resp.text
    return resp, version.group(1), json.loads(data.group(1))


def test_the_index_preloads_the_shell_and_lists_each_pages_modules(
    modelyard: Callable[..., RunningApp],
) -> None:
    app = modelyard()
    resp, version, pages = index_of(app)
    assert resp.headers["cache-control"] == "no-cache"
    preloaded = re.findall(
        rf'<link rel="modulepreload" href="/static/{version}/([^"]+)">', resp.text
    )
    assert {"js/api.js", "js/dom.js", "js/events.js", "js/pages.js"} <= set(preloaded)
    assert set(pages) == {
        *("models", "get", "downloads", "providers", "chat", "gateway", "system", "audit")
    }
    assert pages["models"][0] == "pages/models/index.js"
    assert "pages/get/recommended.js" in pages["models"]  # an import of an import
    assert not set(preloaded) & set(pages["chat"])  # the shell's modules are not listed twice
    assert app.http.get("/", headers={"If-None-Match": resp.headers["etag"]}).status_code == 304

    # Every module of the dashboard is reached from the shell or from a page.
    # Not Swagger's; and vendor/ holds classic scripts (uPlot), which js/charts.js loads.
    dashboard = [
        p for p in STATIC.rglob("*.js") if p.parent.name != "docs" and "vendor" not in p.parts
    ]
    for vendored in (STATIC / "vendor").rglob("*.js"):
        assert (
            f"../{vendored.relative_to(STATIC).as_posix()}"
            in (STATIC / "js" / "charts.js").read_text()
        )
        assert app.http.get(f"/static/{vendored.relative_to(STATIC).as_posix()}").is_success
    on_disk = {p.relative_to(STATIC).as_posix() for p in dashboard}
    reached = {
        "js/boot.js",
        "js/app.js",
        "js/preload.js",  # inlined into the index page
        *preloaded,
        *(m for modules in pages.values() for m in modules),
    }
    # ... or loaded after a page's first rows, by an import("…") of a module reached so far.
    graph = {name: module_imports(name, (STATIC / name).read_text()) for name in on_disk}
    later: set[str] = set()
    for name in sorted(reached):
        for target in LAZY_IMPORT.findall((STATIC / name).read_text()):
            later.update(
                closure(graph, posixpath.normpath(posixpath.join(posixpath.dirname(name), target)))
            )
    drawer = {"pages/models/drawer.js", "pages/models/details.js", "pages/models/usage.js"}
    assert drawer <= later and not drawer & set(pages["models"])  # Models does not preload it
    assert on_disk == reached | later


def test_the_index_inlines_its_preloader_allowed_by_its_hash_only(
    modelyard: Callable[..., RunningApp],
) -> None:
    app = modelyard()
    resp, _, _ = index_of(app)
    inline = re.findall(r"<script>(.*?)</script>", resp.text, re.S)
    assert inline == [(STATIC / "js" / "preload.js").read_text()]
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    policies = [
        resp.headers["content-security-policy"],
        app.http.get("/", headers={"If-None-Match": resp.headers["etag"]}).headers[
            "content-security-policy"
        ],  # a revalidation keeps it: the browser updates the headers it holds
    ]
    for policy in policies:
        assert f"script-src 'self' 'sha256-{digest}';" in policy
        assert "unsafe-inline" not in policy
    # Only the index page allows it, and one policy per answer.
    other = app.http.get("/api/version")
    assert "sha256-" not in other.headers["content-security-policy"]
    assert len(resp.headers.get_list("content-security-policy")) == 1


def test_versioned_files_are_immutable_and_sent_compressed(
    modelyard: Callable[..., RunningApp],
) -> None:
    app = modelyard()
    _, version, pages = index_of(app)
    for name in [*pages["chat"][:3], "css/app.css"]:
        resp = app.http.get(f"/static/{version}/{name}", headers=GZIP)
        assert resp.status_code == 200
        assert resp.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert resp.headers["content-encoding"] == "gzip"
        assert resp.content == (STATIC / name).read_bytes()  # httpx inflated it
        again = app.http.get(
            f"/static/{version}/{name}", headers={"If-None-Match": resp.headers["etag"]}
        )
        assert again.status_code == 304
    module = app.http.get(f"/static/{version}/js/app.js", headers={"Accept-Encoding": "identity"})
    assert module.headers["content-type"].startswith("text/javascript")
    assert "content-encoding" not in module.headers
    # Unversioned paths still answer, revalidated on every use.
    plain = app.http.get("/static/js/app.js")
    assert plain.status_code == 200 and plain.headers["cache-control"] == "no-cache"


def test_another_version_or_an_unknown_file_is_a_clear_404(
    modelyard: Callable[..., RunningApp],
) -> None:
    app = modelyard()
    _, version, _ = index_of(app)
    stale = app.http.get("/static/0123456789ab/js/app.js")
    assert stale.status_code == 404
    assert stale.headers["content-type"] == "application/problem+json"
    assert stale.json()["code"] == "stale_dashboard"
    missing = app.http.get(f"/static/{version}/js/nothing.js")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_an_edited_file_gives_a_new_version(tmp_path: Path) -> None:
    root = tmp_path / "static"
    shutil.copytree(STATIC, root)
    assets = Assets(root)
    before = assets.version
    assets.refresh()
    assert assets.version == before  # nothing changed: the same version
    module = root / "pages" / "system" / "meters.js"
    module.write_text(module.read_text() + "\n// edited\n")
    assets.refresh()
    assert assets.version != before
    assert f"/static/{assets.version}/js/app.js" in assets.index.body.decode()


@pytest.mark.parametrize(
    ("source", "imports"),
    [
        pytest.param('import { a } from "./a.js";', ["x/a.js"], id="named"),
        pytest.param('import {\n  a,\n  b,\n} from "../b.js";\n', ["b.js"], id="multiline"),
        pytest.param('export * from "./c.js";', ["x/c.js"], id="re-export"),
        pytest.param('import "./d.js";', ["x/d.js"], id="bare"),
        pytest.param('const m = await import("./e.js");', [], id="dynamic-not-followed"),
        pytest.param('// import x from "./f.js" is an example\nconst y = 1;', [], id="comment"),
    ],
)
def test_module_imports_are_read_from_the_source(source: str, imports: list[str]) -> None:
    assert module_imports("x/m.js", source) == imports


def test_closure_follows_imports_once() -> None:
    graph = {"a": ["b", "c"], "b": ["c", "a"], "c": []}
    assert closure(graph, "a") == ["a", "b", "c"]


def test_json_is_compressed_for_remote_clients_only(
    modelyard: Callable[..., RunningApp],
) -> None:
    app = modelyard(api_key=KEY, forwarded_allow_ips=["127.0.0.1"])
    local = app.http.get("/openapi.json", headers=GZIP)
    remote = app.http.get("/openapi.json", headers={**GZIP, **REMOTE})
    assert "content-encoding" not in local.headers  # loopback: bytes cost nothing
    assert remote.status_code == 200 and remote.headers["content-encoding"] == "gzip"
    assert remote.json() == local.json()
    assert int(remote.headers["content-length"]) < len(local.content) / 3
    small = app.http.get("/api/version", headers={**GZIP, **REMOTE})
    assert "content-encoding" not in small.headers  # too small to pay


def test_an_answer_streams_uncompressed_to_a_remote_client(
    modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    ollama_server.state.add_model("llama3.2")
    ollama_server.state.reply = ReplyScript(pieces=[f" w{i}" for i in range(400)])
    app = modelyard(
        [InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)],
        api_key=KEY,
        forwarded_allow_ips=["127.0.0.1"],
    )
    app.http.post("/api/models/sync")
    conversation = app.http.post(
        "/api/conversations", json={"provider": "ollama", "model": "llama3.2"}, headers=REMOTE
    ).json()
    with app.http.stream(
        "POST",
        f"/api/conversations/{conversation['id']}/messages",
        json={"content": "Hello"},
        headers={**GZIP, **REMOTE},
        timeout=60,
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in resp.headers
        events = list(events_of(resp.iter_lines()))
    assert events[-1]["type"] == "done"
    assert "".join(e["text"] for e in events if e["type"] == "token") == "".join(
        f" w{i}" for i in range(400)
    )


def test_precompressed_files_are_real_gzip() -> None:
    assets = Assets(STATIC)
    packed = assets.files["css/app.css"].gzipped
    assert packed is not None
    assert gzip.decompress(packed) == (STATIC / "css" / "app.css").read_bytes()
