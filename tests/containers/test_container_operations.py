"""Operations on container instances (stats, logs, remove, recreate with another tag) and GGUF
files served from a container, for real on the test daemon (issue 23)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import httpx
from typer.testing import CliRunner

from modelyard.cli import app as cli_app
from modelyard.runtimes.container_ops import FOLLOWER_THREAD
from modelyard.runtimes.containers import LABEL_KEY
from tests.containers.test_container_instances import (
    BASE,
    container_instance,
    models_dir,
    start_app,
    wait_state,
)
from tests.support.app_server import RunningApp
from tests.support.docker_engine import Engine
from tests.support.servers import free_port

BOXED = f"{BASE}/boxed/container"
runner = CliRunner()


def test_stats_logs_and_remove(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    app = start_app(
        modelyard, engine, models, container_instance(models, free_port(), llama_tag, memory="512m")
    )
    absent = app.http.get(f"{BOXED}/stats")
    assert absent.status_code == 404 and absent.json()["code"] == "no_container"
    assert app.http.post(f"{BASE}/boxed/start").status_code == 200
    wait_state(app, "RUNNING")

    stats = app.http.get(f"{BOXED}/stats")
    assert stats.status_code == 200, stats.text
    use = stats.json()
    assert use["status"] == "running" and use["image"] == llama_tag
    assert 0 < use["memory_bytes"] <= use["memory_limit_bytes"] == 512 * 2**20
    assert use["cpu_percent"] >= 0 and use["pids"] >= 1
    listed = app.http.get("/api/containers").json()["containers"]
    assert [(c["provider"], c["instance_id"], c["status"]) for c in listed] == [
        ("llamacpp", "boxed", "running")
    ]

    tail = app.http.get(f"{BOXED}/logs", params={"tail": 5})
    assert tail.status_code == 200 and tail.headers["content-type"].startswith("text/plain")
    assert 0 < len(tail.text.splitlines()) <= 5
    whole = app.http.get(f"{BOXED}/logs", params={"tail": 10_000, "download": True})
    assert 'filename="llamacpp-boxed.log"' in whole.headers["content-disposition"]
    assert "listening on http://127.0.0.1" in whole.text
    # The instance log endpoint (as for processes) shows the container's output too.
    lines = app.http.get(f"{BASE}/boxed/logs", params={"lines": 50}).json()["lines"]
    assert any("model loaded" in line for line in lines)

    # follow: the tail, then what comes while it is streamed (here: the shutdown), to the end
    following = {"tail": 1, "follow": True}
    with (
        httpx.Client(base_url=app.url, timeout=30) as client,
        client.stream("GET", f"{BOXED}/logs", params=following) as stream,
    ):
        assert app.http.post(f"{BASE}/boxed/stop").status_code == 200
        followed = b"".join(stream.iter_bytes()).decode()
    assert len(followed.splitlines()) > 1

    running = app.http.post(f"{BASE}/boxed/start")
    assert running.status_code == 200
    refused = app.http.delete(BOXED)
    assert refused.status_code == 409 and refused.json()["code"] == "still_running"
    assert app.http.post(f"{BASE}/boxed/stop").status_code == 200
    assert app.http.delete(BOXED).status_code == 204
    assert app.http.delete(BOXED).json()["code"] == "no_container"
    assert wait_state(app, "STOPPED")["container"] is None


def _followers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(FOLLOWER_THREAD)]


def test_a_followed_log_stops_being_read_when_the_client_goes_away(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    app = start_app(modelyard, engine, models, container_instance(models, free_port(), llama_tag))
    assert app.http.post(f"{BASE}/boxed/start").status_code == 200
    wait_state(app, "RUNNING")

    # A running, quiet container: the follower waits for a line that does not come.
    with (
        httpx.Client(base_url=app.url, timeout=30) as client,
        client.stream("GET", f"{BOXED}/logs", params={"tail": 3, "follow": True}) as stream,
    ):
        assert next(stream.iter_bytes())
        assert _followers() == [f"{FOLLOWER_THREAD} llamacpp/boxed"]
    # The client closed its connection: the server stops reading Docker's stream.
    deadline = time.monotonic() + 20
    while _followers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _followers() == []
    assert wait_state(app, "RUNNING")["container"]["status"] == "running"
    assert app.http.post(f"{BASE}/boxed/stop").status_code == 200


def test_recreate_with_another_tag_of_the_configured_image(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    docker_client: docker.DockerClient,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    repository = llama_tag.split(":")[0]
    docker_client.images.get(llama_tag).tag(repository, "other")
    models = models_dir(tmp_path, tiny_gguf)
    app = start_app(modelyard, engine, models, container_instance(models, free_port(), llama_tag))
    assert app.http.post(f"{BASE}/boxed/start").status_code == 200
    before = wait_state(app, "RUNNING")["container"]

    missing = app.http.post(f"{BOXED}/recreate", json={"tag": "nope"})
    assert missing.status_code == 404 and missing.json()["code"] == "image_not_found"
    bad = app.http.post(f"{BOXED}/recreate", json={"tag": "../x"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_tag"
    sneaky = app.http.post(f"{BOXED}/recreate", json={"image": "alpine:latest"})
    assert 400 <= sneaky.status_code < 500  # only a tag of the configured image
    assert wait_state(app, "RUNNING")["container"]["id"] == before["id"]  # untouched

    recreated = app.http.post(f"{BOXED}/recreate", json={"tag": "other"})
    assert recreated.status_code == 200, recreated.text
    after = wait_state(app, "RUNNING")["container"]
    assert after["image"] == f"{repository}:other" and after["id"] != before["id"]
    # a stop and start keep the chosen tag; a recreate without one goes back to the config's
    assert app.http.post(f"{BASE}/boxed/restart").status_code == 200
    assert wait_state(app, "RUNNING")["container"]["image"] == f"{repository}:other"
    assert app.http.post(f"{BOXED}/recreate", json={}).status_code == 200
    assert wait_state(app, "RUNNING")["container"]["image"] == llama_tag
    docker_client.images.remove(f"{repository}:other")


def test_an_instance_without_a_container_has_no_container_operations(
    modelyard: Callable[..., RunningApp], engine: Engine, tmp_path: Path, tiny_gguf: Path
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    app = start_app(modelyard, engine, models)
    created = app.http.post(
        BASE, json={"id": "plain", "base_url": f"http://127.0.0.1:{free_port()}"}
    )
    assert created.status_code == 201, created.text
    answer = app.http.get(f"{BASE}/plain/container/stats")
    assert answer.status_code == 409 and answer.json()["code"] == "not_a_container"


def test_a_gguf_file_served_from_a_container(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    docker_client: docker.DockerClient,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = tmp_path / "models"
    (models / "org").mkdir(parents=True)
    shutil.copy(tiny_gguf, models / "org" / "tiny.gguf")
    app = modelyard(
        docker_host=engine.url, models_dir=models, gguf_runtime="container", llama_image=llama_tag
    )
    app.http.post("/api/models/sync").raise_for_status()
    ref = {"provider": "llamacpp", "name": "org/tiny.gguf"}
    started = app.http.post("/api/models/start", json=ref)
    assert started.status_code == 200, started.text
    server = started.json()["loaded"]
    reply = httpx.post(
        f"{server['base_url']}/v1/chat/completions",
        json={
            "model": "org/tiny.gguf",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 4,
        },
        timeout=30,
    )
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
    (inst,) = [
        i for i in app.http.get("/api/providers").json()["instances"] if i["origin"] == "model"
    ]
    status = app.http.get(f"{BASE}/{inst['id']}/status", params={"refresh": True}).json()
    assert status["state"] == "RUNNING" and status["container"]["image"] == llama_tag
    (container,) = docker_client.containers.list(filters={"label": LABEL_KEY})
    assert container.attrs["Config"]["Cmd"][:2] == ["-m", "/models/org/tiny.gguf"]
    assert container.attrs["Mounts"][0]["RW"] is False

    stopped = app.http.post("/api/models/stop", json=ref)
    assert stopped.status_code == 200 and stopped.json()["status"] == "available"
    assert docker_client.containers.list(all=True, filters={"label": LABEL_KEY}) == []


def test_the_cli_shows_use_and_logs_and_recreates(
    modelyard: Callable[..., RunningApp],
    engine: Engine,
    llama_tag: str,
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = models_dir(tmp_path, tiny_gguf)
    app = start_app(modelyard, engine, models, container_instance(models, free_port(), llama_tag))

    def cli(*args: str) -> Any:
        return runner.invoke(cli_app, list(args), env={"MODELYARD_URL": app.url})

    assert cli("providers", "start", "llamacpp/boxed").exit_code == 0
    wait_state(app, "RUNNING")
    listed = cli("containers", "list")
    assert listed.exit_code == 0, listed.output
    assert "llamacpp/boxed" in listed.output and "running" in listed.output
    assert " %" in listed.output and "MB" in listed.output
    logs = cli("containers", "logs", "llamacpp/boxed", "--tail", "3")
    assert logs.exit_code == 0 and 0 < len(logs.output.splitlines()) <= 3
    saved = tmp_path / "boxed.log"
    assert (
        cli("containers", "logs", "llamacpp/boxed", "-n", "1000", "-o", str(saved)).exit_code == 0
    )
    assert "model loaded" in saved.read_text()
    missing = cli("containers", "recreate", "llamacpp/boxed", "--tag", "absent")
    assert missing.exit_code == 1 and "not on this machine" in missing.output
    assert "Traceback" not in missing.output
    recreated = cli("containers", "recreate", "llamacpp/boxed")
    assert recreated.exit_code == 0 and llama_tag in recreated.output
    refused = cli("containers", "remove", "llamacpp/boxed")
    assert refused.exit_code == 1 and "Stop it first" in refused.output
