"""Loading and unloading catalog models as such: the runtimes' own operations (SPEC §4).

``ModelLoading`` resolves a model reference and does what a start or a stop means for its
runtime — a runtime that ``loads_models`` (Ollama, LM Studio): its load call, after a memory
check (the model's estimate against free VRAM or RAM; 507 ``insufficient_memory`` unless
``force``); a local file: a server for it (``gguf/servers.py``); a managed single-model
server (``runs_gguf``): its process. Nothing but the scheduler calls ``load`` and ``unload``
(through the gateway's backend): the lifecycle's start and stop ask the scheduler, the one
owner of what is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelyard.config import Settings
from modelyard.errors import Conflict, ModelyardError, NotFound
from modelyard.gguf.files import check_model_file
from modelyard.gguf.local import LOCAL_INSTANCE, is_local, local_scope
from modelyard.gguf.servers import GgufServers
from modelyard.instance_config import ModelMode
from modelyard.models.catalog import Catalog
from modelyard.models.memory import default_context, estimate_for, gguf_info
from modelyard.models.types import Model, ModelKey, ModelRef, ModelStatus
from modelyard.providers.base import Provider, model_not_found, not_supported
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import Instance, InstanceRegistry
from modelyard.runtimes.resources import MemoryEstimate, fits_now
from modelyard.validation import resolve_inside, validate_model_name, validate_relative_path


@dataclass(frozen=True)
class Resolved:
    """A model reference made concrete. ``instance`` is None for a local file."""

    provider: Provider
    key: ModelKey
    model: Model | None
    instance: Instance | None

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def runs_as_server(self) -> bool:
        """A managed single-model server: starting the model is starting its process."""
        return (
            self.instance is not None
            and self.provider.capabilities.runs_gguf
            and self.instance.config.managed
        )

    def not_found(self) -> NotFound:
        if self.instance is not None:
            return model_not_found(self.name, self.instance.config)
        return NotFound(
            f"there is no GGUF model {self.name!r} in the models directory",
            code="model_not_found",
            hint="GET /api/models/list shows the models; names are paths in the models dir.",
        )


def same_ctx(target: Resolved, running: list[Instance], ctx_size: int | None) -> Instance:
    """The running server to answer a start with; 409 when it runs with another context."""
    if not ctx_size:
        return running[0]
    for instance in running:
        if instance.config.ctx_size in (ctx_size, None, 0):  # None, 0: not known
            return instance
    current = running[0].config.ctx_size
    raise Conflict(
        f"{target.name} is already running with a context of {current} tokens, not {ctx_size}",
        code="already_running_different_ctx",
        hint=f"Stop the model first, then start it again with ctx_size={ctx_size} "
        f"(or start it without ctx_size to keep {current}).",
    )


class ModelLoading:
    """Resolve model references; load and unload models through their runtimes."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        servers: GgufServers,
        instances: InstanceRegistry,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.servers = servers
        self.instances = instances
        self._locks: dict[ModelKey, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(settings.start_timeout_s))
        # What a start asked of the load the scheduler runs for it.
        self.forced: set[ModelKey] = set()  # skip the memory check
        self.requested_ctx: dict[ModelKey, int | None] = {}  # the context it gave
        # Loads the restart policy asked for: they do not end a crash loop as a start by hand.
        self.by_policy: set[ModelKey] = set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.servers.close()
        await self.http.aclose()

    def startable(self, target: Resolved) -> bool:
        """Whether modelyard loads and unloads this model (else its server does, or a cloud)."""
        return (
            target.instance is None
            or target.provider.capabilities.loads_models
            or target.runs_as_server
        )

    async def load_model(self, ref: ModelRef, ctx_size: int | None) -> Model:
        """The scheduler's load (``gateway/backend.py``): with the start's ``force``."""
        target = await self.resolve(ref)
        force = target.key in self.forced
        self.forced.discard(target.key)
        requested = self.requested_ctx.pop(target.key, None)
        by_policy = target.key in self.by_policy
        self.by_policy.discard(target.key)
        ctx = requested or ctx_size
        return await self._load(target, force=force, wait=True, ctx_size=ctx, by_policy=by_policy)

    async def unload_model(self, ref: ModelRef) -> Model:
        """The scheduler's unload."""
        return await self.unload(ref)

    # -- resolving names -------------------------------------------------------------------

    async def resolve(self, ref: ModelRef) -> Resolved:
        """Validate a model reference and find its instance and catalog row.

        The row is read in the event loop: an indexed SQLite read of one name takes a fraction
        of a millisecond, less than the hand-offs to and from a thread would on the way to a
        started model (readers never wait for writers in WAL mode)."""
        provider = registry.get(ref.provider)
        name = provider.catalog_name(provider.check_name(validate_model_name(ref.name)))
        instance_id = ref.instance_id
        found: list[Model] | None = None  # every row of that name, when looked up
        if instance_id is None:
            found = self.catalog.find(provider.kind, name)
            instance_id = self._pick_instance(provider, [m.instance_id for m in found])
        key = ModelKey(provider.kind, instance_id, name)
        instance = None
        if is_local(key):
            validate_relative_path(name)
        else:
            instance = self.instances.get(provider.kind, instance_id)
        if found is not None:
            row = next((m for m in found if m.instance_id == instance_id), None)
        else:
            row = self.catalog.get(key)
        return Resolved(provider, key, row, instance)

    def _pick_instance(self, provider: Provider, listed: list[str]) -> str:
        """The instance a name without one means: a local file, else the instance listing
        it, else the only (or the ``default``) instance of the provider."""
        if provider.capabilities.runs_gguf and (LOCAL_INSTANCE in listed or not listed):
            return LOCAL_INSTANCE
        if listed:
            return listed[0]
        ids = [i.config.id for i in self.instances.list() if i.config.provider == provider.kind]
        return ids[0] if len(ids) == 1 else "default"

    def lock(self, key: ModelKey) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # -- start -------------------------------------------------------------------------------

    async def load(
        self,
        ref: ModelRef,
        *,
        force: bool = False,
        wait: bool = True,
        ctx_size: int | None = None,
        by_policy: bool = False,
    ) -> Model:
        """Load a model now, without the scheduler (which calls this through the gateway's
        backend); with ``wait``, return once the runtime says it is loaded. ``by_policy``: a
        restart by the restart policy (``runtimes/restarts.py``)."""
        target = await self.resolve(ref)
        return await self._load(
            target, force=force, wait=wait, ctx_size=ctx_size, by_policy=by_policy
        )

    async def _load(
        self, target: Resolved, *, force: bool, wait: bool, ctx_size: int | None, by_policy: bool
    ) -> Model:
        async with self.lock(target.key):
            if target.instance is None:
                return await self._start_local(
                    target, force=force, wait=wait, ctx_size=ctx_size, by_policy=by_policy
                )
            instance = target.instance
            if target.provider.capabilities.loads_models:
                loaded, target = await self.loaded_now(target)
                if loaded is not None:
                    return loaded  # already in memory: no second copy, no memory check
                await self._require_memory(target, force, ctx_size)
                await target.provider.load(self.http, instance.config, target.name, ctx_size)
            elif target.runs_as_server:
                try:
                    await self.servers.control.launch(instance, by_policy=by_policy)
                except Conflict as exc:  # started already (chat, the Providers page): adopted
                    if exc.error_code != "already_running":
                        raise
                if wait:
                    await self.servers.wait_loaded(instance)
            else:
                raise not_supported(instance.config, "started")
            return await self.synced(target)

    async def loaded_now(self, target: Resolved) -> tuple[Model | None, Resolved]:
        """Ask the runtime (a sync of the instance) whether the model is loaded right now:
        the model when it is, and the target with its fresh row."""
        result = await self.catalog.sync({target.key.scope})
        model = await asyncio.to_thread(self.catalog.get, target.key)
        if result.errors or model is None:  # the load call says what is wrong
            return None, target
        fresh = Resolved(target.provider, target.key, model, target.instance)
        return (model if model.status is ModelStatus.LOADED else None), fresh

    async def _start_local(
        self,
        target: Resolved,
        *,
        force: bool,
        wait: bool,
        ctx_size: int | None,
        by_policy: bool = False,
    ) -> Model:
        path = self.gguf_path(target)
        model = target.model or await self.synced(target)
        running = self.servers.running(target.name)
        if running:
            return await self._await_loaded(target, same_ctx(target, running, ctx_size), wait)
        if not model.status.can_become(ModelStatus.STARTING):
            raise Conflict(
                f"{target.name} is {model.status.value}",
                code="invalid_model_transition",
                hint="Wait for its download to finish (or fetch it again), then start it.",
            )
        # A stat and a cache lookup, then /proc/meminfo and statvfs: well under a millisecond
        # each, so here rather than behind thread hand-offs on the way to a loaded model.
        info = gguf_info(self.catalog.metadata, path)
        ctx = ctx_size or default_context(info, self.settings.default_ctx_size)
        estimate = estimate_for(model, info=info, instance=None, ctx_size=ctx)
        if estimate is not None:
            self._check_fits(estimate, force)
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.catalog.starting(target.name))
            mode = ModelMode(model.mode)
            instance = await self.servers.launch(target.name, path, mode, ctx, by_policy)
            # Recorded once the server is on its way: the write overlaps its loading.
            await self.catalog.set_state(target.key, ModelStatus.STARTING, None)
            if wait:
                return await self._await_loaded(target, instance, True)
            task = asyncio.create_task(self._finish_start(target, instance, stack.pop_all()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await self.model(target)

    async def _await_loaded(self, target: Resolved, instance: Instance, wait: bool) -> Model:
        if not wait:
            return await self.model(target)
        try:
            await self.servers.wait_loaded(instance, announce=False)
        except ModelyardError:
            await self.catalog.set_state(target.key, ModelStatus.AVAILABLE, None)
            raise
        info = self.servers.server_info(instance)  # reads the PID file: well under 1 ms
        # It may have died at once.
        status = ModelStatus.LOADED if info is not None else ModelStatus.AVAILABLE
        model = await self.catalog.set_state(target.key, status, info)
        # Only now: the status check starts a catalog sync of the instance that came up,
        # which would hold the catalog while the state above is written.
        self.servers.announce(instance)
        self.catalog.schedule({local_scope()})
        return model or await self.model(target)

    async def _finish_start(
        self, target: Resolved, instance: Instance, starting: contextlib.ExitStack
    ) -> None:
        with starting, contextlib.suppress(ModelyardError):  # the failure is in its state
            await self._await_loaded(target, instance, True)

    # -- stop --------------------------------------------------------------------------------

    async def unload(self, ref: ModelRef) -> Model:
        """Unload a model now, without the scheduler; not an error when it was not loaded."""
        target = await self.resolve(ref)
        async with self.lock(target.key):
            instance = target.instance
            if instance is None:
                self.gguf_path(target)
                await self.servers.stop(target.name)
                model = await self.catalog.set_state(target.key, ModelStatus.AVAILABLE, None)
                self.catalog.schedule({local_scope()})
                return model or await self.model(target)
            if target.provider.capabilities.loads_models:
                await target.provider.unload(self.http, instance.config, target.name)
            elif target.runs_as_server:
                # One that died keeps its record: its status says how it ended (ERROR).
                if self.servers.processes.check(instance.key).alive:
                    await self.servers.control.stop(instance)
            else:
                raise not_supported(instance.config, "stopped")
            return await self.synced(target)

    async def _require_memory(self, target: Resolved, force: bool, ctx_size: int | None) -> None:
        if target.model is None:
            return
        ctx = ctx_size or self.settings.default_ctx_size
        estimate = estimate_for(target.model, info=None, instance=target.instance, ctx_size=ctx)
        if estimate is not None:
            self._check_fits(estimate, force)

    def _check_fits(self, estimate: MemoryEstimate, force: bool) -> None:
        fits_now(estimate, self.settings.memory_margin_bytes).require(force=force)

    # -- helpers -----------------------------------------------------------------------------

    def gguf_path(self, target: Resolved) -> Path:
        path = resolve_inside(self.catalog.models_dir, target.name)
        check_model_file(path)
        if not path.is_file():
            raise target.not_found()
        return path

    async def synced(self, target: Resolved) -> Model:
        """The model after syncing its scope (it may have appeared since the last sync)."""
        await self.catalog.sync({target.key.scope})
        return await self.model(target)

    async def model(self, target: Resolved) -> Model:
        """The model's row, read in the event loop (as ``resolve`` reads it): a thread's
        hand-offs cost a start's answer more than the read, and let background work in first."""
        model = self.catalog.get(target.key)
        if model is None:
            raise target.not_found()
        return model
