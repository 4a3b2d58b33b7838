"""A memory limit per managed process: a cgroup where the machine lets modelyard write one,
otherwise a watchdog.

A cgroup's limit is enforced by the kernel (its OOM killer ends the process the moment it goes
over); modelyard makes ``modelyard/<key>`` below its own cgroup of the memory controller
(cgroup v2's unified tree, or v1's ``memory`` hierarchy), so the machine's limits on modelyard
still hold its children, writes the limit, and moves the process in right after it
is spawned, before it has loaded a model. Without a writable controller (no root, a container
without delegation) a watchdog thread samples the process tree's resident memory every
``WATCHDOG_S`` and kills the group when it is over: a spike between two samples goes unseen,
which is why the status says which of the two is in force.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
WATCHDOG_S = 0.5


class Enforcement(StrEnum):
    """How a process's memory limit is held."""

    CGROUP_V2 = "cgroup-v2"
    CGROUP_V1 = "cgroup-v1"
    WATCHDOG = "watchdog"


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per controller ("" for v2's unified tree), from /proc/self/cgroup."""
    found: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0  # ended between listing and reading


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


class MemoryLimits:
    """Puts processes under a memory limit; thread-safe."""

    def __init__(self, cgroup_root: Path = CGROUP_ROOT) -> None:
        self.base, self.method = self._find(cgroup_root)
        self._closed = threading.Event()

    @staticmethod
    def _find(root: Path) -> tuple[Path | None, Enforcement]:
        own = _own_cgroups()
        v1 = root / "memory" / own.get("memory", "/").lstrip("/")
        if "memory" in own and _writable_dir(v1) and (v1 / "cgroup.procs").exists():
            return v1 / "modelyard", Enforcement.CGROUP_V1
        v2 = root / own.get("", "/").lstrip("/")
        controllers = v2 / "cgroup.controllers"
        memory = controllers.is_file() and "memory" in controllers.read_text().split()
        if memory and _writable_dir(v2):
            return v2 / "modelyard", Enforcement.CGROUP_V2
        return None, Enforcement.WATCHDOG

    def _group(self, stem: str) -> Path:
        assert self.base is not None
        return self.base / stem

    def confine(
        self, stem: str, pid: int, limit_bytes: int, on_kill: Callable[[str], None]
    ) -> Enforcement:
        """Hold ``pid`` (and the children it starts) to ``limit_bytes``; how it is held."""
        if self.base is not None:
            self.release(stem)  # a group left by an earlier modelyard: its counts are not ours
            try:
                group = self._group(stem)
                if self.method is Enforcement.CGROUP_V2:
                    self.base.mkdir(exist_ok=True)
                    # Children of a v2 group get the memory controller only when it is enabled
                    # (refused where modelyard's own group has processes: the watchdog then).
                    (self.base.parent / "cgroup.subtree_control").write_text("+memory")
                    (self.base / "cgroup.subtree_control").write_text("+memory")
                    group.mkdir(exist_ok=True)
                    (group / "memory.max").write_text(str(limit_bytes))
                    (group / "memory.swap.max").write_text("0")
                else:
                    group.mkdir(parents=True, exist_ok=True)
                    (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
                    swap = group / "memory.memsw.limit_in_bytes"  # RAM + swap, when accounted
                    if swap.exists():
                        swap.write_text(str(limit_bytes))
                (group / "cgroup.procs").write_text(str(pid))
                return self.method
            except OSError as exc:
                log.warning("no cgroup for %s (%s): the memory watchdog holds it", stem, exc)
        self._watch(pid, limit_bytes, on_kill)
        return Enforcement.WATCHDOG

    def oom_killed(self, stem: str) -> bool:
        """Whether the kernel killed a process of the group for going over its limit."""
        if self.base is None:
            return False
        group = self._group(stem)
        try:
            if self.method is Enforcement.CGROUP_V2:
                events = (group / "memory.events").read_text().split()
                pairs = dict(zip(events[::2], events[1::2], strict=False))
                return int(pairs.get("oom_kill", "0")) > 0
            lines = (group / "memory.oom_control").read_text().splitlines()
            pairs = dict(line.split(" ", 1) for line in lines if " " in line)
            return int(pairs.get("oom_kill", "0")) > 0
        except (OSError, ValueError):
            return False

    def release(self, stem: str) -> None:
        """Remove the group of an ended process (the kernel refuses while it has members)."""
        if self.base is not None:
            with contextlib.suppress(OSError):
                self._group(stem).rmdir()

    def _watch(self, pid: int, limit_bytes: int, on_kill: Callable[[str], None]) -> None:
        def watch() -> None:
            try:
                root = psutil.Process(pid)
                while not self._closed.wait(WATCHDOG_S):
                    procs = [root, *root.children(recursive=True)]
                    rss = sum(_rss(proc) for proc in procs)
                    if rss > limit_bytes:
                        on_kill(f"using {rss} bytes, over its limit of {limit_bytes}")
                        os.killpg(pid, signal.SIGKILL)
                        return
            except (psutil.NoSuchProcess, ProcessLookupError):
                return  # it ended

        threading.Thread(target=watch, name=f"memory-watch-{pid}", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
