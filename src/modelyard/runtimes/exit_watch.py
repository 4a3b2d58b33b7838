"""Waiting for a process that is not our child to end, cheaply.

Only a parent can ``wait`` for a process; a modelyard that adopted a server started by an
earlier modelyard is not its parent. A pidfd (Linux 5.3+) becomes readable when the process
ends, so one blocked ``select`` per process costs nothing while it runs. Without pidfds (an
old kernel, another OS) the process is polled.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

POLL_S = 0.5  # the fallback's period, and how often a pidfd wait looks at ``closed``


def wait_for_exit(pid: int, alive: Callable[[], bool], closed: threading.Event) -> bool:
    """Block until ``pid`` ends (True) or ``closed`` is set (False). ``alive`` says whether the
    PID is still the process meant (create time and command line checked)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = -1
    try:
        # Checked after the pidfd is open: a PID reused before then is not the process meant.
        if not alive():
            return True
        while not closed.is_set():
            if fd >= 0:
                if select.select([fd], [], [], POLL_S)[0]:
                    return True
            elif closed.wait(POLL_S) or not alive():
                return not closed.is_set()
        return False
    finally:
        if fd >= 0:
            os.close(fd)


@dataclass(frozen=True)
class ProcessExit:
    """A managed process ended; told to the exit listeners the moment it is seen."""

    key: str
    pid: int
    exit_code: int | None  # None for an adopted process: only its parent can read the code
    expected: bool  # a stop or restart asked for it (never a failure)


ExitListener = Callable[[ProcessExit], None]


def watch_in_thread(
    key: str,
    pid: int,
    alive: Callable[[], bool],
    closed: threading.Event,
    on_exit: Callable[[], None],
) -> None:
    """Call ``on_exit`` from a daemon thread when ``pid`` ends (not once ``closed`` is set)."""

    def watch() -> None:
        if wait_for_exit(pid, alive, closed):
            on_exit()

    threading.Thread(target=watch, name=f"watch-{key}", daemon=True).start()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
