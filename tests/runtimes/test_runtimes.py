"""Runtime command lines, run for real: the genuine llama-server and the embedded runner."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.errors import InvalidInput, NotFound
from modelyard.instance_config import ModelMode
from modelyard.providers.llamacpp import find_llama_server, llama_server_argv, runtime_name
from modelyard.providers.ollama.provider import find_ollama, ollama_serve_spec
from modelyard.runtimes.processes import ProcessManager
from tests.support.llama import LLAMA_SERVER
from tests.support.servers import free_port
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.waiting import wait_until

GENUINE = LLAMA_SERVER
RUNNER = [sys.executable, "-m", "modelyard.runtimes.llama_runner"]


@pytest.fixture(params=["llama-server", "embedded"])
def binary(request: pytest.FixtureRequest) -> str | None:
    """Both runtimes: the genuine llama-server binary and the embedded xllamacpp runner."""
    return GENUINE if request.param == "llama-server" else None


@pytest.fixture(scope="module")
def embed_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("embed") / "embed.gguf", pooling=True)


@pytest.fixture(scope="module")
def rerank_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("rerank") / "rerank.gguf", rerank=True)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    client: httpx.Client
    log: Path


Serve = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a server command (its --port must be free), wait for /health 200, kill it after."""
    running: list[Served] = []

    def start(argv: list[str], env: dict[str, str] | None = None) -> Served:
        port = argv[argv.index("--port") + 1]
        log_path = tmp_path / f"server-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        served = Served(
            process, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30), log_path
        )
        running.append(served)
        deadline = time.monotonic() + 60
        while _health(served.client) != 200:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the server did not become healthy"
            time.sleep(0.05)
        return served

    yield start
    for served in running:
        served.client.close()
        served.process.kill()
        served.process.wait()


def _health(client: httpx.Client) -> int | None:
    try:
        return client.get("/health").status_code
    except httpx.TransportError:
        return None


def _argv(model: Path, binary: str | None, **options: Any) -> list[str]:
    return llama_server_argv(
        model=model, host="127.0.0.1", port=free_port(), binary=binary, **options
    )


def test_flags_reach_the_server(serve: Serve, tiny_gguf: Path, binary: str | None) -> None:
    argv = _argv(tiny_gguf, binary, ctx_size=512, alias="tiny-chat", parallel=2)
    client = serve(argv, {"LLAMA_API_KEY": "sekrit"}).client  # how modelyard gives the key
    auth = {"Authorization": "Bearer sekrit"}

    models = client.get("/v1/models", headers=auth).json()
    assert [entry["id"] for entry in models["data"]] == ["tiny-chat"]
    slots = client.get("/slots", headers=auth).json()
    assert [slot["n_ctx"] for slot in slots] == [256, 256]  # -c 512 split over -np 2
    assert client.get("/metrics").status_code == 401
    metrics = client.get("/metrics", headers=auth)
    assert metrics.status_code == 200 and "llamacpp:" in metrics.text

    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stream": True}
    assert client.post("/v1/chat/completions", json=body).status_code == 401
    with client.stream("POST", "/v1/chat/completions", json=body, headers=auth) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(
        choice["delta"].get("content") or ""
        for event in events[:-1]
        for choice in json.loads(event)["choices"]
    )
    assert text


def test_embedding_mode_serves_embeddings(
    serve: Serve, embed_gguf: Path, binary: str | None
) -> None:
    chat_only = serve(_argv(embed_gguf, binary)).client
    assert chat_only.post("/v1/embeddings", json={"input": "hello"}).status_code == 501

    client = serve(_argv(embed_gguf, binary, mode=ModelMode.EMBED)).client
    answer = client.post("/v1/embeddings", json={"input": ["hello", "world"]})
    assert answer.status_code == 200
    vectors = [item["embedding"] for item in answer.json()["data"]]
    assert len(vectors) == 2 and all(len(vector) == 64 for vector in vectors)


def test_rerank_mode_serves_rerank(serve: Serve, rerank_gguf: Path, binary: str | None) -> None:
    client = serve(_argv(rerank_gguf, binary, mode=ModelMode.RERANK)).client
    answer = client.post("/v1/rerank", json={"query": "hello", "documents": ["hi there", "bye"]})
    assert answer.status_code == 200
    assert sorted(result["index"] for result in answer.json()["results"]) == [0, 1]


def _run_runner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNNER, *args], capture_output=True, text=True, timeout=60)


def test_runner_reports_a_missing_model(tmp_path: Path) -> None:
    result = _run_runner("-m", str(tmp_path / "absent.gguf"), "--port", str(free_port()))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"llama_runner: error: model file not found: {tmp_path}/absent.gguf"
    )


