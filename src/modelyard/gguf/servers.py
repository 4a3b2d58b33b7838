"""Servers for the local files, the GGUF files of the models directory (SPEC §2, §4).

Starting a local file creates a managed instance of the provider that runs GGUF files
(llama.cpp) with origin ``model``, bound to 127.0.0.1 on a free port, whose command line (the
provider's ``file_command``) serves that file with the flags of its mode and the model's name as
alias, so ``/v1/models`` and chat use the name. It runs through the process manager like any
managed instance: the Providers page shows it, its PID file lets a restarted modelyard adopt it.
Stopping the model stops the server and removes the instance again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelyard.config import Settings
from modelyard.errors import ModelyardError, Unavailable, UpstreamError
from modelyard.gguf.local import runner, server_details
from modelyard.instance_config import ContainerConfig, ModelMode
from modelyard.models.catalog import Catalog
from modelyard.models.types import LoadedFigures
from modelyard.runtimes.control import InstanceControl
from modelyard.runtimes.health import HealthChecker
from modelyard.runtimes.instance_service import InstanceService
from modelyard.runtimes.instances import Instance, InstanceFields, InstanceOrigin
from modelyard.runtimes.log_files import follow, log_size
from modelyard.runtimes.processes import ProcessManager

HOST = "127.0.0.1"
# /health while loading: every 10 ms at first (a small model loads in tens of milliseconds),
# then every 5 % of the time spent so far, at most every 50 ms (a big one takes a minute).
_POLL_MIN_S = 0.01
_POLL_MAX_S = 0.05
_POLL_FRACTION = 0.05
_PROCESS_CHECK_S = 0.1  # how often the process itself is checked meanwhile
_OUTPUT_READ_S = 0.002  # how often its log is read meanwhile,
_OUTPUT_READ_FOR_S = 0.25  # in its first quarter second
_ANNOUNCE_AFTER_S = 0.05  # a loaded server's status check waits for the start's answer
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def instance_id_for(name: str) -> str:
    """A valid, stable instance id for a model name (which may contain '/')."""
    stem = name.removesuffix(".gguf").removesuffix(".GGUF")
    slug = _ID_UNSAFE.sub("-", stem).strip("-._") or "model"
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{slug[:52]}-{digest}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _poll_delay(elapsed_s: float) -> float:
    return min(_POLL_MAX_S, max(_POLL_MIN_S, elapsed_s * _POLL_FRACTION))


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


class GgufServers:
    """Create, start, watch and stop the llama.cpp server of a GGUF model."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        instances: InstanceService,
        control: InstanceControl,
        processes: ProcessManager,
        health: HealthChecker,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.instances = instances
        self.control = control
        self.processes = processes
        self.health = health
        self._checks: set[asyncio.Task[Any]] = set()

    def running(self, name: str) -> list[Instance]:
        """The servers of ``name`` whose process is alive (a PID file read each, well under a
        millisecond: here rather than behind thread hand-offs on the way to a started model)."""
        return [i for i in self.catalog.servers_for(name) if self.processes.check(i.key).alive]

    async def launch(
        self, name: str, path: Path, mode: ModelMode, ctx_size: int, by_policy: bool = False
    ) -> Instance:
        """Create (or reuse) the model's instance and start its server; returns at once.
        ``by_policy``: the restart policy starts it again (it does not end a crash loop)."""
        instance = self._reusable(name, mode, ctx_size) or self._create(name, path, mode, ctx_size)
        try:
            # wait_loaded, then announce
            await self.control.launch(instance, watch=False, by_policy=by_policy)
        except ModelyardError:
            self.remove(instance)
            raise
        return instance

    def _reusable(self, name: str, mode: ModelMode, ctx_size: int) -> Instance | None:
        """A stopped instance left from before (e.g. across a modelyard restart), if usable."""
        for instance in self.catalog.servers_for(name):
            cfg = instance.config
            port = urlsplit(cfg.base_url).port or 0
            if instance.origin is not InstanceOrigin.MODEL:
                return instance  # configured for this file: start it as it is
            in_container = self.settings.gguf_runtime == "container"
            same = cfg.mode is mode and cfg.ctx_size == ctx_size
            if same and (cfg.container is not None) == in_container and _port_free(port):
                return instance
            self.remove(instance)
        return None

    def _create(self, name: str, path: Path, mode: ModelMode, ctx_size: int) -> Instance:
        port = _free_port()
        provider = runner()
        container = None
        if self.settings.gguf_runtime == "container":
            # The llama.cpp image of the settings, the models directory mounted read-only: the
            # same command line with the image's own server and the file's path inside it.
            container = ContainerConfig(image=self.settings.llama_image, gpus="auto")
            inside = self.settings.path_in_container(path, container.models_mount)
            argv = provider.file_command(
                self.settings,
                inside,
                host=HOST,
                port=port,
                ctx_size=ctx_size,
                alias=name,
                mode=mode,
                in_container=True,
            )
            container = container.model_copy(update={"command": argv[1:]})
            argv = []
        else:
            argv = provider.file_command(
                self.settings, path, host=HOST, port=port, ctx_size=ctx_size, alias=name, mode=mode
            )
        fields = InstanceFields(
            id=instance_id_for(name),
            base_url=f"http://{HOST}:{port}",
            managed=True,
            model=str(path),
            mode=mode,
            ctx_size=ctx_size,
        )
        # Not checked now: its status is checked once it has loaded (announce), and checks
        # while it loads would compete with the wait for it.
        return self.instances.add_model_server(provider.kind, fields, argv, container)

    async def wait_loaded(self, instance: Instance, *, announce: bool = True) -> None:
        """Return once ``/health`` answers 200; stop the server and raise if it exits or times
        out first (the hint carries the last lines of its log). ``announce``: check its status
        for the Providers page now (else the caller does, with ``announce``, when it has done
        what the start waits for)."""
        began = time.monotonic()
        deadline = began + self.settings.start_timeout_s
        base_url = instance.config.base_url
        next_poll = began
        next_check = began + _PROCESS_CHECK_S
        said_ready = asyncio.Event()  # its log's line that it is ready: poll now
        reader = None
        if instance.config.container is None:  # a container's output is Docker's
            reader = asyncio.create_task(self._read_output(instance, said_ready))
        try:
            while True:
                said_ready.clear()
                if await self.catalog.serving(base_url):
                    break
                # Polls keep their rate however long each takes (a fixed delay after each
                # would add the time of a poll to every period), without catching up after a
                # slow one.
                next_poll = max(next_poll + _poll_delay(next_poll - began), time.monotonic())
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + _PROCESS_CHECK_S
                    await self._raise_if_gone_or_late(instance, deadline)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_poll - time.monotonic())):
                        await said_ready.wait()
        finally:
            if reader is not None:
                reader.cancel()
        if announce:
            self.announce(instance)

    async def _read_output(self, instance: Instance, said_ready: asyncio.Event) -> None:
        """Follow a loading server's log for the line that says it is ready. Between polls
        10 ms apart, a server that became ready waited 5 ms on average for the next one, a
        fifth of a small model's load; a read of what its log gained costs a stat every few
        milliseconds. Only in its first quarter second: later, the polls' wait is a few
        percent of the time spent, and the reads' CPU would compete with the load longer."""
        path = self.processes.log_path(instance.key)
        # Unreadable, or loading for longer: the polls alone find it ready.
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_OUTPUT_READ_FOR_S):
                async for lines in follow(path, log_size(path), _OUTPUT_READ_S):
                    if any(runner().says_ready(line) for line in lines):
                        said_ready.set()

    async def _raise_if_gone_or_late(self, instance: Instance, deadline: float) -> None:
        """While a server loads: raise (and clean up) once it has exited or run out of time."""
        if not (await asyncio.to_thread(self.processes.check, instance.key)).alive:
            tail = " | ".join(self.processes.log_tail(instance.key, 5)) or "(empty log)"
            self.remove(instance)
            raise UpstreamError(
                f"the {runner().label} server for {instance.config.model} exited while loading",
                code="start_failed",
                hint=f"Last log lines: {tail}",
            )
        if time.monotonic() > deadline:
            # Said before the stop: its status shows why it stopped, never a plain STOPPED.
            self.health.start_timed_out(instance, self.processes.log_tail(instance.key, 5))
            await self.stop_instance(instance)
            raise Unavailable(
                f"the model did not load within {self.settings.start_timeout_s:g} s",
                code="start_timeout",
                hint="Raise MODELYARD_START_TIMEOUT_S for big models, or check the log.",
            )

    def announce(self, instance: Instance) -> None:
        """Check a server that just loaded (RUNNING for the Providers page, and a catalog sync
        of the instance that came up) once the start's answer has gone: begun at once, the
        check (a thread, a port check, the provider's probe) held that answer back by
        milliseconds, measured."""
        task = asyncio.create_task(self._check_soon(instance))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check_soon(self, instance: Instance) -> None:
        await asyncio.sleep(_ANNOUNCE_AFTER_S)
        await self.health.check(instance, fresh=True)

    async def close(self) -> None:
        for task in list(self._checks):
            task.cancel()
        for task in list(self._checks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def server_info(self, instance: Instance) -> LoadedFigures | None:
        """The ``loaded`` details of a model served by ``instance``; None once it is gone."""
        record = self.processes.check(instance.key).record
        return server_details(instance, record) if record is not None else None

    async def stop(self, name: str) -> bool:
        """Stop every server of ``name``; True when one was running."""
        stopped = False
        for instance in self.catalog.servers_for(name):
            stopped = await self.stop_instance(instance) or stopped
        return stopped

    async def stop_instance(self, instance: Instance) -> bool:
        running = (await asyncio.to_thread(self.processes.check, instance.key)).alive
        if running:
            await self.control.stop(instance)
        self.remove(instance)
        return running

    def remove(self, instance: Instance) -> None:
        """Forget an auto-created instance that no longer runs (configured ones stay)."""
        self.instances.remove_model_server(instance)
