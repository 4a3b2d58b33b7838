"""Error shapes declared on routes (``policy.COMPATIBILITY``, read by api/problems.py): the
compatibility endpoints of SPEC §8 answer errors with ``success: false``, native endpoints never
do, whatever their paths look like, and /openapi.json documents each route's errors with the
shape it really sends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.app_server import RunningApp, make_settings
from tests.test_errors import assert_problem

# SPEC §8: the endpoints whose clients read ``success`` (method, path as in /openapi.json).
COMPATIBILITY_ROUTES = {
    ("GET", "/api/models/list"),
    ("GET", "/api/models/available"),
    ("GET", "/api/models/status"),
    ("GET", "/api/models/health"),
    ("DELETE", "/api/models/{provider}/{model_name}"),
    ("POST", "/api/models/pull"),
    ("GET", "/api/models/pull/{pull_id}"),
    ("POST", "/api/models/download"),
    ("GET", "/api/models/download/status"),
}


BAD_JSON = {"content": b"{", "headers": {"content-type": "application/json"}}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    settings = make_settings(tmp_path_factory.mktemp("policy"), monitor=False)
    running = RunningApp(settings).start()
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        pytest.param("PUT", "/api/models/list", {}, 405, "method_not_allowed", id="list"),
        pytest.param("PUT", "/api/models/available", {}, 405, "method_not_allowed", id="available"),
        pytest.param("PUT", "/api/models/status", {}, 405, "method_not_allowed", id="status"),
        pytest.param("PUT", "/api/models/health", {}, 405, "method_not_allowed", id="health"),
        pytest.param("DELETE", "/api/models/nope/x", {}, 404, "unknown_provider", id="delete"),
        pytest.param(
            "POST", "/api/models/pull", {"json": {}}, 422, "validation_error", id="pull-body"
        ),
        pytest.param("POST", "/api/models/pull", BAD_JSON, 400, "invalid_json", id="pull-json"),
        pytest.param("GET", "/api/models/pull/nope", {}, 404, "download_not_found", id="pull"),
        pytest.param(
            "POST",
            "/api/models/download",
            {"json": {"url": "ftp://x/y.gguf"}},
            400,
            "unsupported_scheme",
            id="download",
        ),
        pytest.param(
            "GET",
            "/api/models/download/status",
            {"params": {"url": "http://127.0.0.1:9/none.gguf"}},
            404,
            "download_not_found",
            id="download-status",
        ),
        pytest.param(
            "POST", "/api/models/download/status", {}, 405, "method_not_allowed", id="status-405"
        ),
    ],
)
def test_compatibility_endpoints_answer_errors_with_success_false(
    app: RunningApp, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    body = assert_problem(app.http.request(method, path, **kwargs), status, code)
    assert body["success"] is False


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        pytest.param("POST", "/api/downloads", BAD_JSON, 400, "invalid_json", id="create"),
        pytest.param("GET", "/api/downloads/nope", {}, 404, "download_not_found", id="download"),
        pytest.param(
            "POST", "/api/downloads/nope/pause", {}, 404, "download_not_found", id="pause"
        ),
        pytest.param(
            "POST",
            "/api/models/start",
            {"json": {"provider": "nope", "name": "x"}},
            404,
            "unknown_provider",
            id="start",
        ),
        pytest.param("DELETE", "/api/models/sync", {}, 405, "method_not_allowed", id="sync-405"),
        pytest.param("GET", "/api/nothing", {}, 404, "route_not_found", id="unknown"),
    ],
)
def test_native_endpoints_answer_errors_without_success(
    app: RunningApp, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    body = assert_problem(app.http.request(method, path, **kwargs), status, code)
    assert "success" not in body


def test_openapi_documents_each_routes_problem_shape(app: RunningApp) -> None:
    """Every operation documents its errors as problem+json; those with ``success`` are
    exactly SPEC §8's compatibility endpoints."""
    schema = app.http.get("/openapi.json").json()
    with_success = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses  # FastAPI's own validation shape is never sent
            problem = responses["4XX"]["content"]["application/problem+json"]["schema"]
            if "success" in problem["properties"]:
                with_success.add((method.upper(), path))
    assert with_success == COMPATIBILITY_ROUTES
