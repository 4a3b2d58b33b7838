"""Managed instances for real: start/stop/restart through the API with both llama.cpp runtimes,
crash detection by the monitor, adoption after a modelyard restart (SPEC §3)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelyard.instance_config import InstanceConfig
from tests.support.app_server import RunningApp, ServerProcess, stop_managed
from tests.support.llama import LLAMA_SERVER
from tests.support.servers import ServerThread, free_port

RUNTIMES = [
    pytest.param(LLAMA_SERVER, id="llama-server-binary"),
    pytest.param("", id="embedded-xllamacpp"),
]


def managed(model: Path, port: int, id: str = "tiny") -> InstanceConfig:
    return InstanceConfig(
        provider="llamacpp",
        id=id,
        base_url=f"http://127.0.0.1:{port}",
        managed=True,
        model=str(model),
        ctx_size=256,
    )


def wait_state(app: RunningApp, want: str, timeout: float = 60, id: str = "tiny") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = app.http.get(
            f"/api/providers/llamacpp/instances/{id}/status", params={"refresh": True}
        ).json()
        if status["state"] == want:
            return status
        time.sleep(0.1)
    raise AssertionError(
        f"state stayed {status.get('state')} ({status.get('hint')}), wanted {want}"
    )


def drain(sub: Any) -> list[tuple[str, str | None]]:
    out = []
    while (event := sub.get_nowait()) is not None:
        out.append((event.data["state"], event.data["reason_code"]))
    return out


@pytest.mark.parametrize("binary", RUNTIMES)
def test_start_stop_restart_and_crash(
    modelyard: Callable[..., RunningApp], tiny_gguf: Path, binary: str
) -> None:
    app = modelyard([managed(tiny_gguf, free_port())], llama_server=binary)
    sub = app.services.bus.subscribe(["provider.status"])
    assert wait_state(app, "STOPPED")["reason_code"] == "not_running"

    started = app.http.post("/api/providers/llamacpp/instances/tiny/start")
    assert started.status_code == 200, started.text
    assert started.json()["state"] in ("STARTING", "RUNNING")
    running = wait_state(app, "RUNNING")
    pid = running["pid"]
    assert running["pid_exists"] and running["port_listening"] and running["api_responding"]
    cmdline = " ".join(psutil.Process(pid).cmdline())
    assert ("llama_runner" in cmdline) == (binary == "")
    again = app.http.post("/api/providers/llamacpp/instances/tiny/start")
    assert again.status_code == 409 and again.json()["code"] == "already_running"
    logs = app.http.get("/api/providers/llamacpp/instances/tiny/logs").json()
    assert logs["lines"], "the server's output goes to the instance's log"

    restarted = app.http.post("/api/providers/llamacpp/instances/tiny/restart")
    assert restarted.status_code == 200
    new_pid = wait_state(app, "RUNNING")["pid"]
    assert new_pid != pid and not psutil.pid_exists(pid)

    stopped = app.http.post("/api/providers/llamacpp/instances/tiny/stop").json()
    assert stopped["state"] == "STOPPED" and not psutil.pid_exists(new_pid)

    app.http.post("/api/providers/llamacpp/instances/tiny/start")
    victim = wait_state(app, "RUNNING")["pid"]
    os.kill(victim, signal.SIGKILL)
    app.services.health.poke()
    crashed = wait_state(app, "ERROR", timeout=20)
    assert crashed["reason_code"] == "process_exited" and crashed["pid_exists"] is False
    states = drain(sub)
    assert ("STARTING", "starting") in states or any(s == "STARTING" for s, _ in states)
    assert ("ERROR", "process_exited") in states  # the monitor published the crash
    last_running = max(i for i, (s, _) in enumerate(states) if s == "RUNNING")
    assert states.index(("ERROR", "process_exited")) > last_running, states


def test_start_timeout_shows_the_log(modelyard: Callable[..., RunningApp], tmp_path: Path) -> None:
    port = free_port()
    script = (
        "import sys, time; print('loading weights... out of memory', flush=True); time.sleep(60)"
    )
    inst = InstanceConfig(
        provider="llamacpp",
        id="stuck",
        base_url=f"http://127.0.0.1:{port}",
        managed=True,
        model=str(tmp_path),  # not used: the command replaces the runtime
        command=[sys.executable, "-c", script],
    )
    app = modelyard([inst], start_timeout_s=1.5)
    assert (
        app.http.post("/api/providers/llamacpp/instances/stuck/start").json()["state"] == "STARTING"
    )
    failed = wait_state(app, "ERROR", timeout=20, id="stuck")
    assert failed["reason_code"] == "start_timeout"
    assert "out of memory" in failed["hint"]


def test_stop_does_not_answer_with_a_check_begun_before_it(
    modelyard: Callable[..., RunningApp], tmp_path: Path
) -> None:
    """A status check under way when Stop is pressed saw the process alive: the stop must
    answer with a check of its own (STOPPED), and the older result must not overwrite it."""
    port = free_port()
    # A managed server that never answers: each connection is handed to a grandchild in its
    # own session, which holds it for 5 s, so a check under way outlives the stop.
    script = (
        "import os, socket, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(8)\n"
        "while True:\n"
        "    conn, _ = s.accept()\n"
        "    if os.fork() == 0:\n"
        "        os.setsid(); s.close(); time.sleep(5); os._exit(0)\n"
        "    conn.close()\n"
    )
    inst = InstanceConfig(
        provider="llamacpp",
        id="mute",
        base_url=f"http://127.0.0.1:{port}",
        managed=True,
        model=str(tmp_path),  # not used: the command replaces the runtime
        command=[sys.executable, "-c", script],
    )
    app = modelyard([inst], api_timeout_ms=1500, start_timeout_s=30)
    assert app.http.post("/api/providers/llamacpp/instances/mute/start").status_code == 200
    url = "/api/providers/llamacpp/instances/mute/status"
    deadline = time.monotonic() + 30
    while not app.http.get(url, params={"refresh": True}).json()["port_listening"]:
        assert time.monotonic() < deadline, "the managed black hole never listened"
        time.sleep(0.1)
    with httpx.Client(base_url=app.url, timeout=30) as other, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(other.get, url, params={"refresh": True})
        time.sleep(0.3)  # that check is now waiting for the API to answer
        stopped = app.http.post("/api/providers/llamacpp/instances/mute/stop").json()
        assert (stopped["state"], stopped["reason_code"]) == ("STOPPED", "not_running")
        assert slow.result().status_code == 200
    assert app.http.get(url).json()["state"] == "STOPPED"


def test_missing_ollama_binary(modelyard: Callable[..., RunningApp]) -> None:
    inst = InstanceConfig(
        provider="ollama",
        id="local",
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
    )
    app = modelyard([inst], ollama_binary="")
    status = app.http.get("/api/providers/status", params={"refresh": True}).json()["providers"][0]
    assert (status["state"], status["reason_code"]) == ("ERROR", "binary_not_found")
    assert "ollama.com" in status["hint"]
    resp = app.http.post("/api/providers/ollama/instances/local/start")
    assert resp.status_code == 409 and resp.json()["code"] == "binary_not_found"


def test_port_taken_by_something_else(
    modelyard: Callable[..., RunningApp], tiny_gguf: Path, plain_http_server: Any
) -> None:
    inst = managed(tiny_gguf, plain_http_server.port)
    app = modelyard([inst])
    resp = app.http.post("/api/providers/llamacpp/instances/tiny/start")
    assert resp.status_code == 409 and resp.json()["code"] == "port_in_use"
    assert wait_state(app, "ERROR")["reason_code"] == "wrong_service"


def test_loading_model_is_starting(modelyard: Callable[..., RunningApp]) -> None:
    async def loading(_: Any) -> JSONResponse:
        body = {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}}
        return JSONResponse(body, status_code=503)

    fake = Starlette(routes=[Route("/{path:path}", loading)])
    with ServerThread(fake) as server:
        inst = InstanceConfig(provider="llamacpp", id="tiny", base_url=server.url)
        app = modelyard([inst])
        status = wait_state(app, "STARTING")
    assert status["reason_code"] == "loading_model" and status["port_listening"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    procs: list[ServerProcess] = []

    def start(env: dict[str, str], port: int) -> ServerProcess:
        proc = ServerProcess(env, port, tmp_path / f"modelyard-{len(procs)}.log").start()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()
    stop_managed(tmp_path / "data" / "run")


def test_restarted_modelyard_adopts_the_running_child(
    served: Callable[..., ServerProcess], tmp_path: Path, tiny_gguf: Path
) -> None:
    port = free_port()
    config = tmp_path / "modelyard.toml"
    config.write_text(
        "[[instances]]\nprovider = 'llamacpp'\nid = 'tiny'\n"
        f"base_url = 'http://127.0.0.1:{port}'\nmanaged = true\n"
        f"model = '{tiny_gguf}'\nctx_size = 256\n"
    )
    env = {
        "MODELYARD_CONFIG": str(config),
        "MODELYARD_DATA_DIR": str(tmp_path / "data"),
        "MODELYARD_LLAMA_SERVER": LLAMA_SERVER,
    }
    api_port = free_port()
    first = served(env, api_port)
    httpx.post(f"{first.url}/api/providers/llamacpp/instances/tiny/start", timeout=30)
    pid = _wait_running(first.url)
    first.kill(signal.SIGKILL)  # modelyard dies; its child keeps serving
    assert psutil.pid_exists(pid)

    second = served(env, api_port)
    assert _wait_running(second.url) == pid
    again = httpx.post(f"{second.url}/api/providers/llamacpp/instances/tiny/start", timeout=30)
    assert again.status_code == 409 and again.json()["code"] == "already_running"
    children = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tiny_gguf) in " ".join(p.info["cmdline"] or [])
    ]
    assert len(children) == 1


def test_a_reused_pid_is_not_ours(
    modelyard: Callable[..., RunningApp], tmp_path: Path, tiny_gguf: Path
) -> None:
    import json
    import subprocess

    app = modelyard([managed(tiny_gguf, free_port())])
    other = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = app.services.processes.pid_path("llamacpp/tiny")
        record = {
            "key": "llamacpp/tiny",
            "pid": other.pid,
            "create_time": psutil.Process(other.pid).create_time() - 1000,
            "cmdline": [LLAMA_SERVER, "-m", str(tiny_gguf)],
            "port": None,
            "started_at": "2026-01-01T00:00:00+00:00",
            "log_path": str(tmp_path / "x.log"),
        }
        pid_file.write_text(json.dumps(record))
        status = wait_state(app, "ERROR")
        assert status["reason_code"] == "process_exited" and status["pid_exists"] is False
        assert app.http.post("/api/providers/llamacpp/instances/tiny/stop").status_code == 200
        assert other.poll() is None, "stop must never signal a process that is not ours"
    finally:
        other.kill()
        other.wait()


def _wait_running(url: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = httpx.get(
            f"{url}/api/providers/llamacpp/instances/tiny/status?refresh=true", timeout=10
        )
        if resp.json()["state"] == "RUNNING":
            return int(resp.json()["pid"])
        time.sleep(0.2)
    raise AssertionError(f"not RUNNING: {resp.text}")
