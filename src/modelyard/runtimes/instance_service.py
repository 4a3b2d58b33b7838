"""What can be done to instances, one method per request: add, edit and remove them (stopping
a running managed one, forgetting its status, announcing ``provider.removed``), their status,
history and log, and starting or stopping their process. A start, restart or stop of a server
of one model the scheduler counts is a load or an unload of the scheduler
(``ScheduledInstances``), so what it shows loaded and counts in memory is what runs: a start
answers once the process is launched, and is counted from then on."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelyard.errors import Conflict, ModelyardError, NotFound
from modelyard.events import PROVIDER_REMOVED, EventBus, ProviderRemoved
from modelyard.instance_config import ContainerConfig
from modelyard.runtimes.containers import container_name
from modelyard.runtimes.control import InstanceControl
from modelyard.runtimes.health import HealthChecker, ProviderStatus
from modelyard.runtimes.instances import (
    Instance,
    InstanceChanges,
    InstanceFields,
    InstanceOrigin,
    InstanceRegistry,
    InstanceView,
)
from modelyard.runtimes.log_files import SCAN_LINES, LogLevel, matching, read_matching
from modelyard.runtimes.processes import ProcessManager


@dataclass(frozen=True)
class InstanceLog:
    """The tail of a managed instance's log (external ones have none)."""

    path: str
    lines: list[str]


class ScheduledInstances(Protocol):
    """Starts and stops of single-model servers through the scheduler
    (``gateway/restarts.py``)."""

    def owns(self, instance: Instance) -> bool:
        """Whether ``instance`` serves a model the scheduler counts."""
        ...

    async def start(self, instance: Instance) -> None:
        """Load its model (admitted by memory, idle models evicted for it); return once its
        process is launched."""
        ...

    async def stop(self, instance: Instance) -> None:
        """Unload its model, once the requests it answers are done."""
        ...


