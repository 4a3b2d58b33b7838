"""The restart policy for real: genuine llama-server processes killed behind modelyard's back,
a command that keeps crashing, stops that must not restart, and adopted processes watched."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelyard.cli import app as cli
from modelyard.instance_config import InstanceConfig, RestartPolicy
from modelyard.runtimes.exit_watch import ProcessExit
from modelyard.runtimes.instances import InstanceRegistry
from modelyard.runtimes.processes import LaunchSpec, ProcessManager
from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem
from tests.support.llama import LLAMA_SERVER
from tests.support.servers import free_port
from tests.support.waiting import wait_until

STATUS = "/api/providers/llamacpp/instances/{id}/status"


def server(model: Path, restart: RestartPolicy | None, id: str = "tiny") -> InstanceConfig:
    return InstanceConfig(
        provider="llamacpp",
        id=id,
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        model=str(model),
        ctx_size=256,
        restart=restart,
    )


def crashing(restart: RestartPolicy, id: str = "crashy") -> InstanceConfig:
    """A managed instance whose program says why it fails and exits at once."""
    return InstanceConfig(
        provider="llamacpp",
        id=id,
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        command=["sh", "-c", "echo 'error: model file is corrupt' >&2; exit 3"],
        restart=restart,
    )


def status(app: RunningApp, id: str = "tiny") -> dict[str, Any]:
    answer = app.http.get(STATUS.format(id=id), params={"refresh": True})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def wait_running(app: RunningApp, id: str = "tiny", not_pid: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def running() -> bool:
        found.update(status(app, id))
        return found["state"] == "RUNNING" and found["pid"] != not_pid

    wait_until(running, f"{id} running", timeout=90)
    return found


def events(sub: Any) -> list[tuple[str, dict[str, Any]]]:
    out = []
    while (event := sub.get_nowait()) is not None:
        out.append((event.type, event.data))
    return out


def collect(sub: Any, seen: list[tuple[str, dict[str, Any]]], kind: str) -> Callable[[], bool]:
    def check() -> bool:
        seen.extend(events(sub))
        return any(t == kind for t, _ in seen)

    return check


def test_a_killed_server_is_seen_at_once_and_restarted_by_policy(
    modelyard: Callable[..., RunningApp], tiny_gguf: Path
) -> None:
    app = modelyard(
        [server(tiny_gguf, RestartPolicy.ON_FAILURE)],
        llama_server=LLAMA_SERVER,
        restart_backoff_s=0.2,
    )
    sub = app.services.bus.subscribe(["instance.*", "provider.status"])
    assert app.http.post("/api/providers/llamacpp/instances/tiny/start").status_code == 200
    first = wait_running(app)
    assert first["restarts"] == 0
    events(sub)

    os.kill(first["pid"], signal.SIGKILL)
    seen: list[tuple[str, dict[str, Any]]] = []
    wait_until(collect(sub, seen, "instance.exited"), "instance.exited")
    exited = next(data for kind, data in seen if kind == "instance.exited")
    assert exited["pid"] == first["pid"]
    assert exited["exit_code"] == -signal.SIGKILL
    assert exited["restart"] == "on-failure" and exited["restart_in_s"] == pytest.approx(0.2)
    assert any("ended with signal SIGKILL" in line for line in exited["log_tail"])

    second = wait_running(app, not_pid=first["pid"])
    assert second["restarts"] == 1
    seen.extend(events(sub))
    states = [data["state"] for kind, data in seen if kind == "provider.status"]
    assert "ERROR" in states  # the exit was shown before the restart brought it back
    table = CliRunner().invoke(cli, ["status"], env={"MODELYARD_URL": app.url})
    row = next(line for line in table.output.splitlines() if "llamacpp/tiny" in line)
    assert "RUNNING ↻1" in row
    metrics = app.http.get("/metrics").text
    assert 'modelyard_instance_restarts_total{instance="tiny",provider="llamacpp"} 1.0' in metrics
    assert 'modelyard_instance_exits_total{instance="tiny",provider="llamacpp"} 1.0' in metrics

    # Stopping it is asked for: no exit event, no restart.
    events(sub)
    assert app.http.post("/api/providers/llamacpp/instances/tiny/stop").status_code == 200
    time.sleep(1.0)  # five backoffs: a restart would have begun
    assert not [kind for kind, _ in events(sub) if kind.startswith("instance.")]
    after = status(app)
    assert after["state"] == "STOPPED" and after["restarts"] == 1


def test_policy_no_leaves_a_killed_server_down(
    modelyard: Callable[..., RunningApp], tiny_gguf: Path
) -> None:
    app = modelyard([server(tiny_gguf, None)], llama_server=LLAMA_SERVER, restart_backoff_s=0.1)
    assert app.settings.restart is RestartPolicy.NO  # the default
    sub = app.services.bus.subscribe(["instance.exited"])
    assert app.http.post("/api/providers/llamacpp/instances/tiny/start").status_code == 200
    pid = wait_running(app)["pid"]
    os.kill(pid, signal.SIGTERM)  # a TERM behind modelyard's back is a failure too
    seen: list[tuple[str, dict[str, Any]]] = []
    wait_until(collect(sub, seen, "instance.exited"), "instance.exited")
    assert seen[0][1]["restart"] == "no" and seen[0][1]["restart_in_s"] is None
    time.sleep(0.5)
    down = status(app)
    assert down["state"] == "ERROR" and down["reason_code"] == "process_exited"
    assert down["restarts"] == 0


def test_a_crash_loop_stops_on_failure_restarts_until_started_by_hand(
    modelyard: Callable[..., RunningApp], caplog: pytest.LogCaptureFixture
) -> None:
    app = modelyard(
        [crashing(RestartPolicy.ON_FAILURE)],
        restart_backoff_s=0.05,
        restart_backoff_max_s=0.2,
        crash_loop_exits=3,
    )
    sub = app.services.bus.subscribe(["instance.*"])
    caplog.set_level(logging.ERROR, logger="modelyard.runtimes.restarts")
    app.http.post("/api/providers/llamacpp/instances/crashy/start")
    seen: list[tuple[str, dict[str, Any]]] = []
    wait_until(collect(sub, seen, "instance.crash_loop"), "instance.crash_loop")
    loop = next(data for kind, data in seen if kind == "instance.crash_loop")
    assert loop["exits"] == 4 and loop["gave_up"] is True
    assert any("model file is corrupt" in line for line in loop["log_tail"])
    record = next(r for r in caplog.records if r.getMessage().startswith("crash_loop"))
    assert record.levelno == logging.ERROR and "model file is corrupt" in record.getMessage()

    shown = status(app, "crashy")
    assert shown["state"] == "ERROR" and shown["reason_code"] == "crash_loop"
    assert shown["restarts"] == 3  # three restarts, then the fourth exit ended it
    exits = [data for kind, data in seen if kind == "instance.exited"]
    assert [e["restart_in_s"] for e in exits] == [0.05, 0.1, 0.2, None]  # doubled, capped

    # A start by hand ends the crash loop: restarts begin again.
    events(sub)
    app.http.post("/api/providers/llamacpp/instances/crashy/start")
    again: list[tuple[str, dict[str, Any]]] = []
    wait_until(collect(sub, again, "instance.crash_loop"), "a second crash loop")
    assert status(app, "crashy")["restarts"] == 6


def test_always_goes_on_through_a_crash_loop(modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard(
        [crashing(RestartPolicy.ALWAYS)],
        restart_backoff_s=0.05,
        restart_backoff_max_s=0.1,
        crash_loop_exits=2,
    )
    sub = app.services.bus.subscribe(["instance.*"])
    app.http.post("/api/providers/llamacpp/instances/crashy/start")
    seen: list[tuple[str, dict[str, Any]]] = []
    wait_until(collect(sub, seen, "instance.crash_loop"), "instance.crash_loop")
    assert next(d for k, d in seen if k == "instance.crash_loop")["gave_up"] is False
    wait_until(lambda: status(app, "crashy")["restarts"] >= 5, "restarts past the loop")
    assert [k for k, _ in seen].count("instance.crash_loop") == 1  # announced once
    assert app.http.post("/api/providers/llamacpp/instances/crashy/stop").status_code == 200


def test_an_adopted_process_is_watched_and_its_stop_is_expected(tmp_path: Path) -> None:
    run_dir, logs_dir = tmp_path / "run", tmp_path / "logs"
    first = ProcessManager(run_dir, logs_dir)
    first.start(LaunchSpec(key="llamacpp/a", argv=["sleep", "60"]))
    first.start(LaunchSpec(key="llamacpp/b", argv=["sleep", "60"]))

    adopting = ProcessManager(run_dir, logs_dir)
    told: list[ProcessExit] = []
    arrived = threading.Event()

    def listen(event: ProcessExit) -> None:
        told.append(event)
        arrived.set()

    adopting.add_exit_listener(listen)
    try:
        adopted = {record.key: record.pid for record in adopting.adopt()}
        assert set(adopted) == {"llamacpp/a", "llamacpp/b"}
        os.kill(adopted["llamacpp/a"], signal.SIGKILL)  # the first manager reaps it
        wait_until(arrived.is_set, "the adopted process's exit")
        assert told == [ProcessExit("llamacpp/a", adopted["llamacpp/a"], None, expected=False)]

        arrived.clear()
        assert adopting.stop("llamacpp/b", grace_s=5)
        wait_until(arrived.is_set, "the stopped process's exit")
        assert told[1] == ProcessExit("llamacpp/b", adopted["llamacpp/b"], None, expected=True)
    finally:
        adopting.close()
        first.close()


def test_our_own_child_is_reported_by_its_reaper(tmp_path: Path) -> None:
    manager = ProcessManager(tmp_path / "run", tmp_path / "logs")
    told: list[ProcessExit] = []
    manager.add_exit_listener(told.append)
    record = manager.start(
        LaunchSpec(key="llamacpp/c", argv=[sys.executable, "-c", "raise SystemExit(7)"])
    )
    wait_until(lambda: told, "the child's exit")
    assert told == [ProcessExit("llamacpp/c", record.pid, 7, expected=False)]


def test_an_instance_added_through_the_api_keeps_its_policy_and_limit(
    modelyard: Callable[..., RunningApp], tiny_gguf: Path
) -> None:
    app = modelyard([], restart="on-failure")
    url = f"http://127.0.0.1:{free_port()}"
    # An external server is neither restarted nor limited by modelyard: nothing to store.
    external = {"id": "side", "base_url": url, "restart": "always"}
    assert_problem(
        app.http.post("/api/providers/openai_compat/instances", json=external), 400, "managed_only"
    )
    limited = {"id": "side", "base_url": url, "memory_limit_bytes": 2**30}
    assert_problem(
        app.http.post("/api/providers/openai_compat/instances", json=limited), 400, "managed_only"
    )
    side = "/api/providers/llamacpp/instances/side"
    body = {
        "id": "side",
        "base_url": url,
        "managed": True,
        "model": str(tiny_gguf),
        "restart": "always",
        "memory_limit_bytes": 512 * 2**20,
    }
    created = app.http.post("/api/providers/llamacpp/instances", json=body)
    assert created.status_code == 201, created.text
    assert (created.json()["restart"], created.json()["memory_limit_bytes"]) == (
        "always",
        512 * 2**20,
    )
    patched = app.http.patch(side, json={"restart": "no", "memory_limit_bytes": 2**30})
    assert patched.status_code == 200 and patched.json()["restart"] == "no"
    assert_problem(app.http.patch(side, json={"restart": "often"}), 422, "validation_error")
    assert_problem(
        app.http.patch(side, json={"memory_limit_bytes": 2**20}), 400, "memory_limit_too_small"
    )
    assert_problem(app.http.patch(side, json={"memory_limit_bytes": -1}), 422, "validation_error")
    assert_problem(app.http.patch(side, json={"managed": False}), 400, "managed_only")
    listed = app.http.get("/api/providers").json()["instances"]
    mine = next(i for i in listed if i["id"] == "side")
    assert (mine["restart"], mine["memory_limit_bytes"], mine["managed"]) == ("no", 2**30, True)
    # Read back from the store by a new registry, as after a modelyard restart.
    again = InstanceRegistry(app.settings, app.services.db).get("llamacpp", "side")
    assert again.config.restart is RestartPolicy.NO and again.config.memory_limit_bytes == 2**30
    # null: back to the default (the top-level restart; no limit)
    reset = app.http.patch(side, json={"restart": None, "memory_limit_bytes": None})
    assert (reset.json()["restart"], reset.json()["memory_limit_bytes"]) == (None, 0)
    # Each change is in the audit log, refused ones too.
    audit = app.http.get("/api/audit", params={"action": "instances/side"})
    assert audit.status_code == 200, audit.text
    patches = [e["status"] for e in audit.json()["entries"] if e["method"] == "PATCH"]
    assert sorted(patches) == [200, 200, 400, 400, 422, 422]
