"""One run of a task: the URL engine in a worker process, or an Ollama pull in the event loop.

A run reports through its ``RunContext``, whose methods are safe to call from any thread.
Everything it changes goes through the task repository (the ``Sink``), which checks that the
report belongs to the task's current run, so a run being stopped can never overwrite a newer
state. A run that ends well answers with a ``Completion``: what is now on this machine.
Cancelling the asyncio task of a run stops it: the worker's stdin is closed, which cancels
it (it is killed if it does not exit in time), or the Ollama stream is closed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from modelyard.config import Settings
from modelyard.downloads.http_engine import DownloadError, FetchResult, backoff_delay
from modelyard.downloads.huggingface import auth_headers
from modelyard.downloads.progress import Meter
from modelyard.downloads.states import DownloadState, SourceKind
from modelyard.downloads.tasks import Task
from modelyard.downloads.worker import Job
from modelyard.downloads.worker_pool import WorkerPool, spawn, stop
from modelyard.errors import PullError
from modelyard.providers.pull import LayerTracker
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import InstanceRegistry

BACKOFF_CAP_S = 60.0
# A download uses all the CPU it can get (sha256 alone is most of a core per GB/s); at a lower
# priority it still does when the machine is idle, but gives way whenever the API, the
# WebSocket or a model needs a core.
WORKER_NICENESS = 10


@dataclass(frozen=True)
class Completion:
    """What a finished run brought: the bytes now here, and their verified sha256 (a file's;
    an Ollama pull verifies its layers itself)."""

    size: int
    sha256: str | None = None


class Sink(Protocol):
    """What a run needs of the tasks (``repository.TaskRepository``)."""

    def report(self, ctx: RunContext, *, force: bool = False, publish: bool = True) -> None: ...

    def count_attempt(self, ctx: RunContext) -> None: ...

    def save_validator(self, ctx: RunContext, validator: str | None, total: int | None) -> None: ...

    def verifying(self, ctx: RunContext) -> None: ...

    def write_log(self, task_id: str, line: str) -> None: ...


class RunContext:
    """The callbacks of one run; ``run`` identifies it among the task's runs."""

    def __init__(self, sink: Sink, task: Task, clock: Callable[[], float]) -> None:
        self.sink = sink
        self.task = task
        self.run = task.run
        self.meter = Meter(task.downloaded, clock)
        self.meter.total = task.total

    def progress(self, downloaded: int, total: int | None) -> None:
        """Bytes on disk now; cheap unless an event is due (called for every report)."""
        self.meter.advance(downloaded, total)
        if self.meter.event_due():
            self.sink.report(self)

    def attempt(self) -> None:
        """Another attempt starts."""
        self.sink.count_attempt(self)

    def validator(self, value: str | None, total: int | None) -> None:
        """Remember the server's validator (for If-Range after a restart) and the size."""
        self.sink.save_validator(self, value, total)

    def verifying(self) -> None:
        """Every byte is here and being checked (the state event carries the numbers); a
        later report of the same stage changes nothing."""
        if self.task.state is DownloadState.VERIFYING:
            return
        self.sink.report(self, force=True, publish=False)
        self.sink.verifying(self)

    def log(self, line: str) -> None:
        self.sink.write_log(self.task.id, line)