class InstanceService:
    def __init__(
        self,
        instances: InstanceRegistry,
        processes: ProcessManager,
        health: HealthChecker,
        control: InstanceControl,
        bus: EventBus,
    ) -> None:
        self.instances = instances
        self.processes = processes
        self.health = health
        self.control = control
        self.bus = bus
        self.scheduled: ScheduledInstances | None = None  # set once the scheduler exists

    def views(self) -> list[InstanceView]:
        return [i.view() for i in self.instances.list()]

    def create(self, provider: str, fields: InstanceFields) -> InstanceView:
        """Add an instance (``POST /api/providers/{provider}/instances``); checked soon."""
        instance = self.instances.create(provider, fields)
        self.health.poke(instance)
        return instance.view()

    async def update(
        self, provider: str, instance_id: str, changes: InstanceChanges
    ) -> InstanceView:
        """Edit an instance added through the API; a managed one must be stopped first."""
        instance = self.instances.deletable(provider, instance_id)
        if instance.config.managed:
            check = await asyncio.to_thread(self.processes.check, instance.key)
            if check.alive:
                raise Conflict(
                    f"{instance.key} is running",
                    code="instance_running",
                    hint="Stop it first, then edit it.",
                )
        updated = self.instances.update(provider, instance_id, changes)
        self.health.forget(instance)
        self.health.poke(updated)
        return updated.view()

    async def delete(self, provider: str, instance_id: str) -> None:
        """Remove an instance added through the API, stopping its process first."""
        instance = self.instances.deletable(provider, instance_id)
        if instance.config.managed:
            scheduled = self._scheduled(instance)
            if scheduled is not None:  # its model unloaded, so no longer counted
                await scheduled.stop(instance)
                if self.instances.find(instance.key) is None:
                    return  # a local file's server, removed with its model
            await self.control.stop(instance)
        self.instances.delete(provider, instance_id)
        self._forget(instance)

    def add_model_server(
        self,
        provider: str,
        fields: InstanceFields,
        command: list[str],
        container: ContainerConfig | None = None,
    ) -> Instance:
        """An instance serving one local file with the runtime's ``command`` (its status is
        checked once it has loaded), in a container of the configured image when
        ``container`` is given."""
        return self.instances.create(
            provider, fields, origin=InstanceOrigin.MODEL, command=command, container=container
        )

    def remove_model_server(self, instance: Instance) -> None:
        """Forget an instance created for a local file once it no longer runs (configured
        ones, and one still running, stay visible and manageable)."""
        if instance.origin is not InstanceOrigin.MODEL:
            return
        try:
            self.processes.forget(instance.key)  # drops a crashed server's stale PID file
        except ModelyardError:
            return  # still running
        with contextlib.suppress(ModelyardError):  # already gone
            self.instances.delete(instance.config.provider, instance.config.id)
        self._forget(instance)

    def _forget(self, instance: Instance) -> None:
        self.health.forget(instance)
        self.bus.publish(
            PROVIDER_REMOVED,
            ProviderRemoved(provider=instance.config.provider, instance_id=instance.config.id),
        )

    # -- status and process ----------------------------------------------------------------

    async def status(self, provider: str, instance_id: str, *, refresh: bool) -> ProviderStatus:
        return await self.health.status(self.instances.get(provider, instance_id), refresh=refresh)

    def history(self, provider: str, instance_id: str) -> list[ProviderStatus]:
        return self.health.history(self.instances.get(provider, instance_id))

    def log(
        self,
        provider: str,
        instance_id: str,
        lines: int,
        level: LogLevel | None = None,
        text: str = "",
    ) -> InstanceLog:
        """The last ``lines`` lines of a managed instance's log at ``level`` or above that
        contain ``text`` (none for an external instance)."""
        instance = self.instances.get(provider, instance_id)
        if instance.config.container is not None:  # the container's own output
            tail = self.processes.log_tail(instance.key, SCAN_LINES if level or text else lines)
            name = f"docker logs {container_name(instance.key)}"
            return InstanceLog(name, matching(tail, level, text)[-lines:])
        path = self.processes.log_path(instance.key)
        if not instance.config.managed:
            return InstanceLog(str(path), [])
        try:
            tail = read_matching(path, lines, level, text)
        except FileNotFoundError:
            tail = []
        return InstanceLog(str(path), tail)

    def log_file(self, provider: str, instance_id: str) -> Path:
        """Where a managed instance's log is (404 ``no_log`` for an external instance)."""
        instance = self.instances.get(provider, instance_id)
        if not instance.config.managed or instance.config.container is not None:
            raise NotFound(
                f"{instance.key} is not run by modelyard: it has no log here",
                code="no_log",
                hint="Its logs are where the server that runs it writes them.",
            )
        return self.processes.log_path(instance.key)

    def _scheduled(self, instance: Instance) -> ScheduledInstances | None:
        scheduled = self.scheduled
        return scheduled if scheduled is not None and scheduled.owns(instance) else None

    async def start(self, provider: str, instance_id: str) -> ProviderStatus:
        instance = self.instances.get(provider, instance_id)
        scheduled = self._scheduled(instance)
        if scheduled is None:
            return await self.control.start(instance)
        await scheduled.start(instance)
        return await self.health.check(instance, fresh=True)

    async def stop(self, provider: str, instance_id: str) -> ProviderStatus:
        instance = self.instances.get(provider, instance_id)
        self.health.forget_start_timeout(instance)
        scheduled = self._scheduled(instance)
        if scheduled is not None:
            await scheduled.stop(instance)
        # Also what the scheduler has not loaded (a process adopted from an earlier modelyard).
        return await self.control.stop(instance)

    async def restart(self, provider: str, instance_id: str) -> ProviderStatus:
        instance = self.instances.get(provider, instance_id)
        scheduled = self._scheduled(instance)
        if scheduled is None:
            return await self.control.restart(instance)
        # One process and one entry of the scheduler's: unloaded, then loaded again.
        await self.stop(provider, instance_id)
        return await self.start(provider, instance_id)
