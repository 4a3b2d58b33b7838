"""Download worker processes, kept for the next download.

A worker (``python -m modelyard.downloads.worker``) spends about a tenth of a second of CPU
starting Python and importing the engine before it can send its first request; on a 1 GiB
download at loopback speed that is a tenth of the whole time, and a tenth of curl's CPU. So a
worker that has finished a job stays, idle and waiting on stdin for the next one (no CPU, a few
MB of memory), and one is started after the first download when none is left. Only the first
download after modelyard starts pays the start. A worker whose job was stopped is let go (its
stdin closed); an idle one exits when modelyard closes its stdin or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

WORKER_ARGV = (sys.executable, "-m", "modelyard.downloads.worker")
STOP_WAIT_S = 10.0


async def spawn() -> asyncio.subprocess.Process:
    """A new worker; its stderr goes where its job says (the task's log file)."""
    return await asyncio.create_subprocess_exec(
        *WORKER_ARGV,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def stop(proc: asyncio.subprocess.Process) -> None:
    """Close a worker's stdin, which cancels its download (releasing the part file) or lets
    an idle one go, then make sure it is gone (killed if it has not exited in time)."""
    if proc.returncode is not None:
        return
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_WAIT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class WorkerPool:
    """Hands out workers, keeping one idle after the first download."""

    def __init__(self) -> None:
        self._idle: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[None] | None = None
        self._exiting: set[asyncio.Task[None]] = set()
        self._closed = False

    async def take(self) -> asyncio.subprocess.Process:
        """A worker for one job: the idle one when it is alive, else a new one."""
        proc, self._idle = self._idle, None
        if proc is not None and proc.returncode is None:
            return proc
        return await spawn()

    def refill(self) -> None:
        """Start an idle worker in the background, unless there is one (after each run)."""
        if self._closed or self._idle is not None or self._starting is not None:
            return
        self._starting = asyncio.create_task(self._start_idle(), name="download-idle-worker")

    async def _start_idle(self) -> None:
        try:
            proc = await spawn()
        finally:
            self._starting = None
        if self._closed or self._idle is not None:
            await stop(proc)
        else:
            self._idle = proc

    def give_back(self, proc: asyncio.subprocess.Process) -> None:
        """A worker that has sent its job's result or error: the idle one now, unless there
        is one (then it is let go, in the background)."""
        if self._closed or self._idle is not None or proc.returncode is not None:
            task = asyncio.create_task(stop(proc))
            self._exiting.add(task)
            task.add_done_callback(self._exiting.discard)
        else:
            self._idle = proc

    async def close(self) -> None:
        self._closed = True
        if self._exiting:
            await asyncio.wait(list(self._exiting), timeout=STOP_WAIT_S)
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting
        proc, self._idle = self._idle, None
        if proc is not None:
            await stop(proc)
