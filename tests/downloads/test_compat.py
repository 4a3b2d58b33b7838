"""The compatibility endpoints of SPEC §8, shape by shape, and the pull WebSocket."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from modelyard.instance_config import InstanceConfig
from tests.downloads.support import MiB, add_payload
from tests.fakes.fileserver import FileServer
from tests.fakes.fixtures import FakeServer
from tests.fakes.ollama_state import OllamaState
from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem
from tests.support.waiting import wait_until

PULL_FIELDS = {
    "pull_id",
    "model_name",
    "status",
    "progress",
    "current_layer",
    "total_layers",
    "downloaded_bytes",
    "total_bytes",
    "total_final",  # issue 18: false while the totals may still grow
    "current_status",
    "started_at",
    "error",
}
DOWNLOAD_ITEM_FIELDS = {
    *("url", "filename", "status", "downloaded", "total", "progress", "error"),
    "verified",  # issue 18: false for a file taken as found, by its size alone
}


@pytest.fixture
def app(modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]) -> RunningApp:
    state = ollama_server.state
    state.pull_tick, state.pull_chunk_bytes = 0.01, 2_000_000
    state.add_registry_model("qwen2:0.5b", [60_000_000, 1_400, 20_000_000])
    instance = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
    return modelyard([instance])


def pull_status(app: RunningApp, pull_id: str) -> dict[str, Any]:
    resp = app.http.get(f"/api/models/pull/{pull_id}")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_pull_and_its_status_have_exactly_the_compatible_shapes(app: RunningApp) -> None:
    started = app.http.post("/api/models/pull", json={"model_name": "qwen2:0.5b"})

    assert started.status_code == 200 and set(started.json()) == {"pull_id", "status"}
    pull_id = started.json()["pull_id"]
    assert started.json()["status"] == "PULLING"
    first = pull_status(app, pull_id)
    assert set(first) == PULL_FIELDS and first["status"] == "PULLING"
    assert first["model_name"] == "qwen2:0.5b" and first["started_at"]

    seen: dict[str, Any] = {}
    wait_until(lambda: seen.update(pull_status(app, pull_id)) or seen["status"] != "PULLING", "end")
    assert seen["status"] == "COMPLETED" and seen["error"] is None and seen["progress"] == 100.0
    assert seen["downloaded_bytes"] == seen["total_bytes"] == 80_001_887  # Ollama's /api/tags
    assert seen["total_final"] is True
    assert seen["current_layer"] == seen["total_layers"] >= 2
    assert seen["current_status"] == "success"
    again = app.http.post(
        "/api/models/pull", json={"model_name": "qwen2:0.5b", "provider": "ollama"}
    )
    assert again.json()["status"] == "PULLING" and again.json()["pull_id"] != pull_id


def test_a_failed_pull_says_failed_with_the_error(app: RunningApp) -> None:
    pull_id = app.http.post("/api/models/pull", json={"model_name": "nowhere:1b"}).json()["pull_id"]
    seen: dict[str, Any] = {}
    wait_until(lambda: seen.update(pull_status(app, pull_id)) or seen["status"] != "PULLING", "end")
    assert seen["status"] == "FAILED" and "file does not exist" in seen["error"]


def test_the_pull_socket_streams_until_the_pull_ends(app: RunningApp) -> None:
    pull_id = app.http.post("/api/models/pull", json={"model_name": "qwen2:0.5b"}).json()["pull_id"]
    messages: list[dict[str, Any]] = []
    with (
        connect(
            app.url.replace("http", "ws") + f"/ws/models/pull/{pull_id}", open_timeout=10
        ) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        while True:
            messages.append(json.loads(ws.recv(timeout=30)))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert all(set(m) == PULL_FIELDS and m["pull_id"] == pull_id for m in messages)
    assert messages[-1]["status"] == "COMPLETED" and len(messages) >= 3
    downloaded = [m["downloaded_bytes"] for m in messages]
    assert downloaded == sorted(downloaded)

    # A finished pull sends its final status once and closes.
    with connect(app.url.replace("http", "ws") + f"/ws/models/pull/{pull_id}") as ws:
        assert json.loads(ws.recv(timeout=10))["status"] == "COMPLETED"


def test_the_pull_socket_of_an_unknown_pull_says_so(app: RunningApp) -> None:
    with connect(app.url.replace("http", "ws") + "/ws/models/pull/nope") as ws:
        assert json.loads(ws.recv(timeout=10))["code"] == "download_not_found"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


def test_url_download_and_its_status_have_exactly_the_compatible_shapes(
    app: RunningApp, file_server: FileServer
) -> None:
    payload = add_payload(file_server, "nomic-embed.gguf", 2 * MiB)

    resp = app.http.post("/api/models/download", json={"url": payload.url, "mode": "embed"})

    body = resp.json()
    assert resp.status_code == 200
    assert set(body) == {"success", "url", "mode", "message", "download_id"}
    assert (body["success"], body["url"], body["mode"]) == (True, payload.url, "embed")
    one: dict[str, Any] = {}

    def finished() -> bool:
        one.update(app.http.get("/api/models/download/status", params={"url": payload.url}).json())
        return bool(one["download"]["status"] != "downloading")

    wait_until(finished, "the download")
    assert set(one) == {"success", "download"} and one["success"] is True
    item = one["download"]
    assert set(item) == DOWNLOAD_ITEM_FIELDS
    assert (item["status"], item["filename"], item["progress"]) == (
        "completed",
        payload.name,
        100.0,
    )
    assert item["downloaded"] == item["total"] == len(payload.data) and item["error"] is None

    every = app.http.get("/api/models/download/status").json()
    assert every == {"success": True, "downloads": {payload.url: item}}
    again = app.http.post("/api/models/download", json={"url": payload.url}).json()
    assert again["download_id"] == body["download_id"] and again["message"] == "already completed"


def test_a_failed_url_download_is_failed_with_its_error(
    app: RunningApp, file_server: FileServer
) -> None:
    url = file_server.url_for("missing.gguf")
    app.http.post("/api/models/download", json={"url": url, "filename": "renamed.gguf"})
    item: dict[str, Any] = {}

    def finished() -> bool:
        body = app.http.get("/api/models/download/status", params={"url": url}).json()
        item.update(body["download"])
        return bool(item["status"] != "downloading")

    wait_until(finished, "the download")
    assert item["status"] == "failed" and "404" in item["error"]
    assert item["filename"] == "renamed.gguf"


def _schema(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A schema with its ``$ref`` followed."""
    ref = node.get("$ref")
    if ref is None:
        return node
    found: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def _answer(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    responses = spec["paths"][path][method]["responses"]
    return _schema(spec, responses["200"]["content"]["application/json"]["schema"])


def _fields(schema: dict[str, Any]) -> set[str]:
    """The properties of an object schema, every one of them required."""
    assert set(schema["required"]) == set(schema["properties"]), schema
    return set(schema["properties"])


def test_openapi_documents_the_compatible_shapes_to_the_letter(app: RunningApp) -> None:
    spec = app.http.get("/openapi.json").json()

    started = _answer(spec, "post", "/api/models/pull")
    assert _fields(started) == {"pull_id", "status"}
    assert started["properties"]["status"]["enum"] == ["PULLING", "COMPLETED", "FAILED"]
    status = _answer(spec, "get", "/api/models/pull/{pull_id}")
    assert _fields(status) == PULL_FIELDS
    download = _answer(spec, "post", "/api/models/download")
    assert _fields(download) == {"success", "url", "mode", "message", "download_id"}
    either = _answer(spec, "get", "/api/models/download/status")["anyOf"]
    one, every = (_schema(spec, s) for s in either)
    assert (_fields(one), _fields(every)) == ({"success", "download"}, {"success", "downloads"})
    item = _schema(spec, one["properties"]["download"])
    assert _fields(item) == DOWNLOAD_ITEM_FIELDS
    assert item == _schema(spec, every["properties"]["downloads"]["additionalProperties"])
    assert item["properties"]["status"]["enum"] == ["downloading", "completed", "failed"]
    # The pull socket cannot be an OpenAPI operation: the description says what it sends.
    assert "`WS /ws/models/pull/{pull_id}`" in spec["info"]["description"]
    assert "PullStatus" in spec["components"]["schemas"]


def test_a_file_already_there_with_the_servers_size_completes_at_once_not_verified(
    app: RunningApp, file_server: FileServer
) -> None:
    """Seed 004 completes a file that is already there; with no checksum, modelyard does so
    only when its size is the server's Content-Length, and says it is not verified."""
    payload = add_payload(file_server, "already.gguf", 3 * MiB)
    dest = app.settings.resolved_models_dir / "already.gguf"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(payload.data)
    before = dest.stat().st_mtime_ns

    resp = app.http.post("/api/models/download", json={"url": payload.url})

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"success", "url", "mode", "message", "download_id"} and body["success"]
    item = app.http.get("/api/models/download/status", params={"url": payload.url}).json()
    assert item["download"] == {
        "url": payload.url,
        "filename": "already.gguf",
        "status": "completed",
        "downloaded": len(payload.data),
        "total": len(payload.data),
        "progress": 100.0,
        "error": None,
        "verified": False,
    }
    native = app.http.get(f"/api/downloads/{body['download_id']}").json()
    assert (native["state"], native["verified"], native["sha256"]) == ("completed", False, None)
    assert [r.method for r in file_server.requests] == ["HEAD"]  # nothing fetched
    assert dest.stat().st_mtime_ns == before and dest.read_bytes() == payload.data
    names = {m["name"] for m in app.http.get("/api/models/list").json()["models"]}
    assert "already.gguf" in names


def test_a_file_already_there_with_another_size_is_refused_with_the_choices(
    app: RunningApp, file_server: FileServer
) -> None:
    payload = add_payload(file_server, "other.gguf", 1 * MiB)
    dest = app.settings.resolved_models_dir / "other.gguf"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"something else")

    resp = app.http.post("/api/models/download", json={"url": payload.url})

    problem = assert_problem(resp, 409, "destination_exists")
    assert problem["success"] is False
    assert dest.read_bytes() == b"something else"
    assert app.http.get("/api/downloads").json()["downloads"] == []


def test_the_native_endpoint_keeps_refusing_an_existing_file_without_proof(
    app: RunningApp, file_server: FileServer
) -> None:
    payload = add_payload(file_server, "same.gguf", 1 * MiB)
    dest = app.settings.resolved_models_dir / "same.gguf"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(payload.data)

    resp = app.http.post("/api/downloads", json={"source": "url", "url": payload.url})

    assert_problem(resp, 409, "destination_exists")
    assert file_server.requests == []
