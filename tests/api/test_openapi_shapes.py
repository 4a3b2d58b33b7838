"""``/openapi.json`` documents the shapes the models and providers routes really return: each
answer, taken from a real modelyard against the stand-ins, has every key its schema requires
and no key its schema does not name, recursively (the compatibility shapes included)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from modelyard.instance_config import InstanceConfig
from tests.fakes.fixtures import FakeServer
from tests.fakes.ollama_state import OllamaState
from tests.support.app_server import RunningApp
from tests.support.openapi import Schemas, checked

App = Callable[..., RunningApp]


def test_models_and_providers_answers_match_their_schemas(
    modelyard: App, ollama_server: FakeServer[OllamaState], tiny_gguf: Path, tmp_path: Path
) -> None:
    ollama_server.state.add_model("llama3.2")
    ollama_server.state.load("llama3.2")
    ollama_server.state.add_model("qwen2.5:0.5b")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    ollama = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
    app = modelyard([ollama], models_dir=models)
    http = app.http
    schemas = Schemas(http.get("/openapi.json").json())

    sync = checked(schemas, http.post("/api/models/sync"), "post", "/api/models/sync")
    assert sync["errors"] == []
    listed = checked(schemas, http.get("/api/models/list"), "get", "/api/models/list")
    assert {m["name"] for m in listed["models"]} == {"llama3.2:latest", "qwen2.5:0.5b", "tiny.gguf"}
    page = http.get("/api/models/search", params={"sort": "size", "order": "desc"})
    checked(schemas, page, "get", "/api/models/search")
    for params in (
        {"provider": "llamacpp", "name": "tiny.gguf"},
        {"provider": "ollama", "name": "qwen2.5:0.5b"},
    ):
        details = http.get("/api/models/details", params=params)
        checked(schemas, details, "get", "/api/models/details")
    ref = {"provider": "ollama", "name": "qwen2.5:0.5b"}
    started = checked(
        schemas, http.post("/api/models/start", json=ref), "post", "/api/models/start"
    )
    assert started["status"] == "loaded"
    checked(schemas, http.post("/api/models/stop", json=ref), "post", "/api/models/stop")
    batch = {"action": "stop", "models": [ref, {"provider": "ollama", "name": "ghost"}]}
    result = checked(
        schemas, http.post("/api/models/batch", json=batch), "post", "/api/models/batch"
    )
    assert (result["ok"], result["failed"]) == (1, 1)
    checked(schemas, http.get("/api/models/available"), "get", "/api/models/available")
    checked(schemas, http.get("/api/system/resources"), "get", "/api/system/resources")
    checked(schemas, http.get("/api/models/status"), "get", "/api/models/status")
    checked(schemas, http.get("/api/models/health"), "get", "/api/models/health")
    checked(schemas, http.get("/api/providers/health"), "get", "/api/providers/health")
    recreated = http.post("/api/models/recreate", json={"provider": "ollama", "name": "llama3.2"})
    assert checked(schemas, recreated, "post", "/api/models/recreate")["status"] == "downloading"
    deleted = http.delete("/api/models/ollama/qwen2.5:0.5b")
    assert checked(schemas, deleted, "delete", "/api/models/{provider}/{model_name}")["success"]

    checked(schemas, http.get("/api/providers"), "get", "/api/providers")
    checked(schemas, http.get("/api/providers/kinds"), "get", "/api/providers/kinds")
    status = http.get("/api/providers/status", params={"refresh": "true"})
    checked(schemas, status, "get", "/api/providers/status")
    one = "/api/providers/{provider}/instances/{instance_id}"
    for suffix in ("status", "history", "logs"):
        answer = http.get(f"/api/providers/ollama/instances/default/{suffix}")
        checked(schemas, answer, "get", f"{one}/{suffix}")
    body = {"id": "other", "base_url": "http://127.0.0.1:11435"}
    created = http.post("/api/providers/ollama/instances", json=body)
    checked(schemas, created, "post", "/api/providers/{provider}/instances", 201)
    edited = http.patch("/api/providers/ollama/instances/other", json={"ctx_size": 2048})
    assert checked(schemas, edited, "patch", one)["ctx_size"] == 2048
