"""The managed-instance layer with containers: a process manager whose instances configured
with a ``container`` run in Docker instead (issue 23).

Everything that asks the process manager about a key (status checks, the catalog, chat, the
GGUF servers) asks this one; for a container instance it answers from the Docker API in place
of the PID layer: a :class:`ContainerCheck`, whose record carries the container's main PID on
this machine. :func:`container_verdict` reads the states only a container has (paused, a crash
loop of Docker's restart policy, an exit with its code, a container modelyard did not create).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from pydantic import BaseModel

from modelyard.clock import utcnow
from modelyard.config import Settings
from modelyard.errors import ModelyardError
from modelyard.instance_config import ContainerConfig
from modelyard.providers.base import ApiProbe, ProviderState
from modelyard.providers.registry import registry
from modelyard.runtimes.containers import (
    CLEAN_EXITS,
    ContainerManager,
    ContainerSpec,
    ContainerState,
    ContainerStats,
    container_name,
)
from modelyard.runtimes.instances import Instance, InstanceRegistry
from modelyard.runtimes.process_records import ProcessCheck, ProcessRecord
from modelyard.runtimes.processes import LaunchSpec, ProcessManager

log = logging.getLogger(__name__)

_START_IT = "Start it from the Providers page."
_TAIL_LINES = 5
_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$")


class ContainerInfo(BaseModel):
    """The container layer of a status, in place of the process (``GET /api/providers``)."""

    name: str
    id: str
    image: str
    status: str
    exit_code: int | None
    restart_count: int
    restart_policy: str
    oom_killed: bool


@dataclass(frozen=True)
class ContainerCheck(ProcessCheck):
    """The process layer of a container instance: ``record`` None when there is no container
    of ours (``container`` then names one that is not ours, if any)."""

    container: ContainerState | None = None
    engine_error: str | None = None
    tail: tuple[str, ...] = ()  # the last lines of its log, read when it does not run

    def info(self) -> ContainerInfo | None:
        c = self.container
        if c is None:
            return None
        return ContainerInfo(
            name=c.name,
            id=c.id,
            image=c.image,
            status=c.status,
            exit_code=c.exit_code,
            restart_count=c.restart_count,
            restart_policy=c.restart_policy,
            oom_killed=c.oom_killed,
        )


def docker_time(value: str) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds, which ``fromisoformat`` does not take."""
    match = _DOCKER_TIME.match(value)
    if match is None or value.startswith("0001-"):
        return None
    fraction = (match.group(2) or ".0")[:7]
    return datetime.fromisoformat(match.group(1) + fraction).replace(tzinfo=UTC)


