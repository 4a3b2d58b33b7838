"""Restarts by the restart policy go through the scheduler: a local file's llama-server killed
behind modelyard's back is cleaned up and loaded again by the scheduler, whose view (loaded,
one server, its process alive) agrees with what runs — and so is a configured llama.cpp
server of a file outside the models directory; a restart the memory budget does not allow is
not started, and the log says why."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest

from modelyard.gguf.metadata import read_gguf
from modelyard.instance_config import InstanceConfig, RestartPolicy
from modelyard.runtimes.resources import estimate_memory
from tests.gateway_routes.test_scheduling import estimate
from tests.support.app_server import RunningApp
from tests.support.catalog import drain
from tests.support.llama import LLAMA_SERVER, managed_server
from tests.support.servers import free_port
from tests.support.waiting import wait_until

App = Callable[..., RunningApp]
HI = [{"role": "user", "content": "hi"}]


def schedule(app: RunningApp) -> dict[str, dict[str, Any]]:
    listing = app.http.get("/v1/models").json()["data"]
    return {m["id"]: m["modelyard"] for m in listing}


def servers(app: RunningApp) -> list[dict[str, Any]]:
    """The llama-servers modelyard runs for local files, with their status."""
    instances = app.http.get("/api/providers").json()["instances"]
    found = []
    for instance in instances:
        if instance["origin"] == "model":
            path = f"/api/providers/llamacpp/instances/{instance['id']}/status"
            found.append(app.http.get(path, params={"refresh": True}).json())
    return found


@contextlib.contextmanager
def scheduled(app: RunningApp, key: str) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """``key``'s ``model.schedule`` events from now on: what the test waits on, rather than
    requests of its own that would race the restart."""
    events = app.services.bus.subscribe(["model.schedule"])
    seen: list[dict[str, Any]] = []

    def read() -> list[dict[str, Any]]:
        seen.extend(data for _, data in drain(events) if data["key"] == key)
        return seen

    try:
        yield read
    finally:
        app.services.bus.unsubscribe(events)


def loaded_again(read: Callable[[], list[dict[str, Any]]]) -> bool:
    """Whether the scheduler cleaned up a model that died and has loaded it again."""
    states = [v["state"] for v in read()]
    return (
        "unloaded" in states
        and "loading" in states[states.index("unloaded") :]
        and states[-1] == "loaded"
        and (read()[-1]["last_eviction"] or {}).get("reason") == "died"
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_server_is_restarted_by_the_scheduler_and_its_view_agrees(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    app = modelyard(
        models_dir=models,
        llama_server=LLAMA_SERVER,
        restart=RestartPolicy.ON_FAILURE,
        restart_backoff_s=0.2,
    )
    app.http.post("/api/models/sync")
    client = openai.OpenAI(base_url=app.url + "/v1", api_key="none", max_retries=0)
    client.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=2)
    (first,) = servers(app)
    assert first["state"] == "RUNNING" and schedule(app)["tiny.gguf"]["state"] == "loaded"

    key = "llamacpp/local/tiny.gguf"
    with scheduled(app, key) as seen:
        os.kill(first["pid"], signal.SIGKILL)
        wait_until(lambda: loaded_again(seen), "the scheduler loaded it again", timeout=90)
    (second,) = servers(app)
    assert second["state"] == "RUNNING" and alive(second["pid"]) and not alive(first["pid"])
    view = schedule(app)["tiny.gguf"]
    assert view["last_eviction"] == "died"  # cleaned up by the scheduler, then loaded
    assert view["in_flight"] == 0
    catalog = {m["name"]: m["status"] for m in app.http.get("/api/models/list").json()["models"]}
    assert catalog == {"tiny.gguf": "loaded"}
    assert second["restarts"] == 1  # by the policy: counted, not a start by hand
    answer = client.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=2)
    assert answer.choices
    totals = app.services.gateway.scheduler.committed_bytes()
    assert totals == estimate(models / "tiny.gguf")  # one model's memory, counted once


def test_a_restart_the_budget_does_not_allow_is_not_started(
    modelyard: App, tmp_path: Path, tiny_gguf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server dies; while its restart waits out the backoff a pinned model takes the only
    room: the restart is refused by the scheduler, and the log says why."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("a.gguf", "b.gguf"):
        shutil.copy(tiny_gguf, models / name)
    served = InstanceConfig(
        provider="llamacpp",
        id="a-server",
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        model=str(models / "a.gguf"),
        restart=RestartPolicy.ON_FAILURE,
    )
    app = modelyard(
        [served],
        models_dir=models,
        llama_server=LLAMA_SERVER,
        restart_backoff_s=8.0,  # long enough to load the pinned model meanwhile
        memory_budget_bytes=estimate(models / "a.gguf") * 3 // 2,  # room for one
        pinned_models=["b.gguf"],
    )
    app.http.post("/api/models/sync")
    started = app.http.post("/api/providers/llamacpp/instances/a-server/start")
    assert started.status_code == 200, started.text  # a load of the scheduler
    status = "/api/providers/llamacpp/instances/a-server/status"
    wait_until(lambda: schedule(app)["a.gguf"]["state"] == "loaded", "a.gguf loaded")
    pid = app.http.get(status, params={"refresh": True}).json()["pid"]

    caplog.set_level(logging.ERROR, logger="modelyard.runtimes.restarts")
    with scheduled(app, "llamacpp/local/a.gguf") as seen:
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: any(v["state"] == "unloaded" for v in seen()), "a.gguf cleaned up", timeout=30
        )
    assert schedule(app)["a.gguf"]["last_eviction"] == "died"
    client = openai.OpenAI(base_url=app.url + "/v1", api_key="none", max_retries=0)
    client.chat.completions.create(model="b.gguf", messages=HI, max_tokens=2)  # pinned
    wait_until(
        lambda: any("a-server was not restarted" in r.getMessage() for r in caplog.records),
        "the refusal logged",
        timeout=30,
    )
    (refusal,) = [r for r in caplog.records if "not restarted" in r.getMessage()]
    assert "memory budget" in refusal.getMessage()
    after = app.http.get(status, params={"refresh": True}).json()
    assert after["state"] != "RUNNING" and not alive(pid)
    views = schedule(app)
    assert views["b.gguf"]["state"] == "loaded"
    assert views["a.gguf"]["state"] == "unloaded"


def serving(path: Path) -> list[int]:
    """The llama-server processes serving ``path``."""
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(path) in (p.info["cmdline"] or []) and "llama-server" in " ".join(p.info["cmdline"])
    ]


def test_a_configured_server_of_a_file_outside_the_models_dir_is_restarted_by_the_scheduler(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    """Its model is one of the scheduler's (the gateway's ``llamacpp/solo/solo``): killed, it
    is cleaned up and loaded again by the scheduler, which counts its memory once. The test
    waits on the scheduler's events, sends nothing while the restart runs."""
    outside = tmp_path / "elsewhere" / "solo.gguf"
    outside.parent.mkdir()
    shutil.copy(tiny_gguf, outside)
    models = tmp_path / "models"
    models.mkdir()
    solo = managed_server("solo", outside, restart=RestartPolicy.ON_FAILURE)
    app = modelyard([solo], models_dir=models, llama_server=LLAMA_SERVER, restart_backoff_s=0.2)
    key = "llamacpp/solo/solo"
    started = app.http.post(
        "/api/models/start", json={"provider": "llamacpp", "name": "solo", "instance_id": "solo"}
    )
    assert started.status_code == 200, started.text  # a load of the scheduler
    client = openai.OpenAI(base_url=app.url + "/v1", api_key="none", max_retries=0)
    assert client.chat.completions.create(model="solo", messages=HI, max_tokens=2).choices
    status = "/api/providers/llamacpp/instances/solo/status"
    first = app.http.get(status, params={"refresh": True}).json()
    assert first["state"] == "RUNNING" and serving(outside) == [first["pid"]]
    info = read_gguf(outside)
    needs = estimate_memory(
        info, file_size=outside.stat().st_size, ctx_size=info.context_length or 4096
    ).total
    scheduler = app.services.gateway.scheduler
    assert scheduler.committed_bytes() == needs  # its own file's estimate, counted once

    with scheduled(app, key) as seen:
        os.kill(first["pid"], signal.SIGKILL)
        wait_until(lambda: loaded_again(seen), "the scheduler loaded it again", timeout=90)

    second = app.http.get(status, params={"refresh": True}).json()
    assert second["state"] == "RUNNING" and second["pid"] != first["pid"]
    assert second["restarts"] == 1  # by the policy
    assert serving(outside) == [second["pid"]] and not alive(first["pid"])
    (view,) = [v for v in app.http.get("/api/models/schedule").json()["models"] if v["key"] == key]
    assert view["state"] == "loaded" and view["estimate_bytes"] == needs
    assert scheduler.committed_bytes() == needs
    assert client.chat.completions.create(model="solo", messages=HI, max_tokens=2).choices

    # The Providers page's stop is an unload of the scheduler: nothing left running or counted.
    assert app.http.post("/api/providers/llamacpp/instances/solo/stop").status_code == 200
    (view,) = [v for v in app.http.get("/api/models/schedule").json()["models"] if v["key"] == key]
    assert view["state"] == "unloaded" and view["last_eviction"]["reason"] == "requested"
    assert scheduler.committed_bytes() == 0 and serving(outside) == []
