"""Start, stop and restart managed instances through the process manager."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import replace
from urllib.parse import urlsplit

from modelyard.config import Settings
from modelyard.errors import Conflict, ModelyardError
from modelyard.providers.registry import registry
from modelyard.runtimes.container_runtime import Runtimes
from modelyard.runtimes.health import HealthChecker, ProviderStatus, check_port
from modelyard.runtimes.instances import Instance
from modelyard.runtimes.processes import LaunchSpec


class InstanceControl:
    """Process control for managed instances; every action ends with a fresh status."""

    def __init__(self, settings: Settings, processes: Runtimes, health: HealthChecker) -> None:
        self.settings = settings
        self.processes = processes
        self.health = health
        self._locks: dict[str, asyncio.Lock] = {}
        self._watchers: set[asyncio.Task[ProviderStatus]] = set()
        self._launch_waiters: dict[str, list[asyncio.Future[None]]] = {}

    def launch_spec(self, instance: Instance) -> LaunchSpec:
        """A configured command line wins (with the variable its config names for its key,
        the one variable of modelyard's own it is given); else the provider's own."""
        cfg = instance.config
        if cfg.command:
            parts = urlsplit(cfg.base_url)
            variable = cfg.api_key_env
            env = {variable: os.environ[variable]} if variable in os.environ else None
            spec = LaunchSpec(key=cfg.key, argv=list(cfg.command), env=env, port=parts.port)
        else:
            spec = registry.get(cfg.provider).launch_spec(self.settings, cfg)
        return replace(spec, memory_limit_bytes=cfg.memory_limit_bytes)

    def _lock(self, instance: Instance) -> asyncio.Lock:
        return self._locks.setdefault(instance.key, asyncio.Lock())

    def next_launch(self, instance: Instance) -> asyncio.Future[None]:
        """Resolved once ``instance``'s process is next launched, by whoever launches it (the
        scheduler's load a start by hand asked for), or failed with why the launch was
        refused (``already_running``, ``port_in_use``...)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._launch_waiters.setdefault(instance.key, []).append(future)
        return future

    def _tell_launched(self, key: str, error: ModelyardError | None) -> None:
        for future in self._launch_waiters.pop(key, []):
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def require_stopped(self, instance: Instance) -> None:
        """409 ``not_managed`` or ``already_running`` before a start is asked for."""
        self._require_managed(instance)
        self._require_not_running(instance)

    def _require_not_running(self, instance: Instance) -> None:
        # Reading the PID file takes well under a millisecond: here rather than in a thread,
        # whose hand-offs would cost more on the way to a model being ready.
        check = self.processes.check(instance.key)
        if check.alive:
            pid = check.record.pid if check.record else "?"
            raise Conflict(
                f"{instance.key} is already running (PID {pid})",
                code="already_running",
                hint="Use restart to start it again.",
            )

    def _require_managed(self, instance: Instance) -> None:
        if not instance.config.managed:
            raise Conflict(
                f"{instance.key} is not managed by modelyard",
                code="not_managed",
                hint="Start and stop this server yourself, or add it as a managed instance.",
            )

    async def start(self, instance: Instance) -> ProviderStatus:
        """Start the process; answers with its status just after the launch."""
        self._require_managed(instance)
        async with self._lock(instance):
            await self._launch(instance)
            return await self.health.check(instance, fresh=True)

    async def launch(
        self, instance: Instance, *, watch: bool = True, by_policy: bool = False
    ) -> None:
        """Start the process without a first status check, for a caller that waits for the
        server itself. ``watch``: check its status in the background until it settles (a
        caller that checks it itself once loaded passes False: those checks would compete
        with its wait). ``by_policy``: the restart policy starts it (else a start by hand,
        which ends a crash loop)."""
        self._require_managed(instance)
        async with self._lock(instance):
            await self._launch(instance, watch=watch, by_policy=by_policy)

    async def _launch(
        self, instance: Instance, *, watch: bool = True, by_policy: bool = False
    ) -> None:
        try:
            await self._spawn(instance, by_policy=by_policy)
        except ModelyardError as exc:
            self._tell_launched(instance.key, exc)
            raise
        self._tell_launched(instance.key, None)
        if not watch:
            return
        watcher = asyncio.create_task(
            self.health.watch_until_settled(instance, self.settings.start_timeout_s + 1)
        )
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _spawn(self, instance: Instance, *, by_policy: bool) -> None:
        self._require_not_running(instance)
        in_container = instance.config.container is not None
        missing = registry.get(instance.config.provider).binary_missing(
            self.settings, instance.config
        )
        if missing and not in_container:
            await self.health.check(instance, fresh=True)
            raise Conflict(missing, code="binary_not_found", hint=missing)
        spec = None if in_container else self.launch_spec(instance)
        port = await check_port(instance.config.base_url, self.settings.connect_timeout_ms / 1000)
        if port.listening:
            raise Conflict(
                f"something already listens on {instance.config.base_url}",
                code="port_in_use",
                hint="Stop the program using that port, or give the instance another port.",
            )
        if not by_policy:
            self.health.restarts.started_by_hand(instance.key)
        self.health.forget_start_timeout(instance)
        if spec is None:
            await asyncio.to_thread(self.processes.start_container, instance)
        else:
            await asyncio.to_thread(self.processes.start, spec)  # spawning takes milliseconds

    async def stop(self, instance: Instance) -> ProviderStatus:
        """Stop our process; 409 ``not_ours`` when the server answering is not one we run."""
        self._require_managed(instance)
        async with self._lock(instance):
            await asyncio.to_thread(self.processes.stop, instance.key, self.settings.stop_grace_s)
            status = await self.health.check(instance, fresh=True)
        if status.reason_code == "port_in_use":  # still served, by a process not ours
            raise Conflict(
                f"modelyard runs no process for {instance.key}; the server answering on "
                f"{instance.config.base_url} was not started by modelyard",
                code="not_ours",
                hint=status.hint,
            )
        return status

    async def restart(self, instance: Instance) -> ProviderStatus:
        self._require_managed(instance)
        async with self._lock(instance):
            await asyncio.to_thread(self.processes.stop, instance.key, self.settings.stop_grace_s)
            await self._launch(instance)
            return await self.health.check(instance, fresh=True)

    async def stop_all(self) -> None:
        """Stop every managed process (used at exit when stop_managed_on_exit is set)."""
        for record in await asyncio.to_thread(self.processes.records):
            with contextlib.suppress(ModelyardError, OSError):
                await asyncio.to_thread(self.processes.stop, record.key, self.settings.stop_grace_s)

    async def close(self) -> None:
        for task in list(self._watchers):
            task.cancel()
        for task in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
