"""Reading a managed instance's log as someone on call does: by level and text, the whole file,
and followed live over a WebSocket across a rotation."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from starlette.responses import StreamingResponse
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from modelyard.api.routes.logs import whole_file
from modelyard.instance_config import InstanceConfig
from modelyard.runtimes.log_files import LogLevel, level_of, matching
from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem
from tests.support.servers import closed_port, free_port
from tests.support.waiting import wait_until

LOGS = "/api/providers/llamacpp/instances/talker/logs"
# Says a few things at several levels, then ticks until stopped.
TALKER = (
    "import sys, time\n"
    "print('main: loading model from tiny.gguf', flush=True)\n"
    "print('W  llama_context: n_ctx_per_seq (256) < n_ctx_train: warning', flush=True)\n"
    "print('E  common_init: error: failed to load the draft model', flush=True)\n"
    "print('main: server is listening on http://127.0.0.1:1', flush=True)\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1; print(f'tick {n} ' + '.' * 200, flush=True); time.sleep(0.05)\n"
)


def test_levels_of_the_lines_runtimes_write() -> None:
    assert level_of("E  common_init: error: failed to load model") is LogLevel.ERROR
    assert level_of('time=2026 level=ERROR source=server.go msg="llama runner"') is LogLevel.ERROR
    assert level_of("[2026] modelyard: process 7 ended with signal SIGKILL") is LogLevel.ERROR
    assert level_of("[2026] modelyard: process 7 ended with exit code 0") is LogLevel.INFO
    assert level_of('time=2026 level=WARN msg="gpu not found"') is LogLevel.WARNING
    assert level_of("main: server is listening on http://127.0.0.1:8081") is LogLevel.INFO
    lines = ["a info", "b warning: x", "c error: y", "d debug z"]
    assert matching(lines, LogLevel.WARNING, "") == ["b warning: x", "c error: y"]
    assert matching(lines, None, "ERROR") == ["c error: y"]  # text is case-insensitive
    assert matching(lines, LogLevel.ERROR, "warning") == []


def test_filter_download_and_follow(modelyard: Callable[..., RunningApp], tmp_path: Path) -> None:
    script = tmp_path / "talker.py"
    script.write_text(TALKER)
    talker = InstanceConfig(
        provider="llamacpp",
        id="talker",
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        command=[sys.executable, str(script)],
    )
    outside = InstanceConfig(
        provider="ollama", id="outside", base_url=f"http://127.0.0.1:{closed_port()}"
    )
    app = modelyard([talker, outside], log_max_bytes=4096, log_keep=1, log_check_s=0.2)
    app.http.post("/api/providers/llamacpp/instances/talker/start")
    wait_until(lambda: "tick 3" in app.http.get(LOGS).text, "the first ticks")

    def read(**params: str) -> list[str]:
        lines: list[str] = app.http.get(LOGS, params=params).json()["lines"]
        return lines

    assert read(level="error") == ["E  common_init: error: failed to load the draft model"]
    warned = read(level="warning")
    assert len(warned) == 2 and "n_ctx_per_seq" in warned[0]
    assert read(q="LISTENING") == ["main: server is listening on http://127.0.0.1:1"]
    bad = app.http.get(LOGS, params={"level": "loud"})
    assert_problem(bad, 422, "validation_error")

    whole = app.http.get(LOGS + "/file")
    assert whole.status_code == 200
    assert "attachment" in whole.headers["content-disposition"]
    assert whole.text.splitlines()[0].startswith("=====")  # the start's header line
    external = app.http.get("/api/providers/ollama/instances/outside/logs/file")
    assert_problem(external, 404, "no_log")

    url = app.url.replace("http", "ws", 1) + "/ws/providers/llamacpp/instances/talker/logs"
    with connect(url, open_timeout=10) as ws:
        first = json.loads(ws.recv(timeout=10))["lines"]
        assert any(line.startswith("tick") for line in first)
        ticks: list[int] = []
        log = app.services.processes.log_path("llamacpp/talker")
        rotated_before = log.with_name(log.name + ".1").exists()
        while len(ticks) < 60:  # ~3 s of ticks: the 4 KiB log rotates several times meanwhile
            batch = json.loads(ws.recv(timeout=10))["lines"]
            ticks += [int(line.split()[1]) for line in batch if line.startswith("tick")]
        assert log.with_name(log.name + ".1").exists() or rotated_before
        # Followed across the rotations: every tick once, in order, none lost to a truncation
        # that came after the lines were read (lines written between a copy and its
        # truncation are lost, as with logrotate's copytruncate).
        assert ticks == sorted(set(ticks))

    stray = app.url.replace("http", "ws", 1) + "/ws/providers/ollama/instances/outside/logs"
    with connect(stray, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["code"] == "no_log"
        try:
            ws.recv(timeout=10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4404
    app.http.post("/api/providers/llamacpp/instances/talker/stop")


def test_the_whole_file_is_the_log_as_it_was_when_asked_for(tmp_path: Path) -> None:
    """A log grows (or is truncated by rotation) while it is sent: the answer is the file as it
    was when asked for, never a body longer or shorter than the answer promised (the fuzzer saw
    a 500 when a download's log grew under a fixed Content-Length)."""
    log = tmp_path / "server.log"
    log.write_bytes(b"first line\n" * 10_000)

    async def body(response: StreamingResponse) -> bytes:
        return b"".join([bytes(chunk) async for chunk in response.body_iterator])

    grown = whole_file(log, "talker")
    assert "content-length" not in grown.headers
    with log.open("ab") as writer:
        writer.write(b"a later line\n" * 10_000)
    assert asyncio.run(body(grown)) == b"first line\n" * 10_000

    truncated = whole_file(log, "talker")
    os.truncate(log, 0)
    assert asyncio.run(body(truncated)) == b""
