"""Log files of managed processes and downloads: reading their tail (filtered by level and
text), following them, rotating them by size and deleting them by age."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

log = logging.getLogger(__name__)
_TAIL_BLOCK = 16 * 1024
FAST_CHECK_S = 0.25  # the next sweep after one that rotated something


def read_tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path`` (FileNotFoundError when it does not exist)."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        start, data = end, b""
        # Read backwards in blocks until there is one more newline than lines wanted, so a
        # partial first line is never returned.
        while start > 0 and data.count(b"\n") <= lines:
            start = max(0, start - _TAIL_BLOCK * max(1, lines // 64))
            fh.seek(start)
            data = fh.read(end - start)
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


@dataclass(frozen=True)
class LogLimits:
    """How big a log may grow, how many rotated copies stay, and for how long."""

    max_bytes: int
    keep: int
    max_age_s: float


def rotated(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def rotate(path: Path, keep: int, max_bytes: int) -> bool:
    """Copy and truncate ``path`` (shifting ``.1`` … ``.keep``); False when it vanished. The
    copy keeps the newest ``max_bytes`` (from a line's start): a process that wrote far more
    between two checks does not make a copy larger than the limit.

    Copy-and-truncate rather than rename: a managed child that outlives modelyard keeps its
    file open and writes on with O_APPEND, so after the truncation its lines land at the start
    of the same file instead of in a renamed one nobody caps. Lines written between the copy
    and the truncation are lost, which logrotate's ``copytruncate`` accepts too.
    """
    try:
        with open(path, "rb") as src:
            for n in range(keep, 1, -1):
                older = rotated(path, n - 1)
                if older.exists():
                    os.replace(older, rotated(path, n))
            if keep > 0:
                size = src.seek(0, os.SEEK_END)
                src.seek(max(0, size - max_bytes))
                if size > max_bytes:
                    src.readline()  # the rest of a line cut by the limit
                with open(rotated(path, 1), "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
            os.truncate(path, 0)
        return True
    except FileNotFoundError:
        return False


def sweep(
    directory: Path, limits: LogLimits, *, expire_current: bool, now: float | None = None
) -> list[Path]:
    """Rotate the ``.log`` files of ``directory`` over their size; delete rotated copies older
    than the age limit, and (``expire_current``: download logs, whose task has ended when
    nothing wrote for that long) the logs themselves. An instance's log is never deleted:
    its process may be quiet but running. The rotated files, for the caller's log."""
    now = time.time() if now is None else now
    done: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return done
    for entry in entries:
        if not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        try:
            stat = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        current = path.suffix == ".log"
        if now - stat.st_mtime > limits.max_age_s and (expire_current or not current):
            path.unlink(missing_ok=True)
        elif (
            current
            and stat.st_size > limits.max_bytes
            and rotate(path, limits.keep, limits.max_bytes)
        ):
            done.append(path)
        elif not current and _rotation_number(path) > limits.keep:
            path.unlink(missing_ok=True)  # the keep count was lowered
    return done


def _rotation_number(path: Path) -> int:
    suffix = path.suffix.lstrip(".")
    return int(suffix) if suffix.isdigit() and path.stem.endswith(".log") else 0


class LogKeeper:
    """Sweeps the instance logs and the download logs every ``check_s`` seconds, in a thread
    (a sweep is a directory listing and a stat per file, nothing on any request's path)."""

    def __init__(self, logs_dir: Path, limits: LogLimits, check_s: float) -> None:
        self.logs_dir = logs_dir
        self.limits = limits
        self.check_s = check_s
        self._task: asyncio.Task[None] | None = None

    def sweep_now(self) -> list[Path]:
        done = sweep(self.logs_dir, self.limits, expire_current=False)
        return done + sweep(self.logs_dir / "downloads", self.limits, expire_current=True)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="log-keeper")

    async def _run(self) -> None:
        while True:
            rotated_some = False
            try:
                for path in await asyncio.to_thread(self.sweep_now):
                    rotated_some = True
                    log.info("rotated %s (over %d bytes)", path, self.limits.max_bytes)
            except OSError as exc:  # a full or read-only disk: try again at the next round
                log.warning("log rotation failed: %s", exc)
            # A log that needed rotating may be written fast: look again soon, until quiet.
            await asyncio.sleep(min(self.check_s, FAST_CHECK_S) if rotated_some else self.check_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class LogLevel(StrEnum):
    """How serious a log line looks; a filter keeps its level and the ones above."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


_RANK = {level: n for n, level in enumerate(LogLevel)}
# llama.cpp, Ollama (Go's slog: level=WARN) and modelyard's own lines name their level in a
# word; a process that ended by a signal or with a code other than 0 is an error too.
_ERROR = re.compile(
    r"\b(error|fatal|panic|critical|failed|failure|exception|traceback)\b|level=error|"
    r"ended with (signal|exit code [1-9])|out of memory",
    re.IGNORECASE,
)
_WARNING = re.compile(r"\bwarn(ing)?\b|level=warn|memory watchdog kills", re.IGNORECASE)
_DEBUG = re.compile(r"\bdebug\b|level=debug", re.IGNORECASE)
SCAN_LINES = 20_000  # a filtered read looks this far back for its matches


def level_of(line: str) -> LogLevel:
    if _ERROR.search(line):
        return LogLevel.ERROR
    if _WARNING.search(line):
        return LogLevel.WARNING
    if _DEBUG.search(line):
        return LogLevel.DEBUG
    return LogLevel.INFO


def matching(lines: list[str], level: LogLevel | None, text: str) -> list[str]:
    """The lines at ``level`` or above that contain ``text`` (case-insensitive)."""
    needle = text.lower()
    floor = _RANK[level] if level is not None else 0
    return [
        line
        for line in lines
        if (not needle or needle in line.lower()) and _RANK[level_of(line)] >= floor
    ]


def read_matching(path: Path, lines: int, level: LogLevel | None, text: str) -> list[str]:
    """The last ``lines`` lines that match, among the last ``SCAN_LINES`` of the file."""
    if level is None and not text:
        return read_tail(path, lines)
    return matching(read_tail(path, max(lines, SCAN_LINES)), level, text)[-lines:]


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def follow(path: Path, offset: int, poll_s: float = 0.25) -> AsyncGenerator[list[str]]:
    """The lines added to ``path`` after ``offset``, a batch at a time (only whole lines). A
    file that shrank was rotated (copied and truncated): reading starts again at its start."""
    partial = b""
    while True:
        await asyncio.sleep(poll_s)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if size < offset:
            offset, partial = 0, b""
        if size == offset:
            continue
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = partial + fh.read(min(size - offset, 4 * 1024 * 1024))
        offset += len(data) - len(partial)
        complete, _, partial = data.rpartition(b"\n")
        if complete:
            yield complete.decode("utf-8", errors="replace").split("\n")
