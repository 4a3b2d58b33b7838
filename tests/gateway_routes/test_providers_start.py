"""The Providers page's start and restart of a managed llama.cpp server of one GGUF file are
loads of the scheduler (issue 20): the model is counted and shown loading from the start's
answer and loaded once its server answers, before any request for it; its estimate is
admitted as a gateway load's is (an idle model evicted for it, 507 beside a pinned model
that leaves no room, from the API and the CLI); a restart keeps one process and one entry of
the scheduler's."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from modelyard.gguf.metadata import read_gguf
from modelyard.instance_config import InstanceConfig
from modelyard.runtimes.resources import estimate_memory
from tests.cli.test_cli import run
from tests.gateway_routes.test_scheduled_restarts import scheduled, serving
from tests.gateway_routes.test_scheduling import App, estimate
from tests.support.app_server import RunningApp
from tests.support.llama import LLAMA_SERVER, managed_server
from tests.support.servers import free_port
from tests.support.waiting import wait_until

HI = [{"role": "user", "content": "hi"}]
KEY = "llamacpp/solo/solo"
TINY = "llamacpp/local/tiny.gguf"
SOLO = "/api/providers/llamacpp/instances/solo"


def solo_server(tmp_path: Path, tiny_gguf: Path) -> tuple[InstanceConfig, Path]:
    """A configured managed llama.cpp server of a file outside the models directory."""
    outside = tmp_path / "elsewhere" / "solo.gguf"
    outside.parent.mkdir()
    shutil.copy(tiny_gguf, outside)
    return managed_server("solo", outside), outside


def needs(path: Path) -> int:
    """The scheduler's estimate for a configured server of ``path`` (its own context)."""
    info = read_gguf(path)
    ctx = info.context_length or 4096
    return estimate_memory(info, file_size=path.stat().st_size, ctx_size=ctx).total


def views(app: RunningApp) -> dict[str, dict[str, Any]]:
    """The scheduler's view of every model, by key (``GET /api/models/schedule``)."""
    listing = app.http.get("/api/models/schedule").json()["models"]
    return {v["key"]: v for v in listing}


def listed(app: RunningApp, name: str) -> dict[str, Any] | None:
    """``name``'s loaded state as ``/v1/models`` lists it to the openai SDK."""
    client = openai.OpenAI(base_url=app.url + "/v1", api_key="none", max_retries=0)
    for model in client.models.list().data:
        if model.id == name:
            state: dict[str, Any] = model.model_dump()["modelyard"]
            return state
    return None


