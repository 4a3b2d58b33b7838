"""Seed 000 names llama.cpp ``llama_cpp``: accepted wherever ``llamacpp`` is (config, paths,
bodies, filters), and every answer says ``llamacpp`` (issue 18, item 6)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modelyard.instance_config import InstanceConfig
from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem
from tests.support.servers import closed_port
from tests.support.tiny_gguf import write_tiny_gguf

App = Callable[..., RunningApp]


def test_the_config_takes_llama_cpp_as_llamacpp() -> None:
    config = InstanceConfig(provider="llama_cpp", id="box", base_url="http://127.0.0.1:8080")
    assert (config.provider, config.key) == ("llamacpp", "llamacpp/box")


def test_llama_cpp_is_accepted_on_input_and_answered_as_llamacpp(
    modelyard: App, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    write_tiny_gguf(models / "tiny.gguf")
    app = modelyard([], models_dir=models)
    http = app.http

    made = http.post(
        "/api/providers/llama_cpp/instances",
        json={"id": "box", "base_url": f"http://127.0.0.1:{closed_port()}"},
    )
    assert made.status_code == 201, made.text
    assert made.json()["provider"] == "llamacpp"
    status = http.get("/api/providers/llama_cpp/instances/box/status").json()
    assert (status["provider"], status["instance_id"]) == ("llamacpp", "box")

    assert http.post("/api/models/sync").status_code == 200
    found = http.get("/api/models/search", params={"provider": "llama_cpp"}).json()
    assert [(m["provider"], m["name"]) for m in found["models"]] == [("llamacpp", "tiny.gguf")]

    batch = http.post(
        "/api/models/batch",
        json={"action": "stop", "models": [{"provider": "llama_cpp", "name": "tiny.gguf"}]},
    ).json()
    assert [(r["provider"], r["name"], r["ok"]) for r in batch["results"]] == [
        ("llamacpp", "tiny.gguf", True)
    ]
    missing = http.post("/api/models/stop", json={"provider": "llama_cpp", "name": "nope.gguf"})
    assert_problem(missing, 404, "model_not_found")

    talk = http.post("/api/conversations", json={"provider": "llama_cpp", "model": "tiny.gguf"})
    assert talk.status_code == 201, talk.text
    assert talk.json()["provider"] == "llamacpp"

    assert http.delete("/api/providers/llama_cpp/instances/box").status_code == 204
    assert_problem(
        http.get("/api/models/search", params={"provider": "llama"}), 404, "unknown_provider"
    )
