"""Managed instances in Docker containers, for real: a genuine llama-server in a locally built
image on a test daemon, every container on the host network (issue 23, SPEC §3 and §14)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import ollama

from modelyard.instance_config import ContainerConfig, InstanceConfig
from modelyard.runtimes.containers import LABEL_KEY, container_name
from tests.support.app_server import RunningApp
from tests.support.docker_engine import Engine
from tests.support.servers import free_port

BASE = "/api/providers/llamacpp/instances"


def container_instance(
    models: Path, port: int, image: str, id: str = "boxed", **container: Any
) -> InstanceConfig:
    return InstanceConfig(
        provider="llamacpp",
        id=id,
        base_url=f"http://127.0.0.1:{port}",
        managed=True,
        model=str(models / "tiny.gguf"),
        ctx_size=256,
        container=ContainerConfig(image=image, **container),
    )


def models_dir(tmp_path: Path, tiny_gguf: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    return models


def status(app: RunningApp, id: str = "boxed") -> dict[str, Any]:
    answer = app.http.get(f"{BASE}/{id}/status", params={"refresh": True})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def wait_state(
    app: RunningApp, want: str, timeout: float = 60, id: str = "boxed"
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = status(app, id)
        if seen["state"] == want:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"state stayed {seen.get('state')} ({seen.get('hint')}), wanted {want}")


def start_app(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    models: Path,
    *instances: InstanceConfig,
    **values: Any,
) -> RunningApp:
    return modelyard(list(instances), docker_host=engine.url, models_dir=models, **values)


def test_start_stop_and_start_again_in_a_container(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    docker_client: docker.DockerClient,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    app = start_app(modelyard, engine, models, container_instance(models, free_port(), llama_tag))
    assert wait_state(app, "STOPPED")["reason_code"] == "not_running"

    started = app.http.post(f"{BASE}/boxed/start")
    assert started.status_code == 200, started.text
    running = wait_state(app, "RUNNING")
    info = running["container"]
    assert info["name"] == container_name("llamacpp/boxed") and info["status"] == "running"
    assert info["image"] == llama_tag and info["restart_count"] == 0
    container = docker_client.containers.get(info["name"])
    assert container.labels[LABEL_KEY] == "llamacpp/boxed"
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"
    mount = container.attrs["Mounts"][0]
    assert (mount["Source"], mount["Destination"], mount["RW"]) == (str(models), "/models", False)
    # The PID shown is the container's server, as this machine sees it.
    assert running["pid"] == container.attrs["State"]["Pid"] and running["pid_exists"]
    again = app.http.post(f"{BASE}/boxed/start")
    assert again.status_code == 409 and again.json()["code"] == "already_running"

    stopped = app.http.post(f"{BASE}/boxed/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "STOPPED"
    assert stopped.json()["container"]["status"] == "exited"
    assert docker_client.containers.get(info["name"]).status == "exited"  # kept, with its logs

    assert app.http.post(f"{BASE}/boxed/start").status_code == 200
    assert wait_state(app, "RUNNING")["container"]["id"] == info["id"]  # the same container


def test_crash_and_crash_loop_from_docker_restart_policy(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    port = free_port()
    broken = ["-m", "/models/missing.gguf", "--host", "127.0.0.1", "--port", str(port)]
    once = container_instance(models, port, llama_tag, id="once", command=broken)
    looping = container_instance(
        models,
        free_port(),
        llama_tag,
        id="loop",
        command=broken,
        restart="on-failure",
        restart_max=3,
    )
    app = start_app(modelyard, engine, models, once, looping)

    assert app.http.post(f"{BASE}/once/start").status_code == 200
    crashed = wait_state(app, "ERROR", id="once")
    assert crashed["reason_code"] == "container_exited"
    code = crashed["container"]["exit_code"]
    assert code not in (None, 0) and f"code {code}" in crashed["hint"]
    assert "missing.gguf" in crashed["hint"]  # the log tail says why

    assert app.http.post(f"{BASE}/loop/start").status_code == 200
    deadline = time.monotonic() + 60
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = status(app, "loop")
        if seen["container"] and seen["container"]["restart_count"] >= 1:
            break
        time.sleep(0.1)
    assert seen["container"]["restart_count"] >= 1, seen
    assert seen["container"]["restart_policy"] == "on-failure"
    assert seen["state"] == "ERROR" and seen["reason_code"] in ("crash_loop", "container_exited")


def test_a_running_container_whose_server_does_not_answer_is_degraded(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    docker_client: docker.DockerClient,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    port = free_port()
    app = start_app(
        modelyard,
        engine,
        models,
        container_instance(models, port, llama_tag),
        api_timeout_ms=500,
    )
    assert app.http.post(f"{BASE}/boxed/start").status_code == 200
    running = wait_state(app, "RUNNING")
    docker_client.containers.get(running["container"]["name"]).pause()  # hung: port open
    hung = wait_state(app, "DEGRADED")
    assert hung["reason_code"] == "container_paused" and hung["port_listening"]
    # stop still works on a paused container
    stopped = app.http.post(f"{BASE}/boxed/stop")
    assert stopped.status_code == 200 and stopped.json()["state"] == "STOPPED"


def test_a_container_that_serves_another_port_turns_degraded_after_the_start_timeout(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    elsewhere = ["-m", "/models/tiny.gguf", "--host", "127.0.0.1", "--port", str(free_port())]
    app = start_app(
        modelyard,
        engine,
        models,
        container_instance(models, free_port(), llama_tag, command=elsewhere),
        start_timeout_s=2,
    )
    started = app.http.post(f"{BASE}/boxed/start")
    assert started.json()["state"] == "STARTING"
    degraded = wait_state(app, "DEGRADED")
    assert degraded["container"]["status"] == "running"
    assert degraded["reason_code"] == "api_not_responding"


def test_a_container_modelyard_did_not_create_is_never_stopped_or_removed(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    docker_client: docker.DockerClient,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    port = free_port()
    theirs = docker_client.containers.run(
        llama_tag,
        ["-m", "/models/tiny.gguf", "--host", "127.0.0.1", "--port", str(port)],
        name=container_name("llamacpp/boxed"),
        network_mode="host",
        volumes={str(models): {"bind": "/models", "mode": "ro"}},
        detach=True,
    )
    app = start_app(modelyard, engine, models, container_instance(models, port, llama_tag))
    seen = wait_state(app, "ERROR")
    assert seen["reason_code"] == "container_not_ours"
    for action in ("stop", "start", "restart"):
        answer = app.http.post(f"{BASE}/boxed/{action}")
        assert answer.status_code == 409, (action, answer.text)
        assert answer.json()["code"] in ("container_not_ours", "port_in_use"), answer.text
    theirs.reload()
    assert theirs.status == "running"


def test_containers_are_adopted_after_modelyard_restarts(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    instance = container_instance(models, free_port(), llama_tag)
    first = start_app(modelyard, engine, models, instance)
    assert first.http.post(f"{BASE}/boxed/start").status_code == 200
    before = wait_state(first, "RUNNING")["container"]["id"]
    first.stop()  # modelyard goes; the container stays

    second = RunningApp(first.settings).start()
    try:
        assert wait_state(second, "RUNNING")["container"]["id"] == before
        stopped = second.http.post(f"{BASE}/boxed/stop")
        assert stopped.status_code == 200 and stopped.json()["state"] == "STOPPED"
    finally:
        second.stop()


def test_the_api_never_chooses_a_container(
    modelyard: Callable[..., RunningApp], engine: Engine, tmp_path: Path, tiny_gguf: Path
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    app = start_app(modelyard, engine, models)
    body = {
        "id": "sneaky",
        "base_url": f"http://127.0.0.1:{free_port()}",
        "managed": True,
        "model": str(models / "tiny.gguf"),
        "container": {"image": "alpine", "volumes": {"/": "/host"}},
    }
    created = app.http.post(BASE, json=body)
    assert 400 <= created.status_code < 500, created.text
    assert app.http.get(f"{BASE}/sneaky/status").status_code == 404
    plain = {key: body[key] for key in ("id", "base_url", "managed", "model")}
    assert app.http.post(BASE, json=plain).status_code == 201
    edited = app.http.patch(f"{BASE}/sneaky", json={"container": body["container"]})
    assert 400 <= edited.status_code < 500, edited.text
    view = app.http.get("/api/providers").json()["instances"]
    assert [i["image"] for i in view if i["id"] == "sneaky"] == [None]


def test_ollama_in_a_container_is_told_its_address(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    docker_client: docker.DockerClient,
    ollama_tag: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    boxed = InstanceConfig(
        provider="ollama",
        id="boxed",
        base_url=f"http://127.0.0.1:{port}",
        managed=True,
        container=ContainerConfig(
            image=ollama_tag, environment={"OLLAMA_STAND_IN_VERSION": "0.12.9"}, restart="always"
        ),
    )
    app = modelyard([boxed], docker_host=engine.url, models_dir=tmp_path / "models")
    url = "/api/providers/ollama/instances/boxed"

    def state() -> dict[str, Any]:
        body: dict[str, Any] = app.http.get(f"{url}/status", params={"refresh": True}).json()
        return body

    # No ollama binary on this machine: a container instance does not need one.
    assert state()["reason_code"] == "not_running"
    assert app.http.post(f"{url}/start").status_code == 200
    deadline = time.monotonic() + 60
    while (seen := state())["state"] != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert seen["state"] == "RUNNING" and seen["version"] == "0.12.9", seen
    container = docker_client.containers.get(seen["container"]["name"])
    assert f"OLLAMA_HOST=127.0.0.1:{port}" in container.attrs["Config"]["Env"]
    assert container.attrs["Config"]["Cmd"] == ["serve"]
    assert seen["container"]["restart_policy"] == "always"
    listed = ollama.Client(host=boxed.base_url).list()  # the official SDK, to the container
    assert [m.model for m in listed.models] == ["llama3.2:latest"]


def test_an_engine_that_does_not_answer_is_said_plainly(
    modelyard: Callable[..., RunningApp], tmp_path: Path, tiny_gguf: Path
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    instance = container_instance(models, free_port(), "example/llama:server")
    app = modelyard([instance], docker_host=f"unix://{tmp_path}/no-docker.sock", models_dir=models)
    seen = status(app)
    assert (seen["state"], seen["reason_code"]) == ("ERROR", "docker_unavailable")
    started = app.http.post(f"{BASE}/boxed/start")
    assert started.status_code == 503 and started.json()["code"] == "docker_unavailable"
    assert app.http.get("/api/containers").status_code == 503
