"""URL downloads in a process of their own: ``python -m modelyard.downloads.worker``.

Why a process: a download at full speed keeps a core busy hashing and another moving bytes.
In the server's process those threads would share its GIL with the event loop, and a
low-priority thread holding the GIL while the scheduler has parked it stalls every API
request (docs/BENCHMARKS.md). In a process of its own, at a lower priority, it takes only
the CPU nothing else wants.

A worker does one job after another, so that Python and its imports start once, not once per
download (``worker_pool``). Protocol, JSON lines: the server writes a ``Job`` to stdin; the worker
writes ``progress``, ``attempt``, ``validator``, ``stage`` and ``log`` messages to stdout,
then one ``result`` or ``error``, and waits for the next job. Stdin closing (the server says
stop, or it exited, even by SIGKILL) cancels the job in hand and ends the worker.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from modelyard.downloads.http_engine import DownloadError, FetchRequest, fetch_with_retries
from modelyard.errors import ModelyardError

PROGRESS_INTERVAL_S = 0.05  # the server paces events itself; this only bounds pipe traffic


@dataclass
class Job:
    """What the server asks a worker to do."""

    url: str
    dest: str
    expected_size: int | None = None
    expected_sha256: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    if_range: str | None = None
    force: bool = False
    disk_margin: int = 0
    max_bytes: int | None = None
    max_attempts: int = 5
    stall_timeout_s: float = 30.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    niceness: int = 0
    log_path: str | None = None  # where the worker's stderr goes (the task's log file)

    def to_line(self) -> str:
        return json.dumps(asdict(self)) + "\n"


class Reporter:
    """Writes the worker's messages to stdout, one JSON object per line."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._last_progress = 0.0
        self._pending: tuple[int, int | None] | None = None

    def send(self, kind: str, **data: Any) -> None:
        self.flush_progress()
        self._write({"type": kind, **data})

    def progress(self, downloaded: int, total: int | None) -> None:
        now = time.monotonic()
        self._pending = (downloaded, total)
        if now - self._last_progress >= PROGRESS_INTERVAL_S or downloaded == total:
            self._last_progress = now
            self.flush_progress()

    def flush_progress(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._write({"type": "progress", "downloaded": pending[0], "total": pending[1]})

    def _write(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._out.write(json.dumps(message) + "\n")
            self._out.flush()


def read_jobs(stdin: TextIO, jobs: queue.Queue[Job | None], closed: threading.Event) -> None:
    """Queue the jobs stdin brings; when it closes, cancel the job in hand and end."""
    for line in stdin:
        jobs.put(Job(**json.loads(line)))
    closed.set()
    jobs.put(None)


def stderr_to(path: str | None) -> None:
    """Send stderr to a job's log file (a crash leaves its traceback there), or nowhere
    between jobs, so that an idle worker holds no task's file open."""
    sys.stderr.flush()
    fd = os.open(path or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, sys.stderr.fileno())
    os.close(fd)


def set_niceness(niceness: int) -> None:
    """Before the job's threads start: the sha256 and writer threads inherit it."""
    if os.getpriority(os.PRIO_PROCESS, 0) == niceness:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except PermissionError:  # a lower niceness than before needs privileges
        print(f"worker: keeps niceness {os.getpriority(os.PRIO_PROCESS, 0)}", file=sys.stderr)


def run(job: Job, reporter: Reporter, cancel: threading.Event) -> None:
    """Do the job, reporting as it goes; ends with exactly one result or error message."""
    req = FetchRequest(
        url=job.url,
        dest=Path(job.dest),
        expected_size=job.expected_size,
        expected_sha256=job.expected_sha256,
        headers=job.headers,
        if_range=job.if_range,
        force=job.force,
        disk_margin=job.disk_margin,
        max_bytes=job.max_bytes,
    )
    try:
        result = fetch_with_retries(
            req,
            max_attempts=job.max_attempts,
            cancel=cancel,
            on_progress=reporter.progress,
            on_attempt=lambda n: reporter.send("attempt", number=n),
            on_validator=lambda v, total: reporter.send("validator", value=v, total=total),
            on_stage=lambda name: reporter.send("stage", name=name),
            log=lambda line: reporter.send("log", line=line),
            stall_timeout_s=job.stall_timeout_s,
            backoff_base_s=job.backoff_base_s,
            backoff_cap_s=job.backoff_cap_s,
        )
    except DownloadError as exc:
        reporter.send(
            "error",
            code=exc.error_code,
            detail=exc.detail,
            retryable=exc.retryable,
            upstream_status=exc.upstream_status,
        )
        return
    except ModelyardError as exc:
        reporter.send("error", code=exc.error_code, detail=exc.detail, retryable=False)
        return
    reporter.send(
        "result",
        path=str(result.path),
        size=result.size,
        sha256=result.sha256,
        resumed_from=result.resumed_from,
        restarted=result.restarted,
    )


def main() -> None:
    jobs: queue.Queue[Job | None] = queue.Queue()
    closed = threading.Event()
    threading.Thread(target=read_jobs, args=(sys.stdin, jobs, closed), daemon=True).start()
    while (job := jobs.get()) is not None:
        stderr_to(job.log_path)
        set_niceness(job.niceness)
        run(job, Reporter(sys.stdout), closed)
        stderr_to(None)
        if closed.is_set():
            return


if __name__ == "__main__":
    main()
