"""Start, stop, delete, recreate and batch on the runtimes that manage their own models:
the Ollama stand-in (``/api/ps`` tracks load and unload), the LM Studio stand-in (REST v1
load/unload), and servers whose models cannot be started at all."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ollama

from tests.fakes.fileserver import FileServer, file_server
from tests.fakes.fixtures import FakeServer
from tests.fakes.lmstudio import LMStudioState
from tests.fakes.ollama import OllamaState
from tests.fakes.openai_compat import OpenAIState
from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem, catalog, drain, instance, wait_for

App = Callable[..., RunningApp]
__all__ = ["file_server"]  # the fixture
START, STOP = "/api/models/start", "/api/models/stop"


def _ollama_app(modelyard: App, server: FakeServer[OllamaState], **settings: Any) -> RunningApp:
    app = modelyard([instance("ollama", server.url)], **settings)
    app.http.post("/api/models/sync")
    return app


def test_ollama_start_and_stop_load_and_unload_through_api_ps(
    modelyard: App, ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    state.add_model("llama3.2", size=2_000_000_000, parameter_size="3.2B")
    app = _ollama_app(modelyard, ollama_server)
    sub = app.services.bus.subscribe(["model.state"])

    started = app.http.post(START, json={"provider": "ollama", "name": "llama3.2:latest"})
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "loaded" and started.json()["loaded"]["size"] > 0
    assert state.loaded_names() == ["llama3.2:latest"]
    (load,) = ollama_server.log.for_path("/api/generate")
    assert load.json() == {"model": "llama3.2:latest", "stream": False}  # empty: load only

    stopped = app.http.post(STOP, json={"provider": "ollama", "name": "llama3.2"})  # tag implied
    assert stopped.status_code == 200 and stopped.json()["status"] == "available"
    assert state.loaded_names() == []
    assert ollama_server.log.for_path("/api/generate")[-1].json()["keep_alive"] == 0
    assert [(d["status"], d["loaded"]) for _, d in drain(sub)] == [
        ("loaded", True),
        ("available", False),
    ]


def test_ollama_delete_and_missing_models(
    modelyard: App, ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    state.add_model("acme/coder:7b")
    state.add_model("keep:latest")
    app = _ollama_app(modelyard, ollama_server)

    deleted = app.http.delete("/api/models/ollama/acme/coder:7b")  # '/' and ':' in the path
    assert deleted.status_code == 200 and deleted.json()["name"] == "acme/coder:7b"
    assert state.model_names() == ["keep:latest"]
    assert ("ollama", "default", "acme/coder:7b") not in catalog(app)

    assert_problem(app.http.delete("/api/models/ollama/acme/coder:7b"), 404, "model_not_found")
    assert_problem(
        app.http.post(START, json={"provider": "ollama", "name": "ghost"}), 404, "model_not_found"
    )
    assert_problem(app.http.delete("/api/models/ollama/bad name!"), 400, "invalid_model_name")
    assert_problem(
        app.http.delete("/api/models/ollama/keep", params={"instance_id": "other"}),
        404,
        "instance_not_found",
    )
    state.remove_model("keep")  # behind modelyard's back: the stale row goes with the 404
    assert_problem(app.http.delete("/api/models/ollama/keep:latest"), 404, "model_not_found")
    assert ("ollama", "default", "keep:latest") not in catalog(app)


def test_ollama_start_checks_memory_first(
    modelyard: App, ollama_server: FakeServer[OllamaState]
) -> None:
    ollama_server.state.add_model("big:latest", size=4_000_000_000, parameter_size="7B")
    app = _ollama_app(modelyard, ollama_server, memory_margin_bytes=2**50)
    ref = {"provider": "ollama", "name": "big:latest"}
    assert_problem(app.http.post(START, json=ref), 507, "insufficient_memory")
    assert ollama_server.state.loaded_names() == []
    details = app.http.get("/api/models/details", params=ref).json()
    assert details["estimate"]["basis"] == "parameters" and details["gguf"] is None
    assert app.http.post(START, json={**ref, "force": True}).json()["status"] == "loaded"


def test_an_unreachable_ollama_is_a_clear_error(modelyard: App) -> None:
    from tests.support.servers import closed_port

    app = modelyard([instance("ollama", f"http://127.0.0.1:{closed_port()}")])
    body = assert_problem(
        app.http.post(START, json={"provider": "ollama", "name": "x"}), 503, "provider_unreachable"
    )
    assert body["hint"]


def test_lmstudio_load_and_unload(
    modelyard: App, lmstudio_server: FakeServer[LMStudioState]
) -> None:
    state = lmstudio_server.state
    state.add_model("qwen/qwen3-4b", params_string="4B", size_bytes=2_000_000_000)
    app = modelyard([instance("lmstudio", lmstudio_server.url)])
    app.http.post("/api/models/sync")
    ref = {"provider": "lmstudio", "name": "qwen/qwen3-4b"}

    assert app.http.post(START, json=ref).json()["status"] == "loaded"
    assert state.loaded_ids() == ["qwen/qwen3-4b"]
    assert app.http.post(STOP, json=ref).json()["status"] == "available"
    assert state.loaded_ids() == []
    assert_problem(app.http.delete("/api/models/lmstudio/qwen/qwen3-4b"), 409, "not_supported")


def test_servers_that_load_models_themselves_refuse_start_and_stop(
    modelyard: App, openai_server: FakeServer[OpenAIState]
) -> None:
    openai_server.state.models = ["served"]
    app = modelyard([instance("openai_compat", openai_server.url, id="vllm")])
    app.http.post("/api/models/sync")
    ref = {"provider": "openai_compat", "name": "served"}
    assert_problem(app.http.post(START, json=ref), 409, "not_supported")
    assert_problem(app.http.post(STOP, json=ref), 409, "not_supported")
    assert_problem(app.http.delete("/api/models/openai_compat/served"), 409, "not_supported")


def test_batch_gives_a_result_per_item_and_progress_events(
    modelyard: App, ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    for name in ("a:latest", "b:latest", "c:latest"):
        state.add_model(name)
    app = _ollama_app(modelyard, ollama_server)
    sub = app.services.bus.subscribe(["batch.progress"])
    items = [{"provider": "ollama", "name": n} for n in ("a", "missing", "b")]

    result = app.http.post("/api/models/batch", json={"action": "start", "models": items}).json()
    assert [(r["name"], r["ok"]) for r in result["results"]] == [
        ("a:latest", True),
        ("missing", False),
        ("b:latest", True),
    ]
    assert result["results"][1]["code"] == "model_not_found" and result["failed"] == 1
    assert sorted(state.loaded_names()) == ["a:latest", "b:latest"]
    progress = [d for _, d in drain(sub)]
    assert [(p["done"], p["total"], p["result"]["ok"]) for p in progress] == [
        (1, 3, True),
        (2, 3, False),
        (3, 3, True),
    ]
    assert {p["batch_id"] for p in progress} == {result["batch_id"]}

    deleted = app.http.post(
        "/api/models/batch",
        json={"action": "delete", "models": [{"provider": "ollama", "name": n} for n in "ac"]},
    ).json()
    assert deleted["ok"] == 2 and state.model_names() == ["b:latest"]


def test_recreate_deletes_and_pulls_again_through_the_download_manager(
    modelyard: App, ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    state.add_registry_model("qwen2:0.5b", [300_000, 1_400])
    ollama.Client(host=ollama_server.url).pull("qwen2:0.5b")
    app = _ollama_app(modelyard, ollama_server)
    before = state.model("qwen2:0.5b")
    assert before is not None

    answer = app.http.post(
        "/api/models/recreate", json={"provider": "ollama", "name": "qwen2:0.5b"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "downloading"
    assert (body["download"]["source"], body["download"]["model_name"]) == ("ollama", "qwen2:0.5b")
    assert [r.json() for r in ollama_server.log.for_path("/api/delete")] == [
        {"model": "qwen2:0.5b"}
    ]
    back = wait_for(
        lambda: (
            (m := catalog(app).get(("ollama", "default", "qwen2:0.5b")))
            and m["status"] == "available"
            and m
        ),
        what="the model to be back",
    )
    after = state.model("qwen2:0.5b")
    assert after is not None and after.modified_at > before.modified_at
    assert back["source"] == "ollama"


def test_recreate_a_downloaded_gguf_fetches_it_again_from_its_url(
    modelyard: App, file_server: FileServer, tmp_path: Path, tiny_gguf: Path
) -> None:
    file_server.add_file("again.gguf", tiny_gguf.read_bytes())
    url = file_server.url_for("again.gguf")
    app = modelyard(models_dir=tmp_path / "models")
    key = ("llamacpp", "local", "again.gguf")
    app.http.post("/api/downloads", json={"source": "url", "url": url})
    wait_for(lambda: (m := catalog(app).get(key)) and m["status"] == "available", what="download")
    gets = len([r for r in file_server.requests if r.method == "GET"])

    body = app.http.post(
        "/api/models/recreate", json={"provider": "llamacpp", "name": "again.gguf"}
    )
    assert body.status_code == 200, body.text
    assert body.json()["download"]["url"] == url
    wait_for(
        lambda: (m := catalog(app).get(key)) and m["status"] == "available" and m["source"] == url,
        what="the file to be back",
    )
    assert len([r for r in file_server.requests if r.method == "GET"]) > gets
    assert (tmp_path / "models" / "again.gguf").read_bytes() == tiny_gguf.read_bytes()


def test_recreate_needs_a_known_source(modelyard: App, tmp_path: Path, tiny_gguf: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "mine.gguf")
    app = modelyard(models_dir=models)
    app.http.post("/api/models/sync")
    body = assert_problem(
        app.http.post("/api/models/recreate", json={"provider": "llamacpp", "name": "mine.gguf"}),
        409,
        "no_source",
    )
    assert "downloaded through modelyard" in body["hint"]
    assert (models / "mine.gguf").exists()
