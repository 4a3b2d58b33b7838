"""``modelyard pull`` and ``modelyard downloads`` against a real server and real file servers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from modelyard.cli import app
from modelyard.instance_config import InstanceConfig
from tests.downloads.support import (
    MiB,
    add_payload,
    create,
    wait_bytes,
    wait_state,
)
from tests.fakes.fileserver import FileServer
from tests.fakes.fixtures import FakeServer
from tests.fakes.ollama_state import OllamaState
from tests.support.app_server import RunningApp
from tests.support.waiting import wait_until

runner = CliRunner()


def run(url: str, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"MODELYARD_URL": url}, catch_exceptions=False)


@pytest.fixture
def files(tmp_path: Path) -> Iterator[FileServer]:
    with FileServer(tmp_path / "www") as server:
        yield server


def test_pull_a_url_follows_it_to_the_end(
    modelyard: Callable[..., RunningApp], files: FileServer
) -> None:
    server = modelyard()
    payload = add_payload(files, "tiny-q8_0.gguf", 3 * MiB)
    files.throttle(4 * MiB)

    result = run(server.url, "pull", payload.url, "--sha256", payload.sha256, "--mode", "embed")

    assert result.exit_code == 0, result.output
    assert "Completed tiny-q8_0.gguf" in result.output and payload.sha256 in result.output
    assert "3.1/3.1 MB" in result.output  # the progress bar's last state
    dest = server.settings.resolved_models_dir / payload.name
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == payload.sha256
    (task,) = server.http.get("/api/downloads").json()["downloads"]
    assert task["mode"] == "embed" and task["sha256"] == payload.sha256


def test_pull_an_ollama_model_shows_its_layers(
    modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    ollama_server.state.add_registry_model("qwen2:0.5b", [30_000_000, 1_400])
    instance = InstanceConfig(provider="ollama", id="box", base_url=ollama_server.url)
    server = modelyard([instance])

    result = run(server.url, "pull", "qwen2:0.5b", "--instance", "box")

    assert result.exit_code == 0, result.output
    assert "Completed qwen2:0.5b" in result.output and "success" in result.output
    assert ollama_server.state.model("qwen2:0.5b") is not None


def test_pull_failures_and_bad_input_are_clean_errors(
    modelyard: Callable[..., RunningApp], files: FileServer
) -> None:
    server = modelyard()

    missing = run(server.url, "pull", files.url_for("missing.gguf"))
    assert missing.exit_code == 1 and "HTTP 404" in missing.output
    assert "modelyard downloads log" in missing.output
    for args, message in [
        (("pull", "ftp://127.0.0.1/x.gguf"), "only http and https"),
        (("pull", "bad name!"), "not a valid Ollama model name"),
        (("pull", "llama3.2", "--filename", "x.gguf"), "--filename and --sha256"),
        (("pull", files.url_for("x.gguf"), "--instance", "box"), "Ollama models only"),
        (("pull", "hf://owner"), "not a Hub repo id"),
    ]:
        result = run(server.url, *args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_downloads_lists_and_acts_on_tasks(
    modelyard: Callable[..., RunningApp], files: FileServer
) -> None:
    server = modelyard()
    assert "No downloads" in run(server.url, "downloads").output
    done = add_payload(files, "done.gguf", MiB)
    slow = add_payload(files, "slow.gguf", 8 * MiB, seed=2)
    files.throttle(MiB, path="slow.gguf")
    first = create(server.http, source="url", url=done.url)
    wait_state(server.http, first["id"], {"completed"})
    second = create(server.http, source="url", url=slow.url)
    wait_bytes(server.http, second["id"], 1)

    listed = run(server.url, "downloads")
    assert listed.exit_code == 0
    for text in (first["id"], second["id"], "completed", "downloading", "slow.gguf"):
        assert text in listed.output
    only = run(server.url, "downloads", "--state", "completed", "--json")
    assert [t["id"] for t in json.loads(only.output)["downloads"]] == [first["id"]]

    assert "paused" in run(server.url, "downloads", "pause", second["id"]).output
    assert "cancelled" in run(server.url, "downloads", "cancel", second["id"]).output
    files.clear_faults()
    assert run(server.url, "downloads", "retry", second["id"]).exit_code == 0
    wait_state(server.http, second["id"], {"completed"})
    log = run(server.url, "downloads", "log", second["id"])
    assert "cancelled: the partial file was removed" in log.output
    assert "Removed" in run(server.url, "downloads", "rm", first["id"]).output
    again = run(server.url, "downloads", "pause", first["id"])
    assert again.exit_code == 1 and "no download" in again.output


def test_detach_returns_at_once(modelyard: Callable[..., RunningApp], files: FileServer) -> None:
    server = modelyard()
    payload = add_payload(files, "model.gguf", 4 * MiB)
    files.throttle(MiB)

    result = run(server.url, "pull", payload.url, "--detach")

    assert result.exit_code == 0
    task_id = result.output.split()[0]
    assert server.http.get(f"/api/downloads/{task_id}").json()["state"] == "downloading"


def test_ctrl_c_cancels_the_download_cleanly(
    modelyard: Callable[..., RunningApp], files: FileServer
) -> None:
    server = modelyard()
    payload = add_payload(files, "model.gguf", 8 * MiB)
    files.throttle(2 * MiB)
    env = {**os.environ, "MODELYARD_URL": server.url}
    cli = subprocess.Popen(
        [sys.executable, "-m", "modelyard", "pull", payload.url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def started() -> bool:
            tasks = httpx.get(f"{server.url}/api/downloads").json()["downloads"]
            return bool(tasks) and tasks[0]["downloaded"] > 0

        wait_until(started, "the CLI's download to start")
        cli.send_signal(signal.SIGINT)
        output, _ = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()

    assert cli.returncode == 130, output
    assert "Cancelled model.gguf" in output and "partial file was removed" in output
    assert "Traceback" not in output
    (task,) = server.http.get("/api/downloads").json()["downloads"]
    assert task["state"] == "cancelled"
    assert list(server.settings.resolved_models_dir.iterdir()) == []
