"""What a PID file holds, and whether the PID it names is still that process.

A PID counts as ours only when the process exists and its create time and command line match
the record, so a PID the kernel reused for another program is never mistaken for ours.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

import psutil

from modelyard.errors import InvalidInput
from modelyard.runtimes.launch import redact_argv

# /proc/stat's boot time can move by a second after a clock adjustment, and psutil derives the
# create time from it; the command line check guards identity within that second.
_CREATE_TIME_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class ProcessRecord:
    """What a PID file holds (JSON)."""

    key: str
    pid: int
    create_time: float
    cmdline: list[str]
    port: int | None
    started_at: str
    log_path: str
    memory_limit_bytes: int = 0
    memory_enforcement: str | None = None  # cgroup-v2, cgroup-v1 or watchdog

    def to_json(self) -> str:
        """The PID file's content."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProcessRecord:
        """Parse a PID file's JSON object; ``ValueError`` when it is not a record."""
        try:
            port = data.get("port")
            return cls(
                key=str(data["key"]),
                pid=int(data["pid"]),
                create_time=float(data["create_time"]),
                cmdline=[str(arg) for arg in data["cmdline"]],
                port=None if port is None else int(port),
                started_at=str(data["started_at"]),
                log_path=str(data["log_path"]),
                memory_limit_bytes=int(data.get("memory_limit_bytes") or 0),
                memory_enforcement=data.get("memory_enforcement"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a process record: {exc!r}") from exc

    def display_command(self) -> str:
        """The command line for people and logs, with secrets (API keys) masked."""
        return shlex.join(redact_argv(self.cmdline))


@dataclass(frozen=True)
class ProcessCheck:
    """The process layer of a managed instance's status."""

    record: ProcessRecord | None  # None: no PID file
    pid_exists: bool  # the PID exists AND its create time and command line match
    alive: bool  # ours and running (not a zombie)
    exit_code: int | None  # when we spawned it and it ended; negative: killed by that signal
    stopping: bool = False  # a stop is under way (an exit now is not a crash)


def check_key(key: str) -> str:
    if not key or len(key) > 200 or any(ord(ch) < 32 for ch in key):
        raise InvalidInput(
            f"{key!r} is not a process key",
            code="invalid_key",
            hint="Use '<provider>/<instance_id>', e.g. 'llamacpp/qwen-small'.",
        )
    return key


def file_stem(key: str) -> str:
    """A safe, reversible file name for a key ('/' and other specials percent-encoded)."""
    stem = quote(check_key(key), safe="")
    return "%2E" + stem[1:] if stem.startswith(".") else stem


def _same_command(recorded: list[str], actual: list[str]) -> bool:
    """Exact match, tolerating only argv[0] spelled as another path to the same program name."""
    if actual == recorded:
        return True
    return (
        len(actual) == len(recorded) > 0
        and actual[1:] == recorded[1:]
        and os.path.basename(actual[0]) == os.path.basename(recorded[0])
    )


def verify(record: ProcessRecord) -> tuple[bool, bool]:
    """(ours, alive) for the record's PID, per create time and command line."""
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > _CREATE_TIME_TOLERANCE_S:
            return False, False
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return True, False
        try:
            cmdline: list[str] = proc.cmdline()
        except psutil.AccessDenied:
            cmdline = []
        # Unreadable (hidepid) or empty (for an instant during exec): the create time has to do.
        if cmdline and not _same_command(record.cmdline, cmdline):
            return False, False
        return True, True
    except psutil.ZombieProcess:
        return True, False
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False, False
