"""The state shown is the state that is, at the edges (SPEC §1, §3, §4): a llama.cpp instance
answered by Ollama lists nothing as loaded, a managed port served by a foreign llama-server is
not RUNNING and Stop says so, starting a model already in memory loads no second copy, and a
running GGUF model is not silently kept with another context than the one asked for."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.instance_config import InstanceConfig
from tests.fakes.fixtures import FakeServer
from tests.fakes.lmstudio import LMStudioState
from tests.fakes.ollama import OllamaState
from tests.support.app_server import RunningApp
from tests.support.catalog import LLAMA_SERVER, assert_problem, catalog, instance
from tests.support.llama import llama_server

App = Callable[..., RunningApp]
START = "/api/models/start"


@pytest.fixture
def llama_url(tiny_gguf: Path) -> Iterator[str]:
    """The genuine llama-server serving the tiny model, started by the test, not modelyard."""
    with llama_server(tiny_gguf) as url:
        yield url


def _status(app: RunningApp, provider: str, id: str) -> dict[str, object]:
    url = f"/api/providers/{provider}/instances/{id}/status"
    body: dict[str, object] = app.http.get(url, params={"refresh": True}).json()
    return body


def _running_names(app: RunningApp) -> set[tuple[str, str]]:
    models = app.http.get("/api/system/resources").json()["models"]
    return {(m["instance_id"], m["name"]) for m in models}


def test_a_llamacpp_instance_answered_by_ollama_lists_nothing_as_loaded(
    modelyard: App, ollama_server: FakeServer[OllamaState], llama_url: str
) -> None:
    ollama_server.state.add_model("llama3.2")
    ollama_server.state.add_model("qwen2:0.5b")
    app = modelyard(
        [
            instance("llamacpp", ollama_server.url, id="wrong"),
            instance("llamacpp", llama_url, id="real"),
        ]
    )
    assert _status(app, "llamacpp", "wrong")["reason_code"] == "wrong_service"

    result = app.http.post("/api/models/sync").json()
    (error,) = result["errors"]
    assert (error["instance_id"], error["code"]) == ("wrong", "wrong_service"), result
    assert error["hint"]
    listed = catalog(app)
    assert not [k for k in listed if k[1] == "wrong"], listed
    # The genuine llama-server's model is still listed, loaded.
    real = [m for k, m in listed.items() if k[1] == "real"]
    assert [m["status"] for m in real] == ["loaded"]
    assert _running_names(app) == {("real", real[0]["name"])}


def test_a_foreign_llama_server_on_a_managed_port_is_not_ours(
    modelyard: App, tiny_gguf: Path, llama_url: str
) -> None:
    managed = InstanceConfig(
        provider="llamacpp",
        id="tiny",
        base_url=llama_url,
        managed=True,
        model=str(tiny_gguf),
        ctx_size=256,
    )
    app = modelyard([managed], llama_server=LLAMA_SERVER)
    status = _status(app, "llamacpp", "tiny")
    assert (status["state"], status["reason_code"]) == ("ERROR", "port_in_use"), status
    assert status["pid"] is None and status["api_responding"] is True
    assert status["hint"]

    start = app.http.post("/api/providers/llamacpp/instances/tiny/start")
    assert_problem(start, 409, "port_in_use")
    stop = assert_problem(
        app.http.post("/api/providers/llamacpp/instances/tiny/stop"), 409, "not_ours"
    )
    assert stop["hint"]
    assert httpx.get(f"{llama_url}/health").status_code == 200  # left alone, still serving
    assert _status(app, "llamacpp", "tiny")["state"] == "ERROR"


def test_starting_a_loaded_ollama_model_again_is_a_no_op(
    modelyard: App, ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    state.add_model("big:latest", size=4_000_000_000, parameter_size="7B")
    app = modelyard([instance("ollama", ollama_server.url)], memory_margin_bytes=2**50)
    app.http.post("/api/models/sync")
    ref = {"provider": "ollama", "name": "big:latest"}
    refused = assert_problem(app.http.post(START, json=ref), 507, "insufficient_memory")
    assert "--force" in refused["hint"]  # the CLI's flag, beside the API's force=true
    assert app.http.post(START, json={**ref, "force": True}).json()["status"] == "loaded"

    again = app.http.post(START, json=ref)  # in memory already: no memory check, no load
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "loaded"
    batch = app.http.post("/api/models/batch", json={"action": "start", "models": [ref]}).json()
    assert batch["results"][0]["ok"], batch
    assert len(ollama_server.log.for_path("/api/generate")) == 1
    assert state.loaded_names() == ["big:latest"]


def test_starting_a_loaded_lmstudio_model_again_loads_no_second_copy(
    modelyard: App, lmstudio_server: FakeServer[LMStudioState]
) -> None:
    state = lmstudio_server.state
    state.add_model("qwen/qwen3-4b", params_string="4B", size_bytes=2_000_000_000)
    app = modelyard([instance("lmstudio", lmstudio_server.url)])
    app.http.post("/api/models/sync")
    ref = {"provider": "lmstudio", "name": "qwen/qwen3-4b"}

    for _ in range(2):
        assert app.http.post(START, json=ref).json()["status"] == "loaded"
    batch = app.http.post("/api/models/batch", json={"action": "start", "models": [ref]}).json()
    assert batch["results"][0]["ok"], batch
    assert state.loaded_ids() == ["qwen/qwen3-4b"]

    state.unload("qwen/qwen3-4b")  # behind modelyard's back: the next start loads it again
    assert app.http.post(START, json=ref).json()["status"] == "loaded"
    assert state.loaded_ids() == ["qwen/qwen3-4b"]


def test_a_running_gguf_model_is_not_silently_kept_with_another_context(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    app = modelyard(models_dir=models, llama_server=LLAMA_SERVER)
    ref = {"provider": "llamacpp", "name": "tiny.gguf"}
    first = app.http.post(START, json={**ref, "ctx_size": 256}).json()
    assert first["status"] == "loaded" and first["loaded"]["ctx_size"] == 256, first
    pid = first["loaded"]["pid"]

    other = assert_problem(
        app.http.post(START, json={**ref, "ctx_size": 512}), 409, "already_running_different_ctx"
    )
    assert "256" in other["detail"] and other["hint"]
    for body in ({**ref, "ctx_size": 256}, ref):  # the same context, or none: a no-op
        same = app.http.post(START, json=body)
        assert same.status_code == 200, same.text
        assert same.json()["loaded"]["pid"] == pid
