"""Start, stop, delete, recreate and batch operations on catalog models (SPEC §4).

Each dispatches through the model's provider, by what it can do:

* **start** — a runtime that ``loads_models`` (Ollama, LM Studio): its load call, after a
  memory check (the model's estimate against free VRAM or RAM; 507 ``insufficient_memory``
  unless ``force``); a local file: a server for it (``gguf/servers.py``); a managed
  single-model server (``runs_gguf``): its process. With ``wait`` (the default) the call
  returns once the model is loaded.
* **stop** — unload, or stop that server.
* **delete** — a runtime that ``deletes_models``: its delete call; a local file: the file(s),
  refused with 409 ``model_running`` while a server runs it.
* **recreate** — delete, then download again from the recorded source.
* **batch** — one action on many models, a result per item and ``batch.progress`` events.

Every operation ends with the catalog updated (``model.state`` events) and a sync scheduled.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from modelyard.config import ModelMode, Settings
from modelyard.downloads.views import DownloadView
from modelyard.errors import Conflict, ModelyardError, NotFound
from modelyard.events import BATCH_PROGRESS, BatchProgress
from modelyard.gguf.local import LOCAL_INSTANCE, hf_source, is_local, local_scope, runner
from modelyard.gguf.metadata import split_part, split_paths
from modelyard.gguf.servers import GgufServers
from modelyard.models.catalog import Catalog
from modelyard.models.details import ModelDetails, ResourcesReport, describe, running_models
from modelyard.models.memory import default_context, estimate_for, gguf_info
from modelyard.models.types import (
    BatchItem,
    BatchResult,
    DeletedModel,
    Model,
    ModelEntry,
    ModelKey,
    ModelRef,
    ModelStatus,
)
from modelyard.providers.base import Provider, model_not_found, not_supported
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import Instance, InstanceRegistry
from modelyard.runtimes.resources import MemoryEstimate, check_fits, system_resources
from modelyard.validation import resolve_inside, validate_model_name, validate_relative_path

Action = Literal["start", "stop", "delete"]


class DownloadCreator(Protocol):
    """What recreate needs of the download manager: ``POST /api/downloads`` as a call."""

    async def create(self, request: dict[str, Any]) -> DownloadView: ...


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


@dataclass(frozen=True)
class RecreatedModel:
    """The model being fetched again, and its download."""

    model: Model
    download: DownloadView  # the download task, as the downloads API shows it

    def wire(self) -> dict[str, Any]:
        return {**self.model.wire(), "download": self.download.model_dump(mode="json")}


def _same_ctx(target: Resolved, running: list[Instance], ctx_size: int | None) -> Instance:
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


class Lifecycle:
    """Model operations across runtimes; routes and the CLI reach them through the API."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        servers: GgufServers,
        instances: InstanceRegistry,
        downloads: DownloadCreator,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.servers = servers
        self.instances = instances
        self.downloads = downloads
        self._locks: dict[ModelKey, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(settings.start_timeout_s))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.servers.close()
        await self._http.aclose()

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

    def _lock(self, key: ModelKey) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # -- start -------------------------------------------------------------------------------

    async def start(
        self,
        ref: ModelRef,
        *,
        force: bool = False,
        wait: bool = True,
        ctx_size: int | None = None,
    ) -> Model:
        """Load a model; with ``wait``, return once the runtime says it is loaded."""
        target = await self.resolve(ref)
        async with self._lock(target.key):
            if target.instance is None:
                return await self._start_local(target, force=force, wait=wait, ctx_size=ctx_size)
            instance = target.instance
            if target.provider.capabilities.loads_models:
                loaded, target = await self._loaded_now(target)
                if loaded is not None:
                    return loaded  # already in memory: no second copy, no memory check
                await self._require_memory(target, force, ctx_size)
                await target.provider.load(self._http, instance.config, target.name, ctx_size)
            elif target.runs_as_server:
                await self.servers.control.launch(instance)
                if wait:
                    await self.servers.wait_loaded(instance)
            else:
                raise not_supported(instance.config, "started")
            return await self._synced(target)

    async def load_model(self, ref: ModelRef, ctx_size: int | None) -> Model:
        """The scheduler's load (``gateway/backend.py``)."""
        return await self.start(ref, ctx_size=ctx_size)

    async def unload_model(self, ref: ModelRef) -> Model:
        """The scheduler's unload."""
        return await self.stop(ref)

    async def start_local(self, name: str) -> Instance | None:
        """Start a local file (chat does, for a model nothing serves yet): the instance now
        serving it, or None when none runs."""
        await self.start(ModelRef(runner().kind, name))
        running = self.servers.running(name)
        return running[0] if running else None

    async def _loaded_now(self, target: Resolved) -> tuple[Model | None, Resolved]:
        """Ask the runtime (a sync of the instance) whether the model is loaded right now:
        the model when it is, and the target with its fresh row."""
        result = await self.catalog.sync({target.key.scope})
        model = await asyncio.to_thread(self.catalog.get, target.key)
        if result.errors or model is None:  # the load call says what is wrong
            return None, target
        fresh = Resolved(target.provider, target.key, model, target.instance)
        return (model if model.status is ModelStatus.LOADED else None), fresh

    async def _start_local(
        self, target: Resolved, *, force: bool, wait: bool, ctx_size: int | None
    ) -> Model:
        path = self._gguf_path(target)
        model = target.model or await self._synced(target)
        running = self.servers.running(target.name)
        if running:
            return await self._await_loaded(target, _same_ctx(target, running, ctx_size), wait)
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
            instance = await self.servers.launch(target.name, path, ModelMode(model.mode), ctx)
            # Recorded once the server is on its way: the write overlaps its loading.
            await self.catalog.set_state(target.key, ModelStatus.STARTING, None)
            if wait:
                return await self._await_loaded(target, instance, True)
            task = asyncio.create_task(self._finish_start(target, instance, stack.pop_all()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await self._model(target)

    async def _await_loaded(self, target: Resolved, instance: Instance, wait: bool) -> Model:
        if not wait:
            return await self._model(target)
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
        return model or await self._model(target)

    async def _finish_start(
        self, target: Resolved, instance: Instance, starting: contextlib.ExitStack
    ) -> None:
        with starting, contextlib.suppress(ModelyardError):  # the failure is in its state
            await self._await_loaded(target, instance, True)

    # -- stop --------------------------------------------------------------------------------

    async def stop(self, ref: ModelRef) -> Model:
        """Unload a model; not an error when it was not loaded."""
        target = await self.resolve(ref)
        async with self._lock(target.key):
            instance = target.instance
            if instance is None:
                self._gguf_path(target)
                await self.servers.stop(target.name)
                model = await self.catalog.set_state(target.key, ModelStatus.AVAILABLE, None)
                self.catalog.schedule({local_scope()})
                return model or await self._model(target)
            if target.provider.capabilities.loads_models:
                await target.provider.unload(self._http, instance.config, target.name)
            elif target.runs_as_server:
                await self.servers.control.stop(instance)
            else:
                raise not_supported(instance.config, "stopped")
            return await self._synced(target)

    # -- delete and recreate -------------------------------------------------------------------

    async def delete(self, ref: ModelRef) -> DeletedModel:
        """Remove a model from its runtime (a local file: the file) and from the catalog."""
        target = await self.resolve(ref)
        async with self._lock(target.key):
            await self._delete(target)
        return DeletedModel(*target.key)

    async def _delete(self, target: Resolved) -> None:
        instance = target.instance
        try:
            if instance is None:
                await self._delete_local(target)
            elif target.provider.capabilities.deletes_models:
                await target.provider.delete(self._http, instance.config, target.name)
            else:
                raise not_supported(instance.config, "deleted")
        except NotFound:
            await self.catalog.forget(target.key)  # it was gone already: drop the stale row
            raise
        await self.catalog.forget(target.key)
        self.catalog.schedule({target.key.scope})

    async def _delete_local(self, target: Resolved) -> None:
        if self.servers.running(target.name):
            raise Conflict(
                f"{target.name} is running",
                code="model_running",
                hint="Stop the model first, then delete it.",
            )
        path = self._gguf_path(target)
        parsed = split_part(path.name)
        files = split_paths(path.parent / parsed[0], parsed[2]) if parsed else [path]
        for file in files:
            try:
                await asyncio.to_thread(file.unlink, True)
            except OSError as exc:
                raise Conflict(
                    f"{file.name} could not be deleted: {exc.strerror or exc}",
                    code="delete_failed",
                    hint="Check the permissions of the models directory.",
                ) from exc
        await self.servers.stop(target.name)  # drops a stopped server's instance

    async def recreate(self, ref: ModelRef) -> RecreatedModel:
        """Delete the model and download it again from where it came from."""
        target = await self.resolve(ref)
        async with self._lock(target.key):
            if target.model is None:
                raise target.not_found()
            request = await asyncio.to_thread(self._source_request, target)
            await self._delete(target)
            await self.catalog.placeholder(_placeholder(target.model))
            try:
                download = await self.downloads.create(request)
            except ModelyardError as exc:
                failed = {"error": exc.detail}
                await self.catalog.set_state(target.key, ModelStatus.FAILED, None, failed)
                raise
        return RecreatedModel(await self._model(target), download)

    async def install(self, request: dict[str, Any]) -> DownloadView:
        """Start a download (a recommended model's install button): the download task."""
        return await self.downloads.create(request)

    def _source_request(self, target: Resolved) -> dict[str, Any]:
        recorded = self.catalog.source_of(target.key)
        if recorded is not None and recorded[1].get("source"):
            return recorded[1]
        if target.instance is not None:
            pulled = target.provider.pull_request(target.name, target.key.instance_id)
        else:
            derived = hf_source(target.name)
            pulled = derived[1] if derived is not None else None
        if pulled is not None:
            return pulled
        raise Conflict(
            f"modelyard does not know where {target.name} came from",
            code="no_source",
            hint="Only models downloaded through modelyard (or pulled by their runtime) can "
            "be recreated.",
        )

    # -- batch -------------------------------------------------------------------------------

    async def batch(
        self, action: Action, refs: list[ModelRef], *, force: bool = False
    ) -> BatchResult:
        """Run ``action`` on each item in turn; one result per item, progress as events."""
        batch_id = uuid.uuid4().hex[:12]
        results: list[BatchItem] = []
        for ref in refs:
            try:
                if action == "start":
                    done: Model | DeletedModel = await self.start(ref, force=force)
                elif action == "stop":
                    done = await self.stop(ref)
                else:
                    done = await self.delete(ref)
                result = BatchItem(done.provider, done.name, done.instance_id)
            except ModelyardError as exc:
                known = registry.find(ref.provider)
                result = BatchItem(
                    known.kind if known is not None else ref.provider,
                    ref.name,
                    ref.instance_id,
                    ok=False,
                    code=exc.error_code,
                    error=exc.detail,
                    hint=exc.hint,
                )
            results.append(result)
            progress = BatchProgress(
                batch_id=batch_id,
                action=action,
                done=len(results),
                total=len(refs),
                result=result.wire(),
            )
            self.catalog.bus.publish(BATCH_PROGRESS, progress)
        return BatchResult(batch_id, action, results)

    # -- details and memory ----------------------------------------------------------------------

    async def details(self, ref: ModelRef) -> ModelDetails:
        """The model with its GGUF metadata, memory estimate, fit verdict and source."""
        target = await self.resolve(ref)
        model = target.model or await self._synced(target)
        if target.instance is None:
            self._gguf_path(target)
        return await describe(self.settings, self.catalog, model, target.instance)

    def resources(self) -> ResourcesReport:
        """``GET /api/system/resources``."""
        return running_models(self.catalog)

    async def _require_memory(self, target: Resolved, force: bool, ctx_size: int | None) -> None:
        if target.model is None:
            return
        ctx = ctx_size or self.settings.default_ctx_size
        estimate = estimate_for(target.model, info=None, instance=target.instance, ctx_size=ctx)
        if estimate is not None:
            self._check_fits(estimate, force)

    def _check_fits(self, estimate: MemoryEstimate, force: bool) -> None:
        resources = system_resources(self.catalog.models_dir)
        check_fits(estimate, resources, self.settings.memory_margin_bytes).require(force=force)

    # -- helpers -----------------------------------------------------------------------------

    def _gguf_path(self, target: Resolved) -> Path:
        path = resolve_inside(self.catalog.models_dir, target.name)
        if not path.is_file():
            raise target.not_found()
        return path

    async def _synced(self, target: Resolved) -> Model:
        """The model after syncing its scope (it may have appeared since the last sync)."""
        await self.catalog.sync({target.key.scope})
        return await self._model(target)

    async def _model(self, target: Resolved) -> Model:
        model = await asyncio.to_thread(self.catalog.get, target.key)
        if model is None:
            raise target.not_found()
        return model


def _placeholder(model: Model) -> ModelEntry:
    return ModelEntry(
        *model.key,
        size=model.size,
        family=model.family,
        parameter_size=model.parameter_size,
        quantization=model.quantization,
        format=model.format,
        mode=model.mode,
        source=model.source,
        status=ModelStatus.DOWNLOADING,
    )
