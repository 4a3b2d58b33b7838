"""The catalog: every provider's listing merged into one store, with exact sync counts, live
events and the background syncs of SPEC §4 (provider up, download finished)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from modelyard.store.tables import ModelSourceRow
from tests.fakes.fileserver import FileServer, file_server
from tests.fakes.fixtures import FakeServer, serve
from tests.fakes.lmstudio import LMStudioState
from tests.fakes.ollama import OllamaState, create_ollama_app
from tests.fakes.openai_compat import OpenAIState
from tests.support.app_server import RunningApp
from tests.support.catalog import catalog, drain, instance, names, wait_for, wait_quiet
from tests.support.servers import ServerThread, free_port
from tests.support.tiny_gguf import write_tiny_gguf

App = Callable[..., RunningApp]
__all__ = ["file_server"]  # the fixture


def test_gguf_files_are_listed_with_header_metadata(modelyard: App, tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_tiny_gguf(models / "tiny.gguf")
    write_tiny_gguf(
        models / "sub" / "half.gguf", file_type="f16", context_length=4096, chat_template=False
    )
    write_tiny_gguf(models / "q8.gguf", file_type="q8_0")
    write_tiny_gguf(models / "embed" / "emb.gguf", pooling=True)
    write_tiny_gguf(models / "rank.gguf", rerank=True)
    first = write_tiny_gguf(models / "split" / "big.gguf", split_max_tensors=8)
    (models / "broken.gguf").write_bytes(b"not a gguf file at all" * 100)
    (models / "partial.gguf.part").write_bytes(b"GGUF")
    write_tiny_gguf(models / "mmproj-vision.gguf")

    app = modelyard(models_dir=models)
    assert app.http.post("/api/models/sync").status_code == 200
    got = {name: m for (_, inst, name), m in catalog(app).items() if inst == "local"}

    assert set(got) == {
        "tiny.gguf",
        "sub/half.gguf",
        "q8.gguf",
        "embed/emb.gguf",
        "rank.gguf",
        f"split/{first.name}",
        "broken.gguf",
    }
    tiny = got["tiny.gguf"]
    assert tiny["provider"] == "llamacpp" and tiny["format"] == "gguf"
    assert (tiny["quantization"], tiny["context_length"], tiny["family"]) == ("F32", 2048, "llama")
    assert tiny["parameter_size"].endswith("K") and tiny["meta"]["parameter_count"] > 100_000
    assert tiny["meta"]["has_chat_template"] is True
    assert tiny["size"] == (models / "tiny.gguf").stat().st_size
    assert tiny["mode"] == "llm" and tiny["status"] == "available" and tiny["loaded"] is None
    assert tiny["source"] == "local" and tiny["path"] == str((models / "tiny.gguf").resolve())
    modified = datetime.fromisoformat(tiny["modified_at"].replace("Z", "+00:00"))
    assert abs(modified.timestamp() - (models / "tiny.gguf").stat().st_mtime) < 1

    half = got["sub/half.gguf"]
    assert (half["quantization"], half["context_length"]) == ("F16", 4096)
    assert half["meta"]["has_chat_template"] is False
    assert got["q8.gguf"]["quantization"] == "Q8_0"
    assert got["embed/emb.gguf"]["mode"] == "embed"
    assert got["rank.gguf"]["mode"] == "rerank"
    split = got[f"split/{first.name}"]
    parts = sorted((models / "split").glob("*.gguf"))
    assert len(parts) > 1 and split["meta"]["split_count"] == len(parts)
    assert split["size"] == sum(p.stat().st_size for p in parts)
    assert got["broken.gguf"]["meta"]["error_code"] == "invalid_gguf"


def test_ollama_models_with_loaded_state_from_ps(
    modelyard: App, ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    llama = state.add_model("llama3.2:3b", size=2_019_393_189, parameter_size="3.2B")
    state.add_model(
        "acme/coder:7b", family="qwen2", parameter_size="7.6B", quantization_level="Q8_0"
    )
    state.add_model("nomic-embed-text", family="nomic-bert", parameter_size="137M")
    state.load("llama3.2:3b", keep_alive=600, size_vram=0, context_length=8192)
    app = modelyard([instance("ollama", ollama_server.url)])

    assert app.http.post("/api/models/sync").json()["errors"] == []
    got = {name: m for (p, _, name), m in catalog(app).items() if p == "ollama"}
    assert set(got) == {"llama3.2:3b", "acme/coder:7b", "nomic-embed-text:latest"}
    loaded = got["llama3.2:3b"]
    assert loaded["status"] == "loaded" and loaded["context_length"] == 8192
    assert loaded["loaded"]["size_vram"] == 0 and loaded["loaded"]["size"] == llama.size
    assert loaded["loaded"]["expires_at"] is not None
    assert loaded["digest"] == llama.digest and loaded["size"] == llama.size
    modified = datetime.fromisoformat(loaded["modified_at"].replace("Z", "+00:00"))
    assert modified == llama.modified_at
    assert (loaded["family"], loaded["parameter_size"], loaded["quantization"]) == (
        "llama",
        "3.2B",
        "Q4_K_M",
    )
    assert loaded["source"] == "ollama" and loaded["format"] == "gguf"
    coder = got["acme/coder:7b"]
    assert coder["status"] == "available" and coder["loaded"] is None
    assert (coder["family"], coder["quantization"]) == ("qwen2", "Q8_0")
    assert got["nomic-embed-text:latest"]["mode"] == "embed"


def test_lmstudio_models_loaded_and_not_loaded(
    modelyard: App, lmstudio_server: FakeServer[LMStudioState]
) -> None:
    state = lmstudio_server.state
    state.add_model("qwen/qwen3-4b", params_string="4B", loaded=True, size_bytes=2_500_000_000)
    state.add_model("text-embedding-nomic-embed-text-v1.5", type="embeddings", quantization="Q8_0")
    app = modelyard([instance("lmstudio", lmstudio_server.url)])

    app.http.post("/api/models/sync")
    got = {name: m for (p, _, name), m in catalog(app).items() if p == "lmstudio"}
    qwen = got["qwen/qwen3-4b"]
    assert qwen["status"] == "loaded" and qwen["loaded"]["instances"] == ["qwen/qwen3-4b"]
    assert (qwen["size"], qwen["parameter_size"], qwen["quantization"]) == (
        2_500_000_000,
        "4B",
        "Q4_K_M",
    )
    assert qwen["context_length"] == 32768 and qwen["format"] == "gguf"
    embed = got["text-embedding-nomic-embed-text-v1.5"]
    assert embed["status"] == "available" and embed["loaded"] is None
    assert embed["mode"] == "embed" and embed["quantization"] == "Q8_0"

    wait_quiet(app)  # the first status check's background sync, else it may take the changes
    state.unload("qwen/qwen3-4b")
    state.load("text-embedding-nomic-embed-text-v1.5")
    counts = app.http.post("/api/models/sync").json()
    assert (counts["updated"], counts["added"], counts["removed"]) == (2, 0, 0)
    got = {name: m for (p, _, name), m in catalog(app).items() if p == "lmstudio"}
    assert got["qwen/qwen3-4b"]["status"] == "available"
    assert got["text-embedding-nomic-embed-text-v1.5"]["status"] == "loaded"


def test_openai_compatible_and_cloud_listings(
    modelyard: App,
    openai_server: FakeServer[OpenAIState],
    anthropic_server: FakeServer[Any],
) -> None:
    openai_server.state.models = ["served-model", "text-embedding-3-small"]
    with serve(*_openai_with_key("sk-right")) as locked:
        app = modelyard(
            [
                instance("openai_compat", openai_server.url, id="vllm"),
                instance("openai_compat", locked.url, id="locked", api_key="sk-wrong"),
                instance("anthropic", anthropic_server.url, api_key="sk-ant-test-key"),
                instance("openai", openai_server.url),  # no key: not listed at all
            ]
        )
        result = app.http.post("/api/models/sync").json()

    assert [(e["instance_id"], e["code"]) for e in result["errors"]] == [("locked", "unauthorized")]
    got = catalog(app)
    assert got[("openai_compat", "vllm", "served-model")]["status"] == "available"
    assert got[("openai_compat", "vllm", "text-embedding-3-small")]["mode"] == "embed"
    claude = [key for key in got if key[0] == "anthropic"]
    assert len(claude) == 3 and all(got[k]["source"] == "anthropic" for k in claude)
    assert not [key for key in got if key[0] == "openai"]


def _openai_with_key(key: str) -> tuple[Any, OpenAIState]:
    from tests.fakes.openai_compat import create_openai_app

    state = OpenAIState(api_key=key, models=["secret-model"])
    return create_openai_app(state), state


def test_sync_reports_exact_counts_for_changes_behind_our_back(
    modelyard: App, ollama_server: FakeServer[OllamaState], tmp_path: Path, tiny_gguf: Path
) -> None:
    state = ollama_server.state
    for n in range(5):
        state.add_model(f"model-{n}:latest")
    models = tmp_path / "models"
    models.mkdir()
    for n in range(2):
        shutil.copy(tiny_gguf, models / f"file-{n}.gguf")
    # No status monitor: its next round would see model-2 loaded and sync in the background,
    # taking part of the changes this test counts in its own sync.
    app = modelyard([instance("ollama", ollama_server.url)], models_dir=models, monitor=False)
    first = app.http.post("/api/models/sync").json()
    assert first["added"] + first["unchanged"] == 7 and first["removed"] == 0
    wait_quiet(app)
    quiet = app.http.post("/api/models/sync").json()
    assert quiet == {"added": 0, "updated": 0, "removed": 0, "unchanged": 7, "errors": []}

    for n in range(5, 8):
        state.add_model(f"model-{n}:latest")
    state.remove_model("model-0")
    state.remove_model("model-1")
    state.load("model-2")
    shutil.copy(tiny_gguf, models / "file-new.gguf")
    (models / "file-0.gguf").unlink()
    (models / "file-1.gguf").write_bytes(b"corrupted")

    counts = app.http.post("/api/models/sync").json()
    (broken,) = counts.pop("errors")  # the corrupted file is listed, and named here
    assert (broken["name"], broken["code"]) == ("file-1.gguf", "invalid_gguf")
    assert counts == {"added": 4, "updated": 2, "removed": 3, "unchanged": 2}
    assert names(app) == {
        "model-2:latest",
        "model-3:latest",
        "model-4:latest",
        "model-5:latest",
        "model-6:latest",
        "model-7:latest",
        "file-1.gguf",
        "file-new.gguf",
    }
    assert catalog(app)[("ollama", "default", "model-2:latest")]["status"] == "loaded"


def test_unreachable_instance_keeps_its_models_but_nothing_is_loaded(modelyard: App) -> None:
    state = OllamaState()
    state.add_model("kept:latest")
    state.load("kept")
    port = free_port()
    with ServerThread(create_ollama_app(state), port=port, server_header=False):
        app = modelyard([instance("ollama", f"http://127.0.0.1:{port}")])
        app.http.post("/api/models/sync")
        assert catalog(app)[("ollama", "default", "kept:latest")]["status"] == "loaded"

    result = app.http.post("/api/models/sync").json()
    assert [(e["instance_id"], e["code"]) for e in result["errors"]] == [("default", "unreachable")]
    # The health monitor may notice the stop first and its background sync do the update; either
    # way the model is kept (nothing removed) and no longer loaded.
    assert result["removed"] == 0 and result["updated"] in (0, 1)
    kept = catalog(app)[("ollama", "default", "kept:latest")]
    assert kept["status"] == "available" and kept["loaded"] is None


def test_provider_coming_up_triggers_a_background_sync(modelyard: App) -> None:
    state = OllamaState()
    state.add_model("late:latest")
    port = free_port()
    app = modelyard([instance("ollama", f"http://127.0.0.1:{port}")])
    sub = app.services.bus.subscribe(["catalog.changed"])
    wait_for(lambda: app.http.get("/api/providers/status?refresh=true").json(), what="a status")
    assert "late:latest" not in names(app)

    with ServerThread(create_ollama_app(state), port=port, server_header=False):
        # The status check sees it RUNNING, publishes provider.status, and that starts a sync.
        app.http.get("/api/providers/status", params={"refresh": True})
        wait_for(lambda: "late:latest" in names(app), what="the background sync")
    assert ("catalog.changed", {"added": 1, "updated": 0, "removed": 0, "unchanged": 0}) in drain(
        sub
    )


def test_state_changes_are_events_and_loaded_models_are_in_the_snapshot(
    modelyard: App, ollama_server: FakeServer[OllamaState]
) -> None:
    state = ollama_server.state
    state.add_model("chatty:latest")
    app = modelyard([instance("ollama", ollama_server.url)])
    app.http.post("/api/models/sync")
    sub = app.services.bus.subscribe(["model.state", "catalog.changed"])

    state.load("chatty")
    app.http.post("/api/models/sync")
    events = drain(sub)
    assert ("catalog.changed", {"added": 0, "updated": 1, "removed": 0, "unchanged": 0}) in events
    states = [data for kind, data in events if kind == "model.state"]
    assert [
        (d["provider"], d["instance_id"], d["name"], d["status"], d["loaded"]) for d in states
    ] == [("ollama", "default", "chatty:latest", "loaded", True)]
    assert states[0]["details"]["size"] > 0

    with connect(f"ws://127.0.0.1:{app.settings.port}/ws/events") as ws:
        snapshot = json.loads(ws.recv(timeout=10))
    assert snapshot["type"] == "snapshot"
    assert [m["name"] for m in snapshot["data"]["models"]] == ["chatty:latest"]


def test_downloads_show_while_running_and_are_synced_with_their_source(
    modelyard: App, file_server: FileServer, tmp_path: Path, tiny_gguf: Path
) -> None:
    models = tmp_path / "models"
    app = modelyard(models_dir=models)
    file_server.add_file("fresh.gguf", tiny_gguf.read_bytes())
    file_server.throttle(300_000, path="fresh.gguf")  # long enough to watch it download
    url = file_server.url_for("fresh.gguf")
    key = ("llamacpp", "local", "fresh.gguf")

    created = app.http.post("/api/downloads", json={"source": "url", "url": url})
    assert created.status_code == 201, created.text
    placeholder = wait_for(lambda: catalog(app).get(key), what="the placeholder")
    assert placeholder["status"] == "downloading" and placeholder["source"] == url
    app.http.post("/api/models/sync")  # a sync keeps the placeholder while the task runs
    assert catalog(app)[key]["status"] in ("downloading", "available")

    done = wait_for(
        lambda: (m := catalog(app).get(key)) and m["status"] == "available" and m,
        what="the finished download in the catalog",
    )
    assert done["source"] == url and done["quantization"] == "F32" and done["format"] == "gguf"
    with app.services.db.session() as s:
        row = s.get(ModelSourceRow, key)
        assert row is not None and row.source == url
        assert row.request["source"] == "url" and row.request["url"] == url

    file_server.fail(404, path="gone.gguf", times=None)
    app.http.post("/api/downloads", json={"source": "url", "url": file_server.url_for("gone.gguf")})
    failed = wait_for(
        lambda: (
            (m := catalog(app).get(("llamacpp", "local", "gone.gguf")))
            and m["status"] == "failed"
            and m
        ),
        what="the failed download in the catalog",
    )
    assert "404" in failed["meta"]["error"]