async def run_fetch(
    ctx: RunContext, settings: Settings, log_path: Path, workers: WorkerPool
) -> Completion:
    """Download a URL or Hugging Face task's file in a worker process, retrying as needed.

    The worker's stderr goes to the task's log file, so a crash leaves its traceback there.
    """
    task = ctx.task
    assert task.path is not None and task.url is not None  # planned with both
    job = Job(
        url=task.extra.get("resolved_url") or task.url,
        dest=task.path,
        expected_size=task.extra.get("expected_size"),
        expected_sha256=task.sha256,
        headers=auth_headers(settings.hf_token or None) if task.source is SourceKind.HF else {},
        if_range=task.extra.get("validator"),
        force=task.force,
        disk_margin=settings.disk_margin_bytes,
        max_bytes=settings.download_max_bytes,
        max_attempts=settings.download_max_attempts,
        stall_timeout_s=settings.download_stall_s,
        backoff_base_s=settings.download_backoff_s,
        backoff_cap_s=BACKOFF_CAP_S,
        niceness=WORKER_NICENESS,
        log_path=str(log_path),
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = await workers.take()
    try:
        try:
            await _send_job(proc, job)
        except ConnectionError:  # the idle worker died while it waited: start a new one
            await stop(proc)
            proc = await spawn()
            await _send_job(proc, job)
        result = await _follow(ctx, proc, workers)
        return Completion(result.size, result.sha256)
    except DownloadError:
        raise  # the worker said so, and waits for its next job (or it has exited)
    except BaseException:
        await stop(proc)  # stopped mid-job (pause, cancel, shutdown): let it go
        raise
    finally:
        workers.refill()


async def _send_job(proc: asyncio.subprocess.Process, job: Job) -> None:
    assert proc.stdin is not None
    proc.stdin.write(job.to_line().encode())
    await proc.stdin.drain()


async def _follow(
    ctx: RunContext, proc: asyncio.subprocess.Process, workers: WorkerPool
) -> FetchResult:
    """Relay the worker's messages to the run until its result or error."""
    assert proc.stdout is not None
    async for raw in proc.stdout:
        message: dict[str, Any] = json.loads(raw)
        kind = message.pop("type")
        if kind == "progress":
            ctx.progress(message["downloaded"], message["total"])
        elif kind == "attempt":
            ctx.attempt()
        elif kind == "validator":
            ctx.validator(message["value"], message["total"])
        elif kind == "stage" and message["name"] == "verifying":
            ctx.verifying()
        elif kind == "log":
            ctx.log(message["line"])
        elif kind == "result":
            workers.give_back(proc)  # it waits for the next job
            message["path"] = Path(message["path"])
            return FetchResult(**message)
        elif kind == "error":
            workers.give_back(proc)
            raise DownloadError(
                message["detail"],
                code=message["code"],
                retryable=message["retryable"],
                upstream_status=message.get("upstream_status"),
            )
    code = await proc.wait()
    raise DownloadError(
        f"the download worker exited with code {code} before it finished",
        code="worker_failed",
        hint="The task's log has the worker's error output.",
    )


async def run_pull(ctx: RunContext, settings: Settings, instances: InstanceRegistry) -> Completion:
    """Pull a task's model through the provider its source names (its kind), retrying
    transient failures with backoff and jitter.

    Cancelling the asyncio task running this closes the stream (pause, cancel, shutdown).
    """
    task = ctx.task
    assert task.model_name is not None and task.instance_id is not None
    provider = registry.get(task.source.value)
    instance = instances.get(provider.kind, task.instance_id).config
    tracker = LayerTracker(floor=task.downloaded, total_floor=task.total or 0)

    def update() -> None:
        with task.lock:
            task.progress_floor = task.progress  # a newly seen layer must not lower it
            task.current_layer = tracker.current_layer
            task.total_layers = tracker.total_layers
            task.current_status = tracker.status
        if tracker.verifying:
            ctx.verifying()
        ctx.progress(tracker.downloaded, tracker.total)

    attempt = 1
    while True:
        ctx.attempt()
        ctx.log(f"attempt {attempt} of {settings.download_max_attempts}")
        try:
            await provider.pull(
                instance,
                task.model_name,
                tracker,
                on_update=update,
                log=ctx.log,
                stall_timeout_s=settings.download_stall_s,
                connect_timeout_s=settings.connect_timeout_ms / 1000,
            )
            if tracker.final:
                with task.lock:
                    task.extra["total_settled"] = True
            ctx.sink.report(ctx, force=True, publish=False)
            return Completion(ctx.meter.downloaded)
        except PullError as exc:
            ctx.log(f"failed: {exc.error_code}: {exc.detail}")
            if not exc.retryable or attempt >= settings.download_max_attempts:
                raise
        delay = backoff_delay(attempt, settings.download_backoff_s, BACKOFF_CAP_S)
        ctx.log(f"retrying in {delay:.1f} s")
        await asyncio.sleep(delay)
        attempt += 1