class Runtimes(ProcessManager):
    """Processes for most managed instances; Docker containers for those with a container."""

    def __init__(
        self, settings: Settings, instances: InstanceRegistry, containers: ContainerManager
    ) -> None:
        super().__init__(settings.run_dir, settings.logs_dir)
        self.settings = settings
        self.instances = instances
        self.containers = containers
        self._container_stopping: set[str] = set()
        self._guard = threading.Lock()

    def container_config(self, key: str) -> ContainerConfig | None:
        found = self.instances.find(key)
        return found.config.container if found is not None else None

    # -- the process manager's interface, answered by Docker for container instances ------------

    def check(self, key: str) -> ProcessCheck:
        if self.container_config(key) is None:
            return super().check(key)
        try:
            state = self.containers.inspect(key)
        except ModelyardError as exc:
            return ContainerCheck(None, False, False, None, engine_error=exc.detail)
        stopping = key in self._container_stopping
        if state is None or not state.ours:
            return ContainerCheck(None, False, False, None, stopping, container=state)
        started = docker_time(state.started_at) or utcnow()
        record = ProcessRecord(
            key=key,
            pid=state.pid or 0,
            create_time=started.timestamp(),
            cmdline=[state.image],
            port=urlsplit(self._base_url(key)).port,
            started_at=started.isoformat(),
            log_path=f"docker logs {state.name}",
        )
        stopping = stopping or self.containers.stopped_by_us(key, state.id)
        # Read here, in the check's worker thread: a hint quotes it, and the event loop must
        # never wait for Docker.
        tail = () if state.running else tuple(self.containers.log_tail(key, _TAIL_LINES))
        return ContainerCheck(
            record, state.running, state.running, state.exit_code, stopping, state, tail=tail
        )

    def _base_url(self, key: str) -> str:
        found = self.instances.find(key)
        return found.config.base_url if found is not None else ""

    def stop(self, key: str, grace_s: float = 10.0) -> bool:
        if self.container_config(key) is None:
            return super().stop(key, grace_s)
        with self._guard:
            self._container_stopping.add(key)
        try:
            return self.containers.stop(key, grace_s)
        finally:
            with self._guard:
                self._container_stopping.discard(key)

    def forget(self, key: str) -> None:
        """For a container: remove our stopped container (409 while it runs)."""
        if self.container_config(key) is None:
            super().forget(key)
        else:
            self.containers.remove(key)

    def log_tail(self, key: str, lines: int = 20) -> list[str]:
        if self.container_config(key) is None:
            return super().log_tail(key, lines)
        return self.containers.log_tail(key, lines)

    def _any_containers(self) -> bool:
        """Whether an instance runs in a container (if none, Docker is never asked)."""
        return any(i.config.container is not None for i in self.instances.list())

    def records(self) -> list[ProcessRecord]:
        """PID files, and the running containers of container instances."""
        found = super().records()
        if not self._any_containers():
            return found
        for state in self.containers.labelled():
            key = self._key_of(state)
            if key is not None and state.running:
                check = self.check(key)
                if check.record is not None:
                    found.append(check.record)
        return sorted(found, key=lambda rec: rec.key)

    def _key_of(self, state: ContainerState) -> str | None:
        for instance in self.instances.list():
            if instance.config.container is not None and container_name(instance.key) == state.name:
                return instance.key
        return None

    def adopt(self) -> list[ProcessRecord]:
        """Processes as before, and the running containers carrying our label (by key); a
        labelled container no instance names any more is left alone, and said so."""
        adopted = super().adopt()
        if not self._any_containers():
            return adopted
        for state in self.containers.labelled():
            key = self._key_of(state)
            if key is None:
                log.warning(
                    "container %s is labelled by modelyard but no instance names it: left as it is",
                    state.name,
                )
            elif state.running:
                check = self.check(key)
                if check.record is not None:
                    adopted.append(check.record)
        return adopted

    # -- what only containers do ---------------------------------------------------------------

    def container_spec(self, instance: Instance) -> ContainerSpec:
        """The container an instance runs: the configured image (or the tag a recreate chose),
        the command and environment of its provider (or the configured command)."""
        cfg = instance.config
        config = cfg.container
        assert config is not None
        parts = urlsplit(cfg.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if config.command:
            command, env = list(config.command), {}
        else:
            host = "0.0.0.0" if config.network == "bridge" else parts.hostname or "127.0.0.1"
            launch: LaunchSpec = registry.get(cfg.provider).container_command(
                self.settings,
                cfg,
                host=host,
                port=config.container_port or port,
                models_mount=config.models_mount,
            )
            command, env = launch.argv, dict(launch.env or {})
        return ContainerSpec.build(
            cfg.key,
            config,
            image=self.containers.image_override(cfg.key) or config.image,
            command=command,
            environment=env,
            models_dir=self.settings.resolved_models_dir,
            port=port,
        )

    def start_container(self, instance: Instance) -> ContainerState:
        return self.containers.start(self.container_spec(instance))

    def stats(self, key: str) -> ContainerStats | None:
        return self.containers.stats(key)


def container_verdict(
    settings: Settings, check: ContainerCheck, api: ApiProbe
) -> tuple[ProviderState, str, str] | None:
    """A container instance's state where its container decides it; None where the port and
    API decide as for a process (the API answered, or said what it is doing)."""
    state = check.container
    if check.engine_error is not None:
        return ProviderState.ERROR, "docker_unavailable", check.engine_error
    if state is not None and not state.ours:
        return (
            ProviderState.ERROR,
            "container_not_ours",
            f"A container named {state.name} that modelyard did not create exists; modelyard "
            "never stops or removes it. Remove or rename it yourself.",
        )
    if api.ok or (api.state is not None and api.state is not ProviderState.DEGRADED):
        return None
    if state is None:
        return ProviderState.STOPPED, "not_running", _START_IT
    if state.status == "paused":
        return (
            ProviderState.DEGRADED,
            "container_paused",
            f"The container {state.name} is paused; unpause it (docker unpause {state.name}).",
        )
    if state.status == "restarting":
        return (
            ProviderState.ERROR,
            "crash_loop",
            f"Docker has restarted the container {state.restart_count} times (restart policy "
            f"{state.restart_policy}); it last exited with code {state.exit_code}. "
            f"{_lines(check.tail)}",
        )
    if not state.running:
        code = state.exit_code
        oom = " (killed for lack of memory: raise its memory limit)" if state.oom_killed else ""
        if check.stopping or (code in CLEAN_EXITS and not state.oom_killed) or code is None:
            return (
                ProviderState.STOPPED,
                "not_running",
                f"The container is {state.status}. {_START_IT}",
            )
        return (
            ProviderState.ERROR,
            "container_exited",
            f"The container exited with code {code}{oom}. {_lines(check.tail)}",
        )
    started = docker_time(state.started_at)
    age = (utcnow() - started).total_seconds() if started is not None else 0.0
    if age < settings.start_timeout_s:
        return ProviderState.STARTING, api.reason_code or "starting", "Waiting for the API."
    why = f"({api.reason_code})" if api.reason_code else ""
    return (
        ProviderState.DEGRADED,
        "api_not_responding",
        f"The container runs but its server does not answer {why}: it may be hung, "
        "overloaded or listening elsewhere; its log tells (the Logs panel).",
    )


def _lines(tail: tuple[str, ...]) -> str:
    return f"Last log lines: {' | '.join(tail[-5:]) or '(empty)'}"
