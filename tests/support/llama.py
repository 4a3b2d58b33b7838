"""The genuine llama-server binary (``llama_build`` says which one), run directly."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelyard.instance_config import InstanceConfig
from tests.support.llama_build import genuine, healthy_within
from tests.support.servers import free_port

LLAMA_SERVER, LLAMA_ENV = genuine()


def managed_server(id: str, model: Path, **extra: Any) -> InstanceConfig:
    """A configured llama.cpp server modelyard runs for the GGUF file ``model``, on a free
    loopback port."""
    return InstanceConfig(
        provider="llamacpp",
        id=id,
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        model=str(model),
        **extra,
    )


@contextmanager
def llama_server(
    model: Path, *args: str, ctx_size: int | None = 256, log: Path | None = None
) -> Iterator[str]:
    """Serve ``model`` on a free 127.0.0.1 port until ``/health`` is 200; yield the base URL;
    stop it afterwards. ``ctx_size=None`` keeps the model's own context length."""
    port = free_port()
    argv = [LLAMA_SERVER, "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    if ctx_size is not None:
        argv += ["-c", str(ctx_size)]
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*argv, *args], stdout=out, stderr=subprocess.STDOUT, env=LLAMA_ENV)
    url = f"http://127.0.0.1:{port}"
    try:
        if not healthy_within(proc, url, 60):
            if proc.poll() is not None:
                tail = log.read_text()[-2000:] if log else "(no log)"
                raise RuntimeError(f"llama-server exited: {tail}")
            raise TimeoutError("llama-server did not become healthy")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if log:
            out.close()  # type: ignore[union-attr]
