"""GGUF models for real: start launches llama.cpp's server for the file (chat, embeddings),
stop ends it, delete refuses while it runs, the memory check refuses unless forced, and a
restarted modelyard still knows the model is loaded (SPEC §4)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.app_server import RunningApp, ServerProcess, make_settings, running_app
from tests.support.catalog import LLAMA_SERVER, assert_problem, catalog, drain, wait_for
from tests.support.servers import free_port
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.waiting import wait_until

App = Callable[..., RunningApp]
START = "/api/models/start"
STOP = "/api/models/stop"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RunningApp]:
    """One modelyard for the module, serving GGUF files with the genuine llama-server."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    models = tmp / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    write_tiny_gguf(models / "embed" / "mini embed.gguf", pooling=True)
    settings = make_settings(tmp, models_dir=models, llama_server=LLAMA_SERVER)
    with running_app(settings) as running:
        running.http.post("/api/models/sync")
        yield running


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _instances(app: RunningApp) -> list[dict[str, Any]]:
    return [i for i in app.http.get("/api/providers").json()["instances"] if i["origin"] == "model"]


def test_start_serves_chat_under_the_model_name_and_stop_ends_the_server(app: RunningApp) -> None:
    sub = app.services.bus.subscribe(["model.state"])
    started = app.http.post(START, json={"provider": "llamacpp", "name": "tiny.gguf"})
    assert started.status_code == 200, started.text
    model = started.json()
    assert model["status"] == "loaded" and model["instance_id"] == "local"
    server = model["loaded"]
    assert server["memory"] > 0 and server["ctx_size"] == 2048

    listing = httpx.get(f"{server['base_url']}/v1/models").json()
    assert [m["id"] for m in listing["data"]] == ["tiny.gguf"]
    reply = httpx.post(
        f"{server['base_url']}/v1/chat/completions",
        json={
            "model": "tiny.gguf",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 8,
        },
        timeout=30,
    ).json()
    assert reply["choices"][0]["message"]["content"]
    assert [(d["status"], d["loaded"]) for t, d in drain(sub) if d["name"] == "tiny.gguf"] == [
        ("starting", False),
        ("loaded", True),
    ]

    (inst,) = _instances(app)
    assert inst["provider"] == "llamacpp" and inst["model"].endswith("tiny.gguf")
    status = app.http.get(f"/api/providers/llamacpp/instances/{inst['id']}/status").json()
    assert status["state"] == "RUNNING" and status["pid"] == server["pid"]
    assert catalog(app)[("llamacpp", "local", "tiny.gguf")]["status"] == "loaded"

    again = app.http.post(START, json={"provider": "llamacpp", "name": "tiny.gguf"}).json()
    assert again["loaded"]["pid"] == server["pid"]  # already loaded: the same server

    stopped = app.http.post(STOP, json={"provider": "llamacpp", "name": "tiny.gguf"})
    assert stopped.status_code == 200 and stopped.json()["status"] == "available"
    assert stopped.json()["loaded"] is None
    assert _gone(server["pid"])
    assert _instances(app) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server['base_url']}/health")
    assert (
        app.http.post(STOP, json={"provider": "llamacpp", "name": "tiny.gguf"}).status_code == 200
    )


