"""The audit log read as someone on call reads it: filtered by key, action, outcome and time,
exported as CSV and JSON for a spreadsheet or a ticket."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem
from tests.support.servers import free_port

ADMIN = "admin-secret"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def test_filters_and_exports(modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard(monitor=False, api_key=ADMIN, local_trust="none")
    made = app.http.post(
        "/api/keys", json={"name": "ci-bot", "scopes": ["admin"]}, headers=ADMIN_HEADERS
    )
    assert made.status_code == 201, made.text
    bot = {"Authorization": f"Bearer {made.json()['key']}"}
    before = datetime.now(UTC)
    body = {"id": "side", "base_url": f"http://127.0.0.1:{free_port()}"}
    assert app.http.post("/api/providers/openai_compat/instances", json=body, headers=bot)
    bad = app.http.post("/api/providers/openai_compat/instances", json={"id": "x"}, headers=bot)
    assert bad.status_code in (400, 422)
    wrong = {"Authorization": "Bearer not-a-key"}
    assert (
        app.http.post("/api/providers/ollama/instances", json=body, headers=wrong).status_code
        == 401
    )

    def read(**params: str) -> list[dict[str, object]]:
        answer = app.http.get("/api/audit", params=params, headers=ADMIN_HEADERS)
        assert answer.status_code == 200, answer.text
        entries: list[dict[str, object]] = answer.json()["entries"]
        return entries

    by_bot = read(key="ci-bot")
    assert by_bot and all("ci-bot" in str(e["actor"]) for e in by_bot)
    assert {e["outcome"] for e in by_bot} >= {"ok", "failed"}
    refused = read(outcome="refused")
    assert refused and all(e["status"] in (401, 403, 413, 429) for e in refused)
    assert all(e["outcome"] == "refused" for e in refused)
    assert [
        e["status"] for e in read(key="ci-bot", outcome="ok", action="post /api/providers")
    ] == [201]
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert read(since=later) == []
    assert len(read(since=before.isoformat(), action="instances")) == len(read(action="instances"))
    unknown = app.http.get("/api/audit", params={"outcome": "maybe"}, headers=ADMIN_HEADERS)
    assert "outcome" in assert_problem(unknown, 422, "validation_error")["detail"]
    not_a_time = app.http.get("/api/audit", params={"since": "noon"}, headers=ADMIN_HEADERS)
    assert_problem(not_a_time, 422, "validation_error")

    exported = app.http.get(
        "/api/audit/export", params={"key": "ci-bot", "format": "csv"}, headers=ADMIN_HEADERS
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert 'attachment; filename="audit-' in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == len(by_bot)
    assert rows[0].keys() >= {"ts", "actor", "method", "path", "status", "outcome", "count"}
    as_json = app.http.get(
        "/api/audit/export", params={"outcome": "refused", "format": "json"}, headers=ADMIN_HEADERS
    )
    assert as_json.json()["entries"] == refused

    # An administrator's read: a read-only key cannot export the log.
    reader = app.http.post(
        "/api/keys", json={"name": "viewer", "scopes": ["read"]}, headers=ADMIN_HEADERS
    ).json()["key"]
    denied = httpx.get(f"{app.url}/api/audit/export", headers={"Authorization": f"Bearer {reader}"})
    assert denied.status_code == 403
