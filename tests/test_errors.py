"""The error contract: every error is problem+json with a stable code and a hint; bad input is
a 4xx, never a 500 (SPEC §8, §1.4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.app_server import RunningApp

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "hint"}


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status and body["code"] == code
    assert body["hint"] and "Traceback" not in resp.text
    return body


@pytest.fixture
def app(modelyard: Callable[..., RunningApp]) -> RunningApp:
    return modelyard(monitor=False)


BAD_REQUESTS = [
    pytest.param(
        "POST",
        "/api/providers/nope/instances",
        {"id": "a", "base_url": "http://x"},
        404,
        "unknown_provider",
        id="unknown-provider",
    ),
    pytest.param(
        "GET",
        "/api/providers/ollama/instances/ghost/history",
        None,
        404,
        "instance_not_found",
        id="unknown-instance",
    ),
    pytest.param(
        "POST",
        "/api/providers/ollama/instances",
        {"id": "a", "base_url": "ftp://x"},
        400,
        "invalid_url",
        id="ftp-url",
    ),
    pytest.param(
        "POST",
        "/api/providers/ollama/instances",
        {"id": "a", "base_url": "http://"},
        400,
        "invalid_url",
        id="hostless-url",
    ),
    pytest.param(
        "POST",
        "/api/providers/ollama/instances",
        {"id": "a", "base_url": "http://h:99999"},
        400,
        "invalid_url",
        id="bad-port",
    ),
    pytest.param(
        "POST",
        "/api/providers/ollama/instances",
        {"id": "../x", "base_url": "http://h"},
        400,
        "invalid_instance",
        id="bad-id",
    ),
    pytest.param(
        "POST",
        "/api/providers/ollama/instances",
        {"base_url": "http://h"},
        422,
        "validation_error",
        id="missing-id",
    ),
    pytest.param(
        "POST",
        "/api/providers/ollama/instances",
        {"id": "a", "base_url": "http://h", "x": 1},
        422,
        "validation_error",
        id="unknown-field",
    ),
    pytest.param(
        "POST",
        "/api/providers/openai/instances",
        {"id": "a", "base_url": "http://127.0.0.1:9", "managed": True},
        400,
        "not_manageable",
        id="unmanageable",
    ),
    pytest.param(
        "POST",
        "/api/providers/llamacpp/instances",
        {"id": "a", "base_url": "http://127.0.0.1:9", "managed": True},
        400,
        "model_required",
        id="managed-without-model",
    ),
    pytest.param(
        "POST",
        "/api/providers/llamacpp/instances",
        {"id": "a", "base_url": "http://127.0.0.1:9", "managed": True, "model": "/no/such.gguf"},
        400,
        "model_file_not_found",
        id="missing-model-file",
    ),
    pytest.param(
        "POST",
        "/api/providers/llamacpp/instances",
        {"id": "a", "base_url": "http://10.1.2.3:9", "managed": True, "model": "x.gguf"},
        400,
        "not_local",
        id="managed-remote",
    ),
    pytest.param("GET", "/api/no/such/route", None, 404, "route_not_found", id="unknown-route"),
    pytest.param("PUT", "/api/providers", {}, 405, "method_not_allowed", id="wrong-method"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD_REQUESTS)
def test_bad_input_is_a_clear_4xx(
    app: RunningApp, method: str, path: str, body: Any, status: int, code: str
) -> None:
    assert_problem(app.http.request(method, path, json=body), status, code)


def test_invalid_json_and_wrong_types(app: RunningApp) -> None:
    bad_json = app.http.post(
        "/api/providers/ollama/instances",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert_problem(bad_json, 400, "invalid_json")
    array = app.http.post("/api/providers/ollama/instances", json=[1, 2])
    assert_problem(array, 422, "validation_error")


def test_duplicate_instance_and_config_instances(modelyard: Callable[..., RunningApp]) -> None:
    from modelyard.instance_config import InstanceConfig

    app = modelyard(
        [InstanceConfig(provider="ollama", id="cfg", base_url="http://127.0.0.1:9")],
        monitor=False,
    )
    body = {"id": "dup", "base_url": "http://127.0.0.1:9"}
    created = app.http.post("/api/providers/ollama/instances", json=body)
    assert created.status_code == 201
    assert created.json()["has_api_key"] is False
    assert_problem(
        app.http.post("/api/providers/ollama/instances", json=body), 409, "instance_exists"
    )
    assert_problem(
        app.http.post(
            "/api/providers/ollama/instances", json={"id": "cfg", "base_url": "http://h"}
        ),
        409,
        "instance_exists",
    )
    assert_problem(
        app.http.delete("/api/providers/ollama/instances/cfg"), 409, "instance_from_config"
    )
    assert app.http.delete("/api/providers/ollama/instances/dup").status_code == 204
    assert_problem(
        app.http.delete("/api/providers/ollama/instances/dup"), 404, "instance_not_found"
    )


def test_secrets_never_leave_the_api(app: RunningApp) -> None:
    body = {"id": "keyed", "base_url": "http://127.0.0.1:9", "api_key": "sk-very-secret"}
    assert app.http.post("/api/providers/openai_compat/instances", json=body).status_code == 201
    for path in ("/api/providers", "/api/providers/status?refresh=true", "/api/audit"):
        assert "sk-very-secret" not in app.http.get(path).text


def test_external_instance_cannot_be_started(app: RunningApp) -> None:
    app.http.post(
        "/api/providers/ollama/instances", json={"id": "ext", "base_url": "http://127.0.0.1:9"}
    )
    assert_problem(app.http.post("/api/providers/ollama/instances/ext/start"), 409, "not_managed")


def test_edit_an_instance(app: RunningApp) -> None:
    base = "/api/providers/ollama/instances"
    app.http.post(base, json={"id": "box", "base_url": "http://127.0.0.1:9"})
    edited = app.http.patch(f"{base}/box", json={"base_url": "http://127.0.0.1:10", "api_key": "k"})
    assert edited.status_code == 200, edited.text
    assert edited.json()["base_url"] == "http://127.0.0.1:10" and edited.json()["has_api_key"]
    listed = app.http.get("/api/providers").json()["instances"]
    assert [i["base_url"] for i in listed if i["id"] == "box"] == ["http://127.0.0.1:10"]
    assert_problem(app.http.patch(f"{base}/box", json={"base_url": "ftp://x"}), 400, "invalid_url")
    assert_problem(app.http.patch(f"{base}/box", json={"id": "other"}), 422, "validation_error")
    assert_problem(app.http.patch(f"{base}/ghost", json={}), 404, "instance_not_found")
