"""Start, stop, delete, recreate and batch operations on catalog models (SPEC §4).

Each dispatches through the model's provider, by what it can do:

* **start** and **stop** — through the scheduler (``gateway/scheduler.py``), the one owner of
  what is loaded, which calls ``models/loading.py`` for what a load means to each runtime. So
  a start from the Models page, the CLI, chat or a batch and a gateway request for the same
  model share one load, and the memory budget counts every one of them. With ``wait`` (the
  default) a start returns once the model is loaded.
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
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from modelyard.config import Settings
from modelyard.downloads.specs import DownloadRequest
from modelyard.downloads.views import DownloadView
from modelyard.errors import Conflict, ModelyardError, NotFound
from modelyard.events import BATCH_PROGRESS, BatchProgress
from modelyard.gateway.names import qualified
from modelyard.gguf.local import hf_source, runner
from modelyard.gguf.metadata import split_part, split_paths
from modelyard.models.catalog import Catalog
from modelyard.models.details import ModelDetails, ResourcesReport, describe, running_models
from modelyard.models.loading import ModelLoading, Resolved, same_ctx
from modelyard.models.types import (
    BatchItem,
    BatchResult,
    DeletedModel,
    Model,
    ModelEntry,
    ModelMeta,
    ModelRef,
    ModelStatus,
    RefetchRequest,
)
from modelyard.providers.base import not_supported
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import Instance

Action = Literal["start", "stop", "delete"]


class DownloadCreator(Protocol):
    """What recreate and install need of the download manager: ``POST /api/downloads`` as a
    call, from a recorded request (validated there) or from one already validated."""

    async def create(self, request: RefetchRequest) -> DownloadView: ...

    async def submit(self, request: DownloadRequest) -> tuple[DownloadView, bool]: ...


@dataclass(frozen=True)
class RecreatedModel:
    """The model being fetched again, and its download."""

    model: Model
    download: DownloadView  # the download task, as the downloads API shows it

    def wire(self) -> dict[str, Any]:
        return {**self.model.wire(), "download": self.download.model_dump(mode="json")}


class LoadScheduler(Protocol):
    """The one owner of what is loaded (``gateway/scheduler.py``), keyed by qualified name."""

    async def load(self, key: str) -> None: ...

    async def unload(self, key: str, reason: str = "requested") -> None: ...

    def is_loaded(self, key: str) -> bool: ...

    def observed(self, key: str, loaded: bool) -> None: ...


class Lifecycle:
    """Model operations across runtimes; routes and the CLI reach them through the API."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        loading: ModelLoading,
        scheduler: LoadScheduler,
        downloads: DownloadCreator,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.loading = loading
        self.servers = loading.servers
        self.scheduler = scheduler
        self.downloads = downloads
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.loading.close()

    async def resolve(self, ref: ModelRef) -> Resolved:
        return await self.loading.resolve(ref)

    # -- start and stop, through the scheduler -------------------------------------------------

    async def start(
        self,
        ref: ModelRef,
        *,
        force: bool = False,
        wait: bool = True,
        ctx_size: int | None = None,
    ) -> Model:
        """Load a model through the scheduler, which keeps it until it is used or stopped;
        with ``wait``, return once it is loaded, else once its load has begun."""
        target = await self.resolve(ref)
        if not self.loading.startable(target):
            assert target.instance is not None
            raise not_supported(target.instance.config, "started")
        if target.instance is None:
            self.loading.gguf_path(target)  # 404 before anything is queued
        running = self.servers.running(target.name) if target.instance is None else []
        if running and ctx_size:
            same_ctx(target, running, ctx_size)
        key = qualified(target.key)
        if target.instance is not None and target.provider.capabilities.loads_models:
            # Its runtime may have unloaded it (or loaded it) behind our back: ask it first.
            loaded, target = await self.loading.loaded_now(target)
            self.scheduler.observed(key, loaded is not None)
        if force:
            self.loading.forced.add(target.key)
        self.loading.requested_ctx[target.key] = ctx_size
        load = self.scheduler.load(key)
        if wait:
            await load
            return await self._row(target)
        task = asyncio.create_task(_quietly(load))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await self._started(target, task)

    async def _started(self, target: Resolved, task: asyncio.Task[None]) -> Model:
        """The model once its load has begun (``starting``), or ended."""
        deadline = asyncio.get_running_loop().time() + self.settings.start_timeout_s
        while not task.done() and asyncio.get_running_loop().time() < deadline:
            model = self.catalog.get(target.key)
            if model is not None and model.status in (ModelStatus.STARTING, ModelStatus.LOADED):
                return model
            await asyncio.sleep(0.02)
        return await self._row(target)

    async def _row(self, target: Resolved) -> Model:
        return await self.loading.model(target)

    async def start_local(self, name: str) -> Instance | None:
        """Start a local file (chat does, for a model nothing serves yet): the instance now
        serving it, or None when none runs."""
        await self.start(ModelRef(runner().kind, name))
        running = self.servers.running(name)
        return running[0] if running else None

    async def stop(self, ref: ModelRef) -> Model:
        """Unload a model through the scheduler (once the requests it answers are done); not
        an error when it was not loaded. A model the scheduler does not hold (loaded before
        modelyard started, or by its runtime) is unloaded directly."""
        target = await self.resolve(ref)
        if not self.loading.startable(target):
            assert target.instance is not None
            raise not_supported(target.instance.config, "stopped")
        key = qualified(target.key)
        if self.scheduler.is_loaded(key):
            await self.scheduler.unload(key)
            return await self._row(target)
        return await self.loading.unload(ref)

    # -- delete and recreate -------------------------------------------------------------------

    async def delete(self, ref: ModelRef) -> DeletedModel:
        """Remove a model from its runtime (a local file: the file) and from the catalog."""
        target = await self.resolve(ref)
        async with self.loading.lock(target.key):
            await self._delete(target)
        return DeletedModel(*target.key)

    async def _delete(self, target: Resolved) -> None:
        instance = target.instance
        try:
            if instance is None:
                await self._delete_local(target)
            elif target.provider.capabilities.deletes_models:
                await target.provider.delete(self.loading.http, instance.config, target.name)
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
        path = self.loading.gguf_path(target)
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
        async with self.loading.lock(target.key):
            if target.model is None:
                raise target.not_found()
            request = await asyncio.to_thread(self._source_request, target)
            await self._delete(target)
            await self.catalog.placeholder(_placeholder(target.model))
            try:
                download = await self.downloads.create(request)
            except ModelyardError as exc:
                failed = ModelMeta(error=exc.detail)
                await self.catalog.set_state(target.key, ModelStatus.FAILED, None, failed)
                raise
        return RecreatedModel(await self.loading.model(target), download)

    async def install(self, request: DownloadRequest) -> DownloadView:
        """Start a download (a recommended model's install button): the download task."""
        task, _ = await self.downloads.submit(request)
        return task

    def _source_request(self, target: Resolved) -> RefetchRequest:
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
        model = target.model or await self.loading.synced(target)
        if target.instance is None:
            self.loading.gguf_path(target)
        return await describe(self.settings, self.catalog, model, target.instance)

    def resources(self) -> ResourcesReport:
        """``GET /api/system/resources``."""
        return running_models(self.catalog)


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


async def _quietly(load: Awaitable[None]) -> None:
    """A load nobody awaits: its failure is in the model's state and the scheduler's view."""
    with contextlib.suppress(ModelyardError):
        await load