def test_a_providers_start_is_counted_and_shown_loaded_before_any_request(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    config, outside = solo_server(tmp_path, tiny_gguf)
    models = tmp_path / "models"
    models.mkdir()
    app = modelyard([config], models_dir=models, llama_server=LLAMA_SERVER)
    scheduler = app.services.gateway.scheduler
    with scheduled(app, KEY) as seen:
        started = app.http.post(f"{SOLO}/start")
        assert started.status_code == 200, started.text
        assert started.json()["state"] in ("STARTING", "RUNNING")  # answered at once
        view = views(app)[KEY]
        assert view["state"] in ("loading", "loaded")  # counted from the answer on
        assert view["estimate_bytes"] == needs(outside) == scheduler.committed_bytes()
        wait_until(
            lambda: (listed(app, "solo") or {}).get("state") == "loaded",
            "/v1/models shows solo loaded",
            timeout=60,
        )
        # model.schedule coalesces per model: a reader may see only the newest state.
        assert [v["state"] for v in seen()][-1:] == ["loaded"]
    again = app.http.post(f"{SOLO}/start")
    assert again.status_code == 409 and again.json()["code"] == "already_running"
    (first,) = serving(outside)

    restarted = app.http.post(f"{SOLO}/restart")
    assert restarted.status_code == 200, restarted.text
    wait_until(lambda: views(app)[KEY]["state"] == "loaded", "solo loaded again", timeout=60)
    (second,) = serving(outside)  # one process, a new one
    assert second != first
    assert [k for k in views(app) if k == KEY] == [KEY]
    assert scheduler.committed_bytes() == needs(outside)  # one entry, counted once
    client = openai.OpenAI(base_url=app.url + "/v1", api_key="none", max_retries=0)
    assert client.chat.completions.create(model="solo", messages=HI, max_tokens=2).choices
    assert serving(outside) == [second] and views(app)[KEY]["in_flight"] == 0

    stopped = app.http.post(f"{SOLO}/stop")
    assert stopped.status_code == 200 and stopped.json()["state"] == "STOPPED"
    assert views(app)[KEY]["state"] == "unloaded" and scheduler.committed_bytes() == 0
    assert serving(outside) == []


def test_an_instance_added_through_the_api_is_unloaded_when_removed(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    _, outside = solo_server(tmp_path, tiny_gguf)
    app = modelyard(llama_server=LLAMA_SERVER)
    url = f"http://127.0.0.1:{free_port()}"
    fields = {"id": "made", "base_url": url, "managed": True, "model": str(outside)}
    made = app.http.post("/api/providers/llamacpp/instances", json=fields)
    assert made.status_code == 201, made.text
    started = app.http.post("/api/providers/llamacpp/instances/made/start")
    assert started.status_code == 200, started.text
    key = "llamacpp/made/made"
    wait_until(lambda: views(app)[key]["state"] == "loaded", "made loaded", timeout=60)
    assert app.services.gateway.scheduler.committed_bytes() == needs(outside)

    removed = app.http.delete("/api/providers/llamacpp/instances/made")
    assert removed.status_code == 204
    assert views(app)[key]["state"] == "unloaded"
    assert app.services.gateway.scheduler.committed_bytes() == 0 and serving(outside) == []


@dataclass
class RoomForOne:
    """solo configured beside the models directory's tiny.gguf, which the gateway loaded,
    with a memory budget that holds one of them."""

    app: RunningApp
    outside: Path
    tiny: Path
    budget: int


def room_for_one(modelyard: App, tmp_path: Path, tiny_gguf: Path, **settings: Any) -> RoomForOne:
    config, outside = solo_server(tmp_path, tiny_gguf)
    models = tmp_path / "models"
    models.mkdir()
    tiny = models / "tiny.gguf"
    shutil.copy(tiny_gguf, tiny)
    budget = max(estimate(tiny), needs(outside)) * 3 // 2
    app = modelyard(
        [config],
        models_dir=models,
        llama_server=LLAMA_SERVER,
        memory_budget_bytes=budget,
        **settings,
    )
    app.http.post("/api/models/sync")
    client = openai.OpenAI(base_url=app.url + "/v1", api_key="none", max_retries=0)
    assert client.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=2).choices
    assert views(app)[TINY]["state"] == "loaded" and len(serving(tiny)) == 1
    return RoomForOne(app, outside, tiny, budget)


def test_a_providers_start_evicts_an_idle_model_the_gateway_loaded(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    room = room_for_one(modelyard, tmp_path, tiny_gguf)
    app = room.app
    started = app.http.post(f"{SOLO}/start")
    assert started.status_code == 200, started.text
    now = views(app)
    assert now[KEY]["state"] in ("loading", "loaded")
    evicted = now[TINY]
    assert evicted["state"] == "unloaded"
    assert evicted["last_eviction"]["reason"] == "evicted"
    assert evicted["last_eviction"]["for_model"] == KEY
    assert serving(room.tiny) == []  # its server is gone before solo's starts
    assert app.services.gateway.scheduler.committed_bytes() <= room.budget
    wait_until(lambda: views(app)[KEY]["state"] == "loaded", "solo loaded", timeout=60)
    assert len(serving(room.outside)) == 1


def test_a_providers_start_with_no_room_beside_a_pinned_model_is_refused(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    room = room_for_one(modelyard, tmp_path, tiny_gguf, pinned_models=["tiny.gguf"])
    app = room.app
    refused = app.http.post(f"{SOLO}/start")
    assert refused.status_code == 507
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "model_too_large" and problem["hint"]
    by_cli = run(app.url, "providers", "start", "llamacpp/solo")  # the same refusal
    assert by_cli.exit_code == 1 and "Traceback" not in by_cli.output
    assert serving(room.outside) == []  # nothing launched
    assert views(app).get(KEY, {}).get("state", "unloaded") == "unloaded"
    assert views(app)[TINY]["state"] == "loaded"
    status = app.http.get(f"{SOLO}/status", params={"refresh": True}).json()
    assert status["state"] == "STOPPED"


def test_a_start_of_one_of_two_servers_of_a_file_starts_that_one(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    """Two servers configured for one file: a start of the second starts the second (the
    scheduler's key names the file, so such servers are started directly), and its stop
    stops it."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    servers = [managed_server(name, models / "tiny.gguf") for name in ("first", "second")]
    app = modelyard(servers, models_dir=models, llama_server=LLAMA_SERVER)
    assert app.http.post("/api/providers/llamacpp/instances/second/start").status_code == 200

    def state(name: str) -> str:
        status = app.http.get(f"/api/providers/llamacpp/instances/{name}/status?refresh=true")
        return str(status.json()["state"])

    wait_until(lambda: state("second") == "RUNNING", timeout=60, what="the second server up")
    assert state("first") == "STOPPED"
    assert app.http.post("/api/providers/llamacpp/instances/second/stop").status_code == 200
    assert (state("first"), state("second")) == ("STOPPED", "STOPPED")