def test_runner_reports_a_busy_port(tiny_gguf: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run_runner("-m", str(tiny_gguf), "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"llama_runner: error: port {port} on 127.0.0.1 is already in use"
    )


def test_runner_reports_an_unloadable_model(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    result = _run_runner("-m", str(broken), "--port", str(free_port()))
    assert result.returncode == 1
    assert f"llama_runner: error: llama.cpp could not load {broken}" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_runner_exits_cleanly_on_signal(serve: Serve, tiny_gguf: Path, sig: signal.Signals) -> None:
    served = serve(_argv(tiny_gguf, None))
    runner = served.process
    # /health answers before the runner's handlers are in place; "listening on" after.
    wait_until(lambda: b"listening on" in served.log.read_bytes(), "the runner's handlers")
    os.kill(runner.pid, sig)
    assert runner.wait(timeout=30) == 0


def test_find_llama_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_llama_server() is None  # nothing anywhere: the embedded runtime
    assert find_llama_server(GENUINE) == GENUINE
    on_path = _executable(tmp_path / "llama-server")
    assert find_llama_server() == str(on_path)
    assert find_llama_server(str(tmp_path / "missing")) == str(on_path)
    assert runtime_name(GENUINE) == f"llama-server ({GENUINE})"
    assert runtime_name(None) == "embedded (xllamacpp)"


def _executable(path: Path, script: str = "exit 0") -> Path:
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_ollama_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_ollama() is None
    with pytest.raises(NotFound) as err:
        ollama_serve_spec("ollama/default", "http://127.0.0.1:11434")
    assert err.value.error_code == "binary_not_found"
    assert "https://ollama.com/download" in err.value.hint
    assert "MODELYARD_OLLAMA_BINARY" in err.value.hint


@pytest.mark.parametrize(
    ("base_url", "ollama_host", "port"),
    [
        pytest.param("http://127.0.0.1:11434", "127.0.0.1:11434", 11434, id="ipv4"),
        pytest.param("http://[::1]:11500/", "[::1]:11500", 11500, id="ipv6"),
        pytest.param("http://localhost", "localhost:80", 80, id="no-port"),
    ],
)
def test_ollama_serve_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str, ollama_host: str, port: int
) -> None:
    ollama = _executable(tmp_path / "ollama")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    spec = ollama_serve_spec("ollama/default", base_url)
    assert spec.argv == [str(ollama), "serve"]
    assert spec.env == {"OLLAMA_HOST": ollama_host} and spec.port == port


def test_ollama_serve_spec_runs_the_configured_binary(tmp_path: Path) -> None:
    ollama = _executable(tmp_path / "my-ollama", 'echo "ollama $1 on $OLLAMA_HOST"; exec sleep 60')
    spec = ollama_serve_spec("ollama/default", "http://127.0.0.1:11999", configured=str(ollama))
    manager = ProcessManager(tmp_path / "run", tmp_path / "logs")
    manager.start(spec)
    try:
        deadline = time.monotonic() + 30
        while "ollama serve on 127.0.0.1:11999" not in manager.log_tail("ollama/default"):
            assert time.monotonic() < deadline, manager.log_tail("ollama/default")
            time.sleep(0.02)
        # The script exec'd sleep: still the same process, still ours, and recorded as such.
        check = manager.check("ollama/default")
        assert check.alive and check.record and check.record.cmdline == ["sleep", "60"]
        assert ProcessManager(manager.run_dir, manager.logs_dir).adopt() == [check.record]
    finally:
        assert manager.stop("ollama/default", grace_s=5) is True


def test_ollama_cannot_serve_https(tmp_path: Path) -> None:
    ollama = _executable(tmp_path / "ollama")
    with pytest.raises(InvalidInput) as err:
        ollama_serve_spec("ollama/default", "https://127.0.0.1:11434", configured=str(ollama))
    assert err.value.error_code == "unsupported_scheme"


@pytest.mark.parametrize(
    ("mode", "flags"),
    [
        pytest.param(ModelMode.LLM, [], id="llm"),
        pytest.param(ModelMode.EMBED, ["--embedding"], id="embed"),
        pytest.param(ModelMode.RERANK, ["--reranking"], id="rerank"),
    ],
)
def test_argv_shape(tmp_path: Path, mode: ModelMode, flags: list[str]) -> None:
    model = tmp_path / "m.gguf"
    argv = llama_server_argv(model=model, host="127.0.0.1", port=8081, mode=mode, binary=None)
    assert argv == [
        *RUNNER,
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        "8081",
        "-np",
        "1",
        "--metrics",
        *flags,
    ]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"port": 0}, id="port-0"),
        pytest.param({"port": 70000}, id="port-too-big"),
        pytest.param({"port": 8081, "parallel": 0}, id="no-slots"),
        pytest.param({"port": 8081, "ctx_size": -1}, id="negative-context"),
        pytest.param({"port": 8081, "threads": 0}, id="no-threads"),
    ],
)
def test_argv_rejects_bad_options(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        llama_server_argv(model=tmp_path / "m.gguf", host="127.0.0.1", binary=None, **options)
