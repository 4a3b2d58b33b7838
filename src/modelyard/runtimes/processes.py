"""Managed processes (SPEC §3): one per key, with a PID file, a log file and adoption.

A key is ``"<provider>/<instance_id>"``. Starting a key writes a PID file under ``run_dir``
(pid, create time, command line, port, start time) and appends the process's output to a log
file under ``logs_dir``. Children run in their own session, so they outlive a modelyard restart
and a new :class:`ProcessManager` on the same ``run_dir`` adopts them. A PID counts as ours only
when the process exists and its create time and command line match the record, so a PID the
kernel reused for another program is never mistaken for ours. A child that execs another
program (a wrapper script) keeps its PID and create time; its new command line is recorded.

Every method is thread-safe: the API calls them from worker threads.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from modelyard.clock import iso, utcnow
from modelyard.errors import Conflict, InvalidInput, ModelyardError, NotFound, Unavailable
from modelyard.runtimes.exit_watch import ExitListener, ProcessExit, describe_exit, watch_in_thread
from modelyard.runtimes.launch import child_environment, redact_argv
from modelyard.runtimes.log_files import read_tail
from modelyard.runtimes.memory_limit import MemoryLimits
from modelyard.runtimes.process_records import (
    ProcessCheck,
    ProcessRecord,
    check_key,
    file_stem,
    verify,
)

log = logging.getLogger(__name__)

_KILL_WAIT_S = 10.0
_POLL_S = 0.05


@dataclass(frozen=True)
class LaunchSpec:
    """What to start for a key. ``env`` entries are added to what the child keeps of our
    environment (``launch.child_environment``), and override it."""

    key: str
    argv: list[str]
    env: dict[str, str] | None = None
    port: int | None = None
    cwd: Path | None = None
    memory_limit_bytes: int = 0  # 0: none


@dataclass
class _Child:
    """A process this manager spawned; a reaper thread waits for it."""

    popen: subprocess.Popen[bytes]
    exited: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None


def _running(child: _Child) -> bool:
    """Whether our child still runs, even if its PID file was removed behind our back."""
    if child.exited.is_set():
        return False
    try:
        return psutil.Process(child.popen.pid).status() not in (
            psutil.STATUS_ZOMBIE,
            psutil.STATUS_DEAD,
        )
    except psutil.NoSuchProcess:
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process's group when it leads one (as our children do), else the process."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


class ProcessManager:
    """Start, check, adopt and stop managed processes; one process per key."""

    def __init__(
        self, run_dir: Path, logs_dir: Path, memory_limits: MemoryLimits | None = None
    ) -> None:
        self.run_dir = run_dir
        self.memory_limits = memory_limits or MemoryLimits()
        self.logs_dir = logs_dir
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._children: dict[str, _Child] = {}
        self._stopping: set[str] = set()  # keys whose stop is under way
        self._exit_listeners: list[ExitListener] = []
        self._closed = threading.Event()

    # -- paths and records -------------------------------------------------------------------

    def pid_path(self, key: str) -> Path:
        """The PID file of ``key``."""
        return self.run_dir / f"{file_stem(key)}.json"

    def log_path(self, key: str) -> Path:
        """The log file of ``key`` (stdout and stderr of every start, appended)."""
        return self.logs_dir / f"{file_stem(key)}.log"

    def records(self) -> list[ProcessRecord]:
        """Every readable PID file, running or not, sorted by key."""
        found = [self._load(path) for path in self.run_dir.glob("*.json")]
        return sorted((rec for rec in found if rec is not None), key=lambda rec: rec.key)

    def _load(self, path: Path) -> ProcessRecord | None:
        try:
            return ProcessRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable PID file %s: %s", path, exc)
            return None

    def _read_record(self, key: str) -> ProcessRecord | None:
        record = self._load(self.pid_path(key))
        return record if record is not None and record.key == key else None

    def _write_record(self, record: ProcessRecord) -> None:
        # Written whole and renamed into place, so a modelyard killed at any moment leaves the
        # old record or the new one. No fsync: after a power loss the process it names is gone
        # anyway (and its PID is checked against its create time before anything trusts it).
        path = self.pid_path(record.key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(record.to_json())
        os.replace(tmp, path)

    def _remove_record(self, key: str) -> None:
        self.pid_path(key).unlink(missing_ok=True)

    def _append_log(self, key: str, line: str) -> None:
        with open(self.log_path(key), "ab") as fh:
            fh.write(f"[{iso(utcnow())}] modelyard: {line}\n".encode())

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _child(self, key: str, pid: int | None = None) -> _Child | None:
        with self._lock:
            child = self._children.get(key)
        return child if child is not None and (pid is None or child.popen.pid == pid) else None

    # -- the operations ----------------------------------------------------------------------

    def check(self, key: str) -> ProcessCheck:
        """The process layer: PID file, PID verified with psutil, and our child's exit code."""
        record = self._read_record(key)
        child = self._child(key, None if record is None else record.pid)
        exit_code = child.exit_code if child is not None else None
        if record is None:
            return ProcessCheck(None, False, False, exit_code)
        if child is not None and child.exited.is_set():
            ours, alive = False, False
        elif child is not None:
            # Our child, not reaped yet: the kernel cannot have given its PID to another process.
            ours, alive, exit_code = True, _running(child), None
            if alive:
                record = self._follow_exec(record)
        else:
            ours, alive = verify(record)
        # A process found gone was stopped, not crashed, while a stop is under way or when its
        # record was removed or replaced since it was read (a stop or restart ended meanwhile).
        stopping = key in self._stopping or (not alive and self._read_record(key) != record)
        return ProcessCheck(record, ours, alive, exit_code, stopping)

    def _follow_exec(self, record: ProcessRecord) -> ProcessRecord:
        """Record the new command line of a child that exec'd another program (a wrapper
        script does), so that a later modelyard can still verify the process as ours."""
        try:
            actual = psutil.Process(record.pid).cmdline()
        except psutil.Error:
            return record
        lock = self._key_lock(record.key)
        if not actual or actual == record.cmdline or not lock.acquire(blocking=False):
            return record  # unchanged, mid-exec, or a start or stop is under way
        try:
            if self._read_record(record.key) != record:
                return record
            updated = replace(record, cmdline=actual)
            self._write_record(updated)
            return updated
        finally:
            lock.release()

    def start(self, spec: LaunchSpec) -> ProcessRecord:
        """Spawn ``spec`` in its own session with output to the key's log; write the PID file."""
        check_key(spec.key)
        if not spec.argv:
            raise InvalidInput("the launch command is empty", code="empty_command")
        with self._key_lock(spec.key):
            previous = self._child(spec.key)
            if self.check(spec.key).alive or (previous is not None and _running(previous)):
                raise Conflict(
                    f"{spec.key} is already running",
                    code="already_running",
                    hint="Stop it first, or use restart.",
                )
            if previous is not None:
                previous.exited.wait(_KILL_WAIT_S)  # its exit line goes before the new header
            env = child_environment(os.environ, spec.env)
            _check_launchable(spec, env)
            started_at = iso(utcnow()) or ""
            popen = self._spawn(spec, env, started_at)
            child = _Child(popen)
            record = ProcessRecord(
                key=spec.key,
                pid=popen.pid,
                create_time=psutil.Process(popen.pid).create_time(),
                cmdline=list(spec.argv),
                port=spec.port,
                started_at=started_at,
                log_path=str(self.log_path(spec.key)),
                memory_limit_bytes=spec.memory_limit_bytes,
                memory_enforcement=self._confine(spec, popen.pid),
            )
            self._write_record(record)
            with self._lock:
                self._children[spec.key] = child
            threading.Thread(
                target=self._reap, args=(spec.key, child), name=f"reap-{spec.key}", daemon=True
            ).start()
        return record

    def _spawn(
        self, spec: LaunchSpec, env: dict[str, str], started_at: str
    ) -> subprocess.Popen[bytes]:
        command = shlex.join(redact_argv(spec.argv))
        with open(self.log_path(spec.key), "ab") as logfile:
            logfile.write(f"===== {started_at} modelyard starts {spec.key}: {command}\n".encode())
            logfile.flush()
            try:
                return subprocess.Popen(
                    spec.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=logfile,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=spec.cwd,
                    start_new_session=True,
                )
            except (FileNotFoundError, PermissionError) as exc:
                raise _binary_not_found(spec.argv[0]) from exc
            except OSError as exc:
                raise ModelyardError(
                    f"could not start {spec.argv[0]}: {exc.strerror or exc}",
                    code="spawn_failed",
                    hint=f"Check that '{spec.argv[0]} --help' runs in a shell.",
                ) from exc

    def _confine(self, spec: LaunchSpec, pid: int) -> str | None:
        """Put the process under its memory limit; how it is enforced (None: no limit)."""
        if not spec.memory_limit_bytes:
            return None

        def note(reason: str) -> None:
            self._append_log(spec.key, f"the memory watchdog kills process {pid}: {reason}")

        how = self.memory_limits.confine(file_stem(spec.key), pid, spec.memory_limit_bytes, note)
        return how.value

    def _reap(self, key: str, child: _Child) -> None:
        """Wait for our child so it never lingers as a zombie, and note how it ended."""
        code = child.popen.wait()
        how = describe_exit(code)
        if self.memory_limits.oom_killed(file_stem(key)):
            how += " (out of memory: over its memory limit, killed by the kernel)"
        self.memory_limits.release(file_stem(key))
        try:
            self._append_log(key, f"process {child.popen.pid} ended with {how}")
        except OSError as exc:
            log.warning("could not write the exit of %s to its log: %s", key, exc)
        child.exit_code = code  # set after the log line, so a reader of the code finds it there
        child.exited.set()
        self._tell_exit(key, child.popen.pid, code)

    # -- exits as they happen ------------------------------------------------------------------

    def add_exit_listener(self, listener: ExitListener) -> None:
        """Call ``listener`` (in a watcher thread; keep it quick) whenever a process ends."""
        self._exit_listeners.append(listener)

    def _tell_exit(self, key: str, pid: int, code: int | None) -> None:
        # Asked for while a stop is under way, or once the record names another process (a
        # stop or restart finished): the same rule as ProcessCheck.stopping. The stop is
        # looked at first: a stop removes the record before it ends, so a record read after
        # a stop seen not under way is either gone or a crash's.
        stopping = key in self._stopping
        record = self._read_record(key)
        expected = stopping or record is None or record.pid != pid
        event = ProcessExit(key, pid, code, expected)
        for listener in list(self._exit_listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not kill the watcher
                log.exception("exit listener failed for %s", key)

    def _watch_adopted(self, record: ProcessRecord) -> None:
        # Our children are reaped by a thread that knows at once; an adopted one is watched.
        watch_in_thread(
            record.key,
            record.pid,
            lambda: verify(record)[1],
            self._closed,
            lambda: self._tell_exit(record.key, record.pid, None),
        )

    def close(self) -> None:
        """Stop watching adopted processes and memory (they keep running)."""
        self._closed.set()
        self.memory_limits.close()

    def stop(self, key: str, grace_s: float = 10.0) -> bool:
        """SIGTERM the process group, SIGKILL after ``grace_s``; False when nothing ran."""
        with self._key_lock(key):
            check = self.check(key)
            if check.record is None:
                return False
            if not check.alive:
                self._remove_record(key)
                return False
            record = check.record
            self._stopping.add(key)
            try:
                self._terminate(record, grace_s)
                self._remove_record(key)
            finally:
                self._stopping.discard(key)
            return True

    def _terminate(self, record: ProcessRecord, grace_s: float) -> None:
        key = record.key
        self._append_log(key, f"stopping process {record.pid} (SIGTERM)")
        _signal_group(record.pid, signal.SIGTERM)
        if not self._wait_gone(record, grace_s):
            self._append_log(key, f"no exit after {grace_s:g}s, sending SIGKILL")
            _signal_group(record.pid, signal.SIGKILL)
            if not self._wait_gone(record, _KILL_WAIT_S):
                raise Unavailable(
                    f"process {record.pid} of {key} survived SIGKILL",
                    code="stop_failed",
                    hint="It is stuck in the kernel (state D); check it with 'ps' and retry.",
                )

    def _wait_gone(self, record: ProcessRecord, timeout: float) -> bool:
        child = self._child(record.key, record.pid)
        if child is not None:
            return child.exited.wait(timeout)
        # Not our child (adopted): poll, since only its parent (or init) can reap it.
        deadline = time.monotonic() + timeout
        while verify(record)[1]:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    def adopt(self) -> list[ProcessRecord]:
        """At modelyard start: the recorded processes that are verifiably still ours and running.

        Stale PID files stay (their log tail explains the exit); ``forget`` drops them.
        """
        adopted = [record for record in self.records() if self.check(record.key).alive]
        for record in adopted:
            if self._child(record.key, record.pid) is None:
                self._watch_adopted(record)
        return adopted

    def forget(self, key: str) -> None:
        """Drop the PID file of a process that is no longer running."""
        with self._key_lock(key):
            if self.check(key).alive:
                raise Conflict(
                    f"{key} is still running", code="still_running", hint="Stop it instead."
                )
            self._remove_record(key)

    def log_tail(self, key: str, lines: int = 20) -> list[str]:
        """The last ``lines`` lines of the key's log (empty when there is no log)."""
        if lines <= 0:
            return []
        try:
            return read_tail(self.log_path(key), lines)
        except FileNotFoundError:
            return []


def _check_launchable(spec: LaunchSpec, env: dict[str, str]) -> None:
    program = spec.argv[0]
    search_path = env.get("PATH", os.defpath)
    if shutil.which(program, path=search_path) is None:
        raise _binary_not_found(program)
    if spec.cwd is not None and not spec.cwd.is_dir():
        raise NotFound(
            f"working directory {spec.cwd} does not exist",
            code="directory_not_found",
            hint="Create the directory or fix the instance's launch settings.",
        )


def _binary_not_found(program: str) -> NotFound:
    where = "does not exist or is not executable" if "/" in program else "is not on PATH"
    return NotFound(
        f"the program {program!r} {where}",
        code="binary_not_found",
        hint=f"Install {os.path.basename(program)} or configure the full path to it.",
    )