def test_embedding_model_serves_embeddings(app: RunningApp) -> None:
    ref = {"provider": "llamacpp", "name": "embed/mini embed.gguf"}
    assert catalog(app)[("llamacpp", "local", ref["name"])]["mode"] == "embed"
    model = app.http.post(START, json=ref).json()
    base = model["loaded"]["base_url"]
    try:
        (inst,) = _instances(app)
        assert "--embedding" in inst["command"] and inst["mode"] == "embed"
        answer = httpx.post(f"{base}/v1/embeddings", json={"input": "hello"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["data"][0]["embedding"]) == 64
    finally:
        app.http.post(STOP, json=ref)


def test_delete_is_refused_while_running_and_removes_the_file_once_stopped(
    app: RunningApp, tiny_gguf: Path
) -> None:
    path = app.settings.resolved_models_dir / "doomed.gguf"
    shutil.copy(tiny_gguf, path)
    ref = {"provider": "llamacpp", "name": "doomed.gguf"}
    assert app.http.post(START, json=ref).json()["status"] == "loaded"  # not synced yet: found

    assert_problem(app.http.delete("/api/models/llamacpp/doomed.gguf"), 409, "model_running")
    assert path.exists()
    app.http.post(STOP, json=ref)
    deleted = app.http.delete("/api/models/llamacpp/doomed.gguf")
    assert deleted.status_code == 200 and deleted.json()["success"] is True
    assert not path.exists() and ("llamacpp", "local", "doomed.gguf") not in catalog(app)
    assert_problem(app.http.delete("/api/models/llamacpp/doomed.gguf"), 404, "model_not_found")


def test_concurrent_starts_share_one_server(app: RunningApp) -> None:
    ref = {"provider": "llamacpp", "name": "tiny.gguf"}
    answers: list[dict[str, Any]] = []

    def start() -> None:
        answers.append(httpx.post(f"{app.url}{START}", json=ref, timeout=60).json())

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert {a["status"] for a in answers} == {"loaded"}
        assert len({a["loaded"]["pid"] for a in answers}) == 1
        assert len(_instances(app)) == 1
    finally:
        app.http.post(STOP, json=ref)


def test_start_without_waiting_reports_starting_then_loaded(app: RunningApp) -> None:
    sub = app.services.bus.subscribe(["model.state"])
    ref = {"provider": "llamacpp", "name": "tiny.gguf"}
    first = app.http.post(START, json={**ref, "wait": False}).json()
    assert first["status"] in ("starting", "loaded")
    try:
        wait_for(
            lambda: (
                any(d["status"] == "loaded" for _, d in drain(sub) if d["name"] == ref["name"])
                or catalog(app)[("llamacpp", "local", "tiny.gguf")]["status"] == "loaded"
            ),
            what="the loaded event",
        )
    finally:
        app.http.post(STOP, json=ref)


def test_a_crashed_server_makes_the_model_available_again(app: RunningApp) -> None:
    ref = {"provider": "llamacpp", "name": "tiny.gguf"}
    pid = app.http.post(START, json=ref).json()["loaded"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _gone(pid), what="the server to die")
    app.http.get("/api/providers/status", params={"refresh": True})  # the monitor would, later
    wait_for(
        lambda: catalog(app)[("llamacpp", "local", "tiny.gguf")]["status"] == "available",
        what="the catalog to notice",
    )
    model = app.http.post(START, json=ref).json()  # and it starts again
    assert model["status"] == "loaded" and model["loaded"]["pid"] != pid
    app.http.post(STOP, json=ref)


def test_broken_file_and_bad_names_are_refused(app: RunningApp) -> None:
    (app.settings.resolved_models_dir / "broken.gguf").write_bytes(b"nope" * 64)
    bad = app.http.post(START, json={"provider": "llamacpp", "name": "broken.gguf"})
    assert_problem(bad, 400, "invalid_gguf")
    for name in ("../tiny.gguf", "/etc/passwd", "a/../../b.gguf", ".hidden/x.gguf"):
        assert_problem(
            app.http.post(START, json={"provider": "llamacpp", "name": name}), 400, "invalid_path"
        )
    nul = app.http.post(START, json={"provider": "llamacpp", "name": "x\x00.gguf"})
    assert_problem(nul, 400, "invalid_model_name")
    missing = app.http.post(START, json={"provider": "llamacpp", "name": "missing.gguf"})
    assert_problem(missing, 404, "model_not_found")
    assert _instances(app) == []


def test_memory_check_refuses_unless_forced(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    app = modelyard(models_dir=models, llama_server=LLAMA_SERVER, memory_margin_bytes=2**50)
    ref = {"provider": "llamacpp", "name": "tiny.gguf"}

    body = assert_problem(app.http.post(START, json=ref), 507, "insufficient_memory")
    assert "force" in body["hint"] and body["required"] > 0 and body["available"] > 0
    assert _instances(app) == []
    assert catalog(app)[("llamacpp", "local", "tiny.gguf")]["status"] == "available"
    details = app.http.get("/api/models/details", params=ref).json()
    assert details["fit"]["fits"] is False and details["estimate"]["basis"] == "gguf"

    forced = app.http.post(START, json={**ref, "force": True})
    assert forced.status_code == 200 and forced.json()["status"] == "loaded"
    app.http.post(STOP, json=ref)


def test_a_restarted_modelyard_still_knows_the_model_is_loaded(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    config = tmp_path / "modelyard.toml"
    config.write_text("instances = []\n")
    env = {
        "MODELYARD_CONFIG": str(config),
        "MODELYARD_DATA_DIR": str(tmp_path / "data"),
        "MODELYARD_MODELS_DIR": str(models),
        "MODELYARD_LLAMA_SERVER": LLAMA_SERVER,
    }
    port = free_port()
    ref = {"provider": "llamacpp", "name": "tiny.gguf"}
    first = ServerProcess(env, port, tmp_path / "first.log").start()
    try:
        pid = httpx.post(f"{first.url}{START}", json=ref, timeout=60).json()["loaded"]["pid"]
    finally:
        first.kill(signal.SIGKILL)  # modelyard dies; the model's server keeps running
    assert not _gone(pid)

    second = ServerProcess(env, port, tmp_path / "second.log").start()
    try:
        assert httpx.post(f"{second.url}/api/models/sync", timeout=30).json()["errors"] == []
        models_now = httpx.get(f"{second.url}/api/models/list").json()["models"]
        (tiny,) = [m for m in models_now if m["name"] == "tiny.gguf"]
        assert tiny["status"] == "loaded" and tiny["loaded"]["pid"] == pid
        stopped = httpx.post(f"{second.url}{STOP}", json=ref, timeout=60).json()
        assert stopped["status"] == "available"
        assert _gone(pid)
    finally:
        second.stop()
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_removing_the_server_instance_on_the_providers_page_unloads_the_model(
    app: RunningApp,
) -> None:
    ref = {"provider": "llamacpp", "name": "tiny.gguf"}
    pid = app.http.post(START, json=ref).json()["loaded"]["pid"]
    (inst,) = _instances(app)
    removed = app.http.delete(f"/api/providers/llamacpp/instances/{inst['id']}")
    assert removed.status_code == 204
    assert _gone(pid)
    wait_for(
        lambda: catalog(app)[("llamacpp", "local", "tiny.gguf")]["status"] == "available",
        what="the catalog to notice",
    )


def test_no_catalog_sync_competes_with_a_loading_server(
    tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status change a start causes asks for a sync of the models directory; it runs once
    the start has ended, not while the server loads (it would compete for the CPU)."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    slow = tmp_path / "slow-llama-server"  # a real server that takes a while to come up
    slow.write_text(f'#!/bin/sh\nsleep 0.8\nexec "{LLAMA_SERVER}" "$@"\n')
    slow.chmod(0o755)
    settings = make_settings(tmp_path, models_dir=models, llama_server=str(slow), monitor=False)
    with running_app(settings) as app:
        app.http.post("/api/models/sync").raise_for_status()
        catalog_ = app.services.catalog
        syncs: list[tuple[float, Any]] = []
        real_sync = catalog_.sync

        async def recorded_sync(scopes: Any = None) -> dict[str, Any]:
            syncs.append((time.monotonic(), scopes))
            return await real_sync(scopes)

        monkeypatch.setattr(catalog_, "sync", recorded_sync)
        began = time.monotonic()
        model = app.http.post(START, json={"provider": "llamacpp", "name": "tiny.gguf"}).json()
        ended = time.monotonic()
        assert model["status"] == "loaded"
        assert not [t for t, _ in syncs if began <= t <= ended]  # nothing while it loaded
        wait_until(lambda: syncs, "the sync the start asked for")  # and it runs afterwards
        assert catalog(app)[("llamacpp", "local", "tiny.gguf")]["status"] == "loaded"


def test_a_server_saying_it_listens_is_loaded_only_once_its_health_says_so(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    """The line llama-server prints once ready makes modelyard ask /health at once; the line
    alone never makes a model loaded. This server prints it long before anything listens."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    early = tmp_path / "early-llama-server"
    early.write_text(
        "#!/bin/sh\nsleep 0.1\n"
        'echo "srv  llama_server: listening on http://127.0.0.1:1 (not yet: it sleeps first)"\n'
        f'sleep 1\nexec "{LLAMA_SERVER}" "$@"\n'
    )
    early.chmod(0o755)
    settings = make_settings(tmp_path, models_dir=models, llama_server=str(early), monitor=False)
    with running_app(settings) as app:
        app.http.post("/api/models/sync").raise_for_status()
        model = app.http.post(START, json={"provider": "llamacpp", "name": "tiny.gguf"}).json()
        assert model["status"] == "loaded"
        assert httpx.get(f"{model['loaded']['base_url']}/health").status_code == 200
        (inst,) = _instances(app)
        log = app.http.get(f"/api/providers/llamacpp/instances/{inst['id']}/logs").json()
        assert any("not yet: it sleeps first" in line for line in log["lines"])  # misreadable
