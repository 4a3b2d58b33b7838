"""Download worker processes, with one started ahead of need.

A worker (``python -m modelyard.downloads.worker``) spends about a tenth of a second starting
Python and importing the engine before it can send its first request; on a 1 GiB download at
loopback speed that is a tenth of the whole time. So once a download's worker is done, the
next one is started at once and left waiting for its job on stdin, which costs no CPU and a
few MB of memory. The first download after modelyard starts pays the delay; later ones do
not. A spare exits when modelyard closes its stdin, or when modelyard dies (stdin closes too).
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


class Workers:
    """Hands out workers, keeping one started and idle after the first download."""

    def __init__(self) -> None:
        self._spare: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[None] | None = None
        self._exiting: set[asyncio.Task[int]] = set()
        self._closed = False

    async def take(self) -> asyncio.subprocess.Process:
        """A worker for one job: the spare when one is alive, else a new one."""
        proc, self._spare = self._spare, None
        if proc is not None and proc.returncode is None:
            return proc
        return await spawn()

    def refill(self) -> None:
        """Start a spare in the background, unless there is one (called after each run)."""
        if self._closed or self._spare is not None or self._starting is not None:
            return
        self._starting = asyncio.create_task(self._start_spare(), name="download-spare")

    async def _start_spare(self) -> None:
        try:
            proc = await spawn()
        finally:
            self._starting = None
        if self._closed:
            await stop(proc)
        else:
            self._spare = proc

    def reap(self, proc: asyncio.subprocess.Process) -> None:
        """Collect the exit of a worker that has sent its result, in the background."""
        task = asyncio.create_task(proc.wait())
        self._exiting.add(task)
        task.add_done_callback(self._exiting.discard)

    async def close(self) -> None:
        self._closed = True
        if self._exiting:
            await asyncio.wait(list(self._exiting), timeout=STOP_WAIT_S)
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting
        proc, self._spare = self._spare, None
        if proc is not None:
            await stop(proc)
