"""The restart policy of managed instances, as Docker and systemd have it.

A failure is any exit modelyard did not ask for: a crash, an out-of-memory kill, a ``kill``
behind modelyard's back, even exit code 0. A stop, a restart or an eviction asks for the exit
and never triggers a restart. The process manager tells of an exit the moment it is seen (its
reaper thread, or an adopted process's pidfd), so the supervisor re-checks the instance at
once, announces ``instance.exited`` and, as the policy says, starts it again after a backoff
that doubles with each exit within the crash-loop window, up to a cap. Too many exits within
the window is a crash loop: logged as ``ERROR crash_loop`` with the log's tail, announced, and
for ``on-failure`` the end of restarting until someone starts the instance by hand.

A server of one model the scheduler counts (a local file's, a managed llama.cpp server) is
restarted through the scheduler (``Relauncher``, ``gateway/restarts.py``): the restart is a
load decided by the one owner of what is loaded, within the memory budget, so its view and
what runs agree. When the budget does not allow it, it is not started, and the log says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from modelyard.config import Settings
from modelyard.errors import InsufficientResources, ModelyardError
from modelyard.events import (
    INSTANCE_CRASH_LOOP,
    INSTANCE_EXITED,
    EventBus,
    InstanceCrashLoop,
    InstanceExited,
)
from modelyard.instance_config import RestartPolicy
from modelyard.metrics import Metrics
from modelyard.runtimes.control import InstanceControl
from modelyard.runtimes.exit_watch import ProcessExit
from modelyard.runtimes.health import HealthChecker
from modelyard.runtimes.instances import Instance, InstanceRegistry
from modelyard.runtimes.processes import ProcessManager

log = logging.getLogger(__name__)

_TAIL_LINES = 20


class Relauncher(Protocol):
    """Restarts through the scheduler (``gateway/restarts.py``)."""

    def owns(self, instance: Instance) -> bool:
        """Whether ``instance`` serves a model the scheduler counts (then it restarts it)."""
        ...

    def wanted(self, instance: Instance) -> bool:
        """Whether its model should run again: not when the scheduler unloaded it since, for
        another reason than its death or a failed load (evicted, its TTL, a stop)."""
        ...

    async def relaunch(self, instance: Instance) -> None:
        """Start ``instance``'s model again as a load of the scheduler. Raises
        ``InsufficientResources`` when the memory budget does not allow it, another
        ``ModelyardError`` when it fails."""
        ...


class Supervisor:
    """Acts on unexpected exits of managed processes as each instance's policy says."""

    def __init__(
        self,
        settings: Settings,
        instances: InstanceRegistry,
        processes: ProcessManager,
        health: HealthChecker,
        control: InstanceControl,
        bus: EventBus,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.instances = instances
        self.processes = processes
        self.health = health
        self.control = control
        self.bus = bus
        self.metrics = metrics
        self.ledger = health.restarts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[str, asyncio.Task[None]] = {}
        self.relauncher: Relauncher | None = None  # set once the scheduler exists
        processes.add_exit_listener(self._told_in_thread)

    def policy(self, instance: Instance) -> RestartPolicy:
        return instance.config.restart or self.settings.restart

    def start(self) -> None:
        """Begin acting on exits; an ``always`` instance that ended while modelyard was not
        running is started again now (as Docker does at its daemon's start)."""
        self._loop = asyncio.get_running_loop()
        for instance in self.instances.list():
            if not instance.config.managed or instance.config.container is not None:
                continue  # a container's restarts are Docker's
            if self.policy(instance) not in (RestartPolicy.ALWAYS, RestartPolicy.UNLESS_STOPPED):
                continue
            check = self.processes.check(instance.key)
            if check.record is not None and not check.alive and not check.stopping:
                self._exited(ProcessExit(instance.key, check.record.pid, None, expected=False))

    def _told_in_thread(self, event: ProcessExit) -> None:
        loop = self._loop
        if loop is not None and not event.expected:
            with contextlib.suppress(RuntimeError):  # the loop closed: modelyard is exiting
                loop.call_soon_threadsafe(self._exited, event)

    def _exited(self, event: ProcessExit) -> None:
        instance = self.instances.find(event.key)
        if instance is None or not instance.config.managed:
            return
        self.health.poke(instance)  # the status shows the exit now, not at the next round
        cfg = instance.config
        policy = self.policy(instance)
        exits = self.ledger.exited(event.key, self.settings.crash_loop_window_s)
        looping = exits > self.settings.crash_loop_exits
        tail = self.processes.log_tail(event.key, _TAIL_LINES)
        gives_up = policy is RestartPolicy.NO or (looping and policy is RestartPolicy.ON_FAILURE)
        delay = min(
            self.settings.restart_backoff_s * 2 ** (exits - 1), self.settings.restart_backoff_max_s
        )
        self.metrics.instance_exits.labels(cfg.provider, cfg.id).inc()
        self.bus.publish(
            INSTANCE_EXITED,
            InstanceExited(
                provider=cfg.provider,
                instance_id=cfg.id,
                pid=event.pid,
                exit_code=event.exit_code,
                restart=policy.value,
                restart_in_s=None if gives_up else delay,
                log_tail=tail,
            ),
        )
        if looping and policy is not RestartPolicy.NO and self.ledger.looping(event.key):
            log.error(
                "crash_loop %s: %d unexpected exits within %g s; %s. Last log lines:\n%s",
                event.key,
                exits,
                self.settings.crash_loop_window_s,
                "no more restarts until it is started by hand" if gives_up else "restarting",
                "\n".join(tail),
            )
            self.bus.publish(
                INSTANCE_CRASH_LOOP,
                InstanceCrashLoop(
                    provider=cfg.provider,
                    instance_id=cfg.id,
                    exits=exits,
                    window_s=self.settings.crash_loop_window_s,
                    gave_up=gives_up,
                    log_tail=tail,
                ),
            )
        if gives_up:
            return
        previous = self._pending.pop(event.key, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(self._restart(instance, event.pid, delay))
        self._pending[event.key] = task
        task.add_done_callback(lambda t: self._pending.pop(event.key, None) if t is task else None)

    async def _restart(self, instance: Instance, pid: int, delay: float) -> None:
        await asyncio.sleep(delay)
        key = instance.key
        check = await asyncio.to_thread(self.processes.check, key)
        relauncher = self.relauncher if self.relauncher and self.relauncher.owns(instance) else None
        if relauncher is not None:
            # The scheduler may have cleaned up what was left of it (a local file's server is
            # removed then): its view says whether the model should run again.
            if check.alive or not relauncher.wanted(instance):
                return
        elif check.alive or check.record is None or check.record.pid != pid:
            return  # started or stopped by someone meanwhile: theirs to decide
        elif self.instances.find(key) is None:
            return
        self.ledger.restarted(key)
        self.metrics.instance_restarts.labels(instance.config.provider, instance.config.id).inc()
        log.warning("restarting %s (restart %d by policy)", key, self.ledger.restarts(key))
        try:
            if relauncher is not None:
                await relauncher.relaunch(instance)
            else:
                await self.control.launch(instance, by_policy=True)
        except InsufficientResources as exc:  # no room within the budget: not started
            log.error("%s was not restarted: %s %s", key, exc.detail, exc.hint or "")
        except TimeoutError:
            log.error("%s was not restarted: no room within the memory budget in time", key)
        except ModelyardError as exc:
            # The start failed (the port taken, the binary gone): another failure, same rules.
            log.error("restart of %s failed: %s", key, exc)
            self._exited(ProcessExit(key, pid, None, expected=False))

    async def close(self) -> None:
        self._loop = None
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
