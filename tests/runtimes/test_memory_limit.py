"""Memory limits of managed processes: the kernel's (a cgroup) where the machine lets modelyard
write one, the watchdog otherwise; a process over its limit ends, and its log says why."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

from modelyard.instance_config import InstanceConfig, RestartPolicy
from modelyard.runtimes.memory_limit import Enforcement, MemoryLimits
from modelyard.runtimes.processes import LaunchSpec, ProcessManager
from tests.support.app_server import RunningApp
from tests.support.servers import free_port
from tests.support.waiting import wait_until

LIMIT = 96 * 2**20
# Fills 300 MiB (every page written), then waits: over any limit below that, for good.
GREEDY = [
    sys.executable,
    "-c",
    "import time; data = b'x' * (300 * 2**20); print('filled', flush=True); time.sleep(60)",
]
MODEST = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"]


def ended(manager: ProcessManager, key: str) -> bool:
    return manager.check(key).exit_code is not None


def test_the_machine_limit_ends_a_greedy_process(tmp_path: Path) -> None:
    manager = ProcessManager(tmp_path / "run", tmp_path / "logs")
    try:
        greedy = manager.start(LaunchSpec("llamacpp/greedy", GREEDY, memory_limit_bytes=LIMIT))
        manager.start(LaunchSpec("llamacpp/modest", MODEST, memory_limit_bytes=LIMIT))
        assert greedy.memory_limit_bytes == LIMIT
        assert greedy.memory_enforcement == manager.memory_limits.method.value
        wait_until(lambda: ended(manager, "llamacpp/greedy"), "the greedy process's end")
        assert manager.check("llamacpp/greedy").exit_code == -signal.SIGKILL
        tail = "\n".join(manager.log_tail("llamacpp/greedy", 5))
        if manager.memory_limits.method is Enforcement.WATCHDOG:
            assert "the memory watchdog kills process" in tail
        else:
            assert "out of memory: over its memory limit, killed by the kernel" in tail
        assert "filled" not in tail.splitlines()  # killed before it could say so
        assert manager.check("llamacpp/modest").alive  # the same limit, within it
        assert manager.stop("llamacpp/modest", grace_s=5)
    finally:
        manager.close()


def test_the_watchdog_holds_the_limit_without_a_cgroup(tmp_path: Path) -> None:
    limits = MemoryLimits(cgroup_root=tmp_path / "no-cgroups")
    assert limits.method is Enforcement.WATCHDOG and limits.base is None
    manager = ProcessManager(tmp_path / "run", tmp_path / "logs", memory_limits=limits)
    try:
        record = manager.start(LaunchSpec("llamacpp/greedy", GREEDY, memory_limit_bytes=LIMIT))
        assert record.memory_enforcement == "watchdog"
        wait_until(lambda: ended(manager, "llamacpp/greedy"), "the watchdog's kill")
        tail = "\n".join(manager.log_tail("llamacpp/greedy", 5))
        assert f"over its limit of {LIMIT}" in tail
        assert tail.splitlines()[-1].endswith("ended with signal SIGKILL")
    finally:
        manager.close()


def test_the_status_says_how_the_limit_is_held_and_policy_restarts(
    modelyard: Callable[..., RunningApp],
) -> None:
    cfg = InstanceConfig(
        provider="llamacpp",
        id="greedy",
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        command=GREEDY,
        memory_limit_bytes=LIMIT,
        restart=RestartPolicy.ON_FAILURE,
    )
    app = modelyard([cfg], restart_backoff_s=0.1, crash_loop_exits=1)
    sub = app.services.bus.subscribe(["instance.*"])
    started = app.http.post("/api/providers/llamacpp/instances/greedy/start").json()
    assert started["memory_limit_bytes"] == LIMIT
    assert started["memory_enforcement"] == app.services.processes.memory_limits.method.value
    kinds: list[str] = []

    def looped() -> bool:
        while (event := sub.get_nowait()) is not None:
            kinds.append(event.type)
        return "instance.crash_loop" in kinds

    wait_until(looped, "the out-of-memory crash loop")
    assert kinds.count("instance.exited") == 2  # killed, restarted once, killed again
    status = app.http.get(
        "/api/providers/llamacpp/instances/greedy/status", params={"refresh": True}
    ).json()
    assert status["reason_code"] == "crash_loop" and status["restarts"] == 1
    assert "memory" in status["hint"]
