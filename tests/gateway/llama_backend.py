"""A scheduler backend that runs one genuine llama-server per model, as modelyard's managed
llama.cpp instances do: loading starts the process (progress while ``/health`` answers 503
"Loading model"), unloading stops it, liveness is the process and its ``/health``.

Each model has its port from the start (an instance's base URL is configured), so the
gateway knows where to send a request before the model is loaded. It records every start
and every process it ran, so a test can check that exactly one ran per load and that none is
left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.llama import LLAMA_ENV, LLAMA_SERVER
from tests.support.servers import free_port


class LlamaServers:
    def __init__(self, models: dict[str, Path], sizes: dict[str, int], ctx_size: int = 512):
        self.models = models
        self.sizes = sizes
        self.ctx_size = ctx_size
        self.ports = {key: free_port() for key in models}
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.every_process: list[asyncio.subprocess.Process] = []
        self.starts: Counter[str] = Counter()
        self.most_running = 0

    def url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.ports[key]}"

    def running(self) -> list[str]:
        return [key for key, proc in self.procs.items() if proc.returncode is None]

    def estimate_bytes(self, key: str) -> int:
        return self.sizes[key]

    def manages_own_memory(self, key: str) -> bool:
        return False

    async def load(self, key: str, progress: Callable[[float], None]) -> None:
        argv = [
            LLAMA_SERVER,
            "-m",
            str(self.models[key]),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.ports[key]),
            "-c",
            str(self.ctx_size),
            "-np",
            "4",
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=LLAMA_ENV
        )
        self.procs[key] = proc
        self.every_process.append(proc)
        self.starts[key] += 1
        self.most_running = max(self.most_running, len(self.running()))
        try:
            await self._until_healthy(key, proc, progress)
        except BaseException:
            await self._stop(proc)  # cancelled or failed: nothing left behind
            raise

    async def _until_healthy(
        self, key: str, proc: asyncio.subprocess.Process, progress: Callable[[float], None]
    ) -> None:
        step = 0
        async with httpx.AsyncClient(timeout=2) as client:
            while proc.returncode is None:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url(key) + "/health")).status_code == 200:
                        progress(1.0)
                        return
                step += 1
                progress(min(0.95, step / 40))
                await asyncio.sleep(0.05)
        raise RuntimeError(f"llama-server for {key} exited with {proc.returncode}")

    async def unload(self, key: str) -> None:
        proc = self.procs.get(key)
        if proc is not None:
            await self._stop(proc)

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    async def is_alive(self, key: str) -> bool:
        proc = self.procs.get(key)
        if proc is None or proc.returncode is not None:
            return False
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(self.url(key) + "/health")).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self, key: str) -> None:
        """The process dies (SIGKILL), as a crash would end it."""
        self.procs[key].kill()
