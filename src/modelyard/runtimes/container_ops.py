"""What can be done to a container instance beyond start, stop and restart (issue 23): its
resource use, its log (tail, follow, download), removing its container, and recreating it
with another tag of its configured image."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from docker.errors import DockerException
from docker.types.daemon import CancellableStream

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.runtimes.container_runtime import Runtimes
from modelyard.runtimes.containers import ContainerState, ContainerStats, container_name
from modelyard.runtimes.control import InstanceControl
from modelyard.runtimes.health import HealthChecker, ProviderStatus
from modelyard.runtimes.instances import Instance, InstanceRegistry

# Docker's tag grammar: up to 128 word characters, dots and dashes, not starting with either.
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
FOLLOWER_THREAD = "container-log-follower"
FOLLOW_BUFFER = 64  # chunks read ahead of a slow client; the reading thread waits beyond


@dataclass(frozen=True)
class ContainerUse:
    """One container's resource use, for the Providers and System pages."""

    key: str
    name: str
    image: str
    status: str
    stats: ContainerStats | None  # None when it does not run


class ContainerOperations:
    def __init__(
        self,
        instances: InstanceRegistry,
        runtimes: Runtimes,
        control: InstanceControl,
        health: HealthChecker,
    ) -> None:
        self.instances = instances
        self.runtimes = runtimes
        self.control = control
        self.health = health

    def boxed(self, provider: str, instance_id: str) -> Instance:
        """The instance, if it runs in a container; 409 ``not_a_container`` otherwise."""
        instance = self.instances.get(provider, instance_id)
        if instance.config.container is None:
            raise Conflict(
                f"{instance.key} does not run in a container",
                code="not_a_container",
                hint="Give the instance a [instances.container] table in the config file.",
            )
        return instance

    def _state(self, instance: Instance) -> ContainerState:
        state = self.runtimes.containers.inspect(instance.key)
        if state is None or not state.ours:
            raise NotFound(
                f"{instance.key} has no container of modelyard's",
                code="no_container",
                hint="Start the instance: its container is created then.",
            )
        return state

    async def stats(self, provider: str, instance_id: str) -> ContainerUse:
        instance = self.boxed(provider, instance_id)
        return await asyncio.to_thread(self._use, instance)

    def _use(self, instance: Instance) -> ContainerUse:
        state = self._state(instance)
        stats = self.runtimes.stats(instance.key) if state.running else None
        return ContainerUse(instance.key, state.name, state.image, state.status, stats)

    async def all_stats(self) -> list[ContainerUse]:
        """Every container instance's use, sampled in parallel (a sample takes Docker a
        second); one without a container shows as ``absent``."""
        boxed = [i for i in self.instances.list() if i.config.container is not None]
        return list(
            await asyncio.gather(*(asyncio.to_thread(self._use_or_absent, i) for i in boxed))
        )

    def _use_or_absent(self, instance: Instance) -> ContainerUse:
        try:
            return self._use(instance)
        except NotFound:
            image = self.runtimes.container_spec(instance).image
            return ContainerUse(instance.key, container_name(instance.key), image, "absent", None)

    async def remove(self, provider: str, instance_id: str) -> None:
        """Remove the stopped container (409 while it runs; 404 when there is none)."""
        instance = self.boxed(provider, instance_id)
        if not await asyncio.to_thread(self.runtimes.containers.remove, instance.key):
            raise NotFound(
                f"{instance.key} has no container", code="no_container", hint="Nothing to remove."
            )
        self.health.poke(instance)

    async def recreate(self, provider: str, instance_id: str, tag: str | None) -> ProviderStatus:
        """Stop and remove the container, then create and start it from ``tag`` of the
        configured image (None: the configured tag). The tag must be on this machine."""
        instance = self.boxed(provider, instance_id)
        config = instance.config.container
        assert config is not None
        if tag is not None and not _TAG.match(tag):
            raise InvalidInput(
                f"{tag!r} is not an image tag",
                code="invalid_tag",
                hint="A tag is letters, digits, '_', '.' and '-' (e.g. server-b5000).",
            )
        image = f"{config.repository}:{tag}" if tag else config.image
        containers = self.runtimes.containers
        if not await asyncio.to_thread(containers.image_present, image):
            raise NotFound(
                f"the image {image} is not on this machine",
                code="image_not_found",
                hint=f"Pull or build it first (docker pull {image}); modelyard never pulls.",
            )
        if instance.config.managed:
            await self.control.stop(instance)
        await asyncio.to_thread(containers.remove, instance.key)
        await asyncio.to_thread(
            containers.set_image, instance.key, None if image == config.image else image
        )
        return await self.control.start(instance)

    def log_lines(self, provider: str, instance_id: str, tail: int) -> list[str]:
        instance = self.boxed(provider, instance_id)
        return self.runtimes.log_tail(instance.key, tail)

    async def follow(self, provider: str, instance_id: str, tail: int) -> AsyncIterator[bytes]:
        """The last ``tail`` lines, then each new one until the container stops or the reader
        stops reading (a client that went away)."""
        instance = self.boxed(provider, instance_id)
        stream = await asyncio.to_thread(self.runtimes.containers.follow_logs, instance.key, tail)
        return _relay(stream, f"{FOLLOWER_THREAD} {instance.key}")


async def _relay(stream: CancellableStream[bytes], thread_name: str) -> AsyncIterator[bytes]:
    """The chunks of a Docker log stream, read by a thread of its own (the SDK's read blocks).
    When the consumer stops (the client went away and the response was cancelled), the stream
    is closed, which ends a read that waits for the next line, and the thread ends with it."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue(FOLLOW_BUFFER)
    stopped = threading.Event()

    def read() -> None:
        try:
            for chunk in stream:
                if stopped.is_set():
                    return
                asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
        finally:
            if not stopped.is_set():
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody reads
                    asyncio.run_coroutine_threadsafe(chunks.put(None), loop)

    reader = threading.Thread(target=read, name=thread_name, daemon=True)
    reader.start()
    try:
        while (chunk := await chunks.get()) is not None:
            yield chunk
    finally:
        stopped.set()
        # No await here: a cancelled response cancels every await of its finally too. Closing
        # a stream that ended already finds no socket.
        with contextlib.suppress(AttributeError, OSError, DockerException):
            stream.close()
        while not chunks.empty():  # a put the reader waits on completes, and it sees stopped
            chunks.get_nowait()
