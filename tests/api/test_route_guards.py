"""What each route declares (SPEC §12): scopes, local apps' origins, headers, the audit log's
bounds. Declarations live on the routers; these tests call the API as a client would."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute

from modelyard.api.policy import RoutePolicy
from modelyard.clock import utcnow
from modelyard.store.tables import AuditRow
from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem

ADMIN = "admin-secret"


def keyed(app: RunningApp, *scopes: str) -> dict[str, str]:
    created = app.http.post(
        "/api/keys",
        json={"name": "-".join(scopes), "scopes": list(scopes)},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    return {"Authorization": f"Bearer {created.json()['key']}"}


def test_every_route_declares_its_policy(modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard(monitor=False)
    undeclared = [
        route.path
        for route in app.app.routes
        if isinstance(route, APIRoute | APIWebSocketRoute)
        and not any(isinstance(d.dependency, RoutePolicy) for d in route.dependencies)
    ]
    assert undeclared == []


def test_scopes_come_from_each_routes_declaration(modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard(monitor=False, api_key=ADMIN, local_trust="none")
    read, inference = keyed(app, "read"), keyed(app, "inference")

    assert app.http.get("/api/providers", headers=read).status_code == 200
    for path in ("/api/audit", "/api/keys"):  # reads, but an administrator's
        assert_problem(app.http.get(path, headers=read), 403, "insufficient_scope")
        assert_problem(app.http.get(path, headers=inference), 403, "insufficient_scope")
    # Conversations are their users' words: read keys do not see them.
    assert_problem(app.http.get("/api/conversations", headers=read), 403, "insufficient_scope")
    assert app.http.get("/api/conversations", headers=inference).status_code == 200
    created = app.http.post(
        "/api/conversations", json={"provider": "ollama", "model": "x"}, headers=inference
    )
    assert created.status_code in (201, 404)  # allowed; 404: no such instance here
    assert_problem(app.http.post("/api/models/sync", headers=inference), 403, "insufficient_scope")


LOCAL_APP = "http://localhost:3000"


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:3000",
        "https://127.0.0.1:8443",
        "http://[::1]:5173",
        "http://0.0.0.0",
        "app://obsidian.md",
        "tauri://localhost",
        "vscode-webview://1a2b3c",
    ],
)
def test_local_apps_may_download_and_pull_with_cors(
    modelyard: Callable[..., RunningApp], origin: str
) -> None:
    app = modelyard(monitor=False)
    preflight = app.http.options(
        "/api/models/download",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    status = app.http.get(
        "/api/models/download/status", params={"url": "http://x/y.gguf"}, headers={"Origin": origin}
    )
    assert status.headers.get("access-control-allow-origin") == origin
    pulled = app.http.post(
        "/api/models/pull", json={"model_name": "llama3.2"}, headers={"Origin": origin}
    )
    assert pulled.status_code != 403  # not refused as cross-site (no Ollama instance here)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/keys", {"name": "x", "scopes": ["admin"]}),
        ("POST", "/api/conversations", {"provider": "ollama", "model": "x"}),
        ("POST", "/api/providers/ollama/instances", {"id": "x", "base_url": "http://h:1"}),
        ("POST", "/api/downloads", {"source": "url", "url": "http://h/x.gguf"}),
        ("DELETE", "/api/models/llamacpp/x.gguf", None),
    ],
)
def test_local_origins_never_reach_admin_routes_keys_or_conversations(
    modelyard: Callable[..., RunningApp], method: str, path: str, body: object
) -> None:
    app = modelyard(monitor=False)
    preflight = app.http.options(
        path, headers={"Origin": LOCAL_APP, "Access-Control-Request-Method": method}
    )
    assert "access-control-allow-origin" not in preflight.headers
    resp = app.http.request(method, path, json=body, headers={"Origin": LOCAL_APP})
    assert_problem(resp, 403, "cross_origin_forbidden")


def test_null_and_lookalike_origins_stay_refused_and_the_setting_turns_it_off(
    modelyard: Callable[..., RunningApp],
) -> None:
    app = modelyard(monitor=False)
    body = {"url": "http://127.0.0.1:9/x.gguf"}
    for origin in ("null", "http://localhost.evil.example", "http://127.0.0.1.nip.io:3000"):
        resp = app.http.post("/api/models/download", json=body, headers={"Origin": origin})
        assert_problem(resp, 403, "cross_origin_forbidden")
    closed = modelyard(monitor=False, allow_local_origins=False)
    resp = closed.http.post("/api/models/download", json=body, headers={"Origin": LOCAL_APP})
    assert_problem(resp, 403, "cross_origin_forbidden")


def test_every_answer_forbids_framing_and_sniffing(modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard(monitor=False)
    for path in ("/", "/docs", "/api/version", "/static/js/app.js", "/nope"):
        headers = app.http.get(path).headers
        policy = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, path
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_the_api_docs_page_loads_only_local_files(modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard(monitor=False)
    page = app.http.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/") and not s.startswith("//") for s in sources)
    assert "<script>" not in page.text  # no inline script: the CSP would block it
    for source in sources:
        assert app.http.get(source).status_code == 200, source


def test_refused_requests_are_counted_not_written_one_by_one(
    modelyard: Callable[..., RunningApp],
) -> None:
    app = modelyard(monitor=False)
    database = app.settings.data_dir / "modelyard.db"
    before = database.stat().st_size
    path = "/api/providers/" + "a" * 1900
    evil = {"Origin": "https://evil.example"}
    for _ in range(2000):
        assert app.http.post(path, headers=evil).status_code == 403

    entries = app.http.get("/api/audit", params={"limit": 1000}).json()["entries"]

    refused = [e for e in entries if e["detail"] == "cross_origin_forbidden"]
    assert len(refused) <= 2  # one per minute window, and the run may cross one boundary
    assert sum(e["count"] for e in refused) == 2000
    assert all(len(e["path"]) <= 256 for e in refused)
    wal = database.with_name("modelyard.db-wal")
    grown = database.stat().st_size + (wal.stat().st_size if wal.exists() else 0) - before
    assert grown < 1 << 20


def test_the_audit_table_keeps_its_retention(modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard(monitor=False, audit_retention_days=1, audit_max_rows=150)
    old, recent = utcnow() - timedelta(days=2), utcnow() - timedelta(hours=1)
    with app.services.db.session() as s:
        for when, count in ((old, 50), (recent, 200)):
            s.add_all(
                AuditRow(ts=when, actor="t", client="c", method="POST", path=f"/{i}", status=200)
                for i in range(count)
            )

    entries = app.http.get("/api/audit", params={"limit": 1000}).json()["entries"]

    assert len(entries) == 150
    assert {e["path"] for e in entries} == {f"/{i}" for i in range(50, 200)}  # newest kept
