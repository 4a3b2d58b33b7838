"""Start, stop, delete, recreate and batch operations on catalog models (SPEC §4).

* **start** — Ollama: an empty generate request; GGUF: a llama.cpp server for the file
  (``gguf_servers``); LM Studio: its load call. A memory check runs first (the model's
  estimate against free VRAM or RAM) and refuses with 507 ``insufficient_memory`` unless
  ``force``. With ``wait`` (the default) the call returns once the model is loaded.
* **stop** — Ollama: ``keep_alive: 0``; GGUF: stop that server; LM Studio: unload.
* **delete** — Ollama: ``/api/delete``; GGUF: remove the file(s), refused with 409
  ``model_running`` while a server runs it.
* **recreate** — delete, then download again from the recorded source through the download
  manager.
* **batch** — one action on many models, a result per item and ``batch.progress`` events.

Every operation ends with the catalog updated (``model.state`` events) and a sync scheduled.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from modelyard.config import ModelMode, ProviderKind, Settings
from modelyard.downloads.views import DownloadView
from modelyard.errors import Conflict, ModelyardError, NotFound
from modelyard.events import BATCH_PROGRESS, BatchProgress
from modelyard.gguf.metadata import split_part, split_paths
from modelyard.gguf.servers import GgufServers
from modelyard.models.catalog import LOCAL_SCOPE, Catalog
from modelyard.models.memory import default_context, estimate_for, gguf_info, running_models
from modelyard.models.operations import (
    lmstudio_load,
    lmstudio_unload,
    model_not_found,
    not_supported,
    ollama_delete,
    ollama_load,
    ollama_unload,
)
from modelyard.models.sources import LOCAL_INSTANCE, ModelEntry, hf_source
from modelyard.models.store import Key, Scope
from modelyard.providers.registry import parse_provider
from modelyard.runtimes.instances import Instance, InstanceRegistry
from modelyard.runtimes.resources import MemoryEstimate, check_fits, system_resources
from modelyard.validation import (
    ollama_display_name,
    resolve_inside,
    validate_model_name,
    validate_ollama_name,
    validate_relative_path,
)

Action = Literal["start", "stop", "delete"]


class DownloadCreator(Protocol):
    """What recreate needs of the download manager: ``POST /api/downloads`` as a call."""

    async def create(self, request: dict[str, Any]) -> DownloadView: ...


@dataclass(frozen=True)
class Target:
    """A resolved model reference. ``instance`` is None for GGUF files of the models dir."""

    kind: ProviderKind
    key: Key
    model: dict[str, Any] | None
    instance: Instance | None

    @property
    def name(self) -> str:
        return self.key[2]

    @property
    def scope(self) -> Scope:
        return (self.key[0], self.key[1])

    def not_found(self) -> NotFound:
        if self.instance is not None:
            return model_not_found(self.name, self.instance)
        return NotFound(
            f"there is no GGUF model {self.name!r} in the models directory",
            code="model_not_found",
            hint="GET /api/models/list shows the models; names are paths in the models dir.",
        )


def _same_ctx(target: Target, running: list[Instance], ctx_size: int | None) -> Instance:
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
        downloads: Callable[[], DownloadCreator],
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.servers = servers
        self.instances = instances
        self._downloads = downloads
        self._locks: dict[Key, asyncio.Lock] = {}
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

    async def resolve(self, provider: str, name: str, instance_id: str | None = None) -> Target:
        """Validate a model reference and find its instance and catalog row.

        The row is read in the event loop: an indexed SQLite read of one name takes a fraction
        of a millisecond, less than the hand-offs to and from a thread would on the way to a
        started model (readers never wait for writers in WAL mode)."""
        kind = parse_provider(provider)
        name = validate_model_name(name)
        if kind is ProviderKind.OLLAMA:
            name = ollama_display_name(validate_ollama_name(name))
        found: list[dict[str, Any]] | None = None  # every row of that name, when looked up
        if instance_id is None:
            found = self.catalog.find(kind.value, name)
            instance_id = self._pick_instance(kind, [m["instance_id"] for m in found])
        if kind is ProviderKind.LLAMACPP and instance_id == LOCAL_INSTANCE:
            validate_relative_path(name)
            instance = None
        else:
            instance = self.instances.get(kind.value, instance_id)
        key = (kind.value, instance_id, name)
        if found is not None:
            row = next((m for m in found if m["instance_id"] == instance_id), None)
        else:
            row = self.catalog.get(key)
        return Target(kind, key, row, instance)

    def _pick_instance(self, kind: ProviderKind, listed: list[str]) -> str:
        """The instance a name without one means: a GGUF file of the models directory, else
        the instance listing it, else the only (or the ``default``) instance of the provider."""
        if kind is ProviderKind.LLAMACPP and (LOCAL_INSTANCE in listed or not listed):
            return LOCAL_INSTANCE
        if listed:
            return listed[0]
        ids = [i.config.id for i in self.instances.list() if i.config.provider is kind]
        return ids[0] if len(ids) == 1 else "default"

    def _lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    # -- start -------------------------------------------------------------------------------

    async def start(
        self,
        provider: str,
        name: str,
        instance_id: str | None = None,
        *,
        force: bool = False,
        wait: bool = True,
        ctx_size: int | None = None,
    ) -> dict[str, Any]:
        """Load a model; with ``wait``, return once the runtime says it is loaded."""
        target = await self.resolve(provider, name, instance_id)
        async with self._lock(target.key):
            if target.instance is None:
                return await self._start_gguf(target, force=force, wait=wait, ctx_size=ctx_size)
            instance = target.instance
            if target.kind in (ProviderKind.OLLAMA, ProviderKind.LMSTUDIO):
                loaded, target = await self._loaded_now(target)
                if loaded is not None:
                    return loaded  # already in memory: no second copy, no memory check
            if target.kind is ProviderKind.OLLAMA:
                await self._require_memory(target, force, ctx_size)
                await ollama_load(instance, target.name, self.settings.start_timeout_s)
            elif target.kind is ProviderKind.LMSTUDIO:
                await self._require_memory(target, force, ctx_size)
                await lmstudio_load(self._http, instance, target.name, ctx_size)
            elif target.kind is ProviderKind.LLAMACPP and instance.config.managed:
                await self.servers.control.launch(instance)
                if wait:
                    await self.servers.wait_loaded(instance)
            else:
                raise not_supported(instance, "started")
            return await self._synced(target)

    async def _loaded_now(self, target: Target) -> tuple[dict[str, Any] | None, Target]:
        """Ask the runtime (a sync of the instance) whether the model is loaded right now:
        the model when it is, and the target with its fresh row."""
        result = await self.catalog.sync({target.scope})
        model = await asyncio.to_thread(self.catalog.get, target.key)
        if result["errors"] or model is None:  # the load call says what is wrong
            return None, target
        fresh = Target(target.kind, target.key, model, target.instance)
        return (model if model["status"] == "loaded" else None), fresh

    async def _start_gguf(
        self, target: Target, *, force: bool, wait: bool, ctx_size: int | None
    ) -> dict[str, Any]:
        path = self._gguf_path(target)
        model = target.model or await self._synced(target)
        running = self.servers.running(target.name)
        if running:
            return await self._await_loaded(target, _same_ctx(target, running, ctx_size), wait)
        # A stat and a cache lookup, then /proc/meminfo and statvfs: well under a millisecond
        # each, so here rather than behind thread hand-offs on the way to a loaded model.
        info = gguf_info(self.catalog.metadata, path)
        ctx = ctx_size or default_context(info, self.settings.default_ctx_size)
        estimate = estimate_for(model, info=info, instance=None, ctx_size=ctx)
        if estimate is not None:
            self._check_fits(estimate, force)
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.catalog.starting(target.name))
            instance = await self.servers.launch(target.name, path, ModelMode(model["mode"]), ctx)
            # Recorded once the server is on its way: the write overlaps its loading.
            await self.catalog.set_state(target.key, "starting", None)
            if wait:
                return await self._await_loaded(target, instance, True)
            task = asyncio.create_task(self._finish_start(target, instance, stack.pop_all()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await self._model(target)

    async def _await_loaded(self, target: Target, instance: Instance, wait: bool) -> dict[str, Any]:
        if not wait:
            return await self._model(target)
        try:
            await self.servers.wait_loaded(instance, announce=False)
        except ModelyardError:
            await self.catalog.set_state(target.key, "available", None)
            raise
        info = self.servers.server_info(instance)  # reads the PID file: well under 1 ms
        status = "loaded" if info is not None else "available"  # it may have died at once
        model = await self.catalog.set_state(target.key, status, info)
        # Only now: the status check starts a catalog sync of the instance that came up,
        # which would hold the catalog while the state above is written.
        self.servers.announce(instance)
        self.catalog.schedule({LOCAL_SCOPE})
        return model or await self._model(target)

    async def _finish_start(
        self, target: Target, instance: Instance, starting: contextlib.ExitStack
    ) -> None:
        with starting, contextlib.suppress(ModelyardError):  # the failure is in its state
            await self._await_loaded(target, instance, True)

    # -- stop --------------------------------------------------------------------------------

    async def stop(
        self, provider: str, name: str, instance_id: str | None = None
    ) -> dict[str, Any]:
        """Unload a model; not an error when it was not loaded."""
        target = await self.resolve(provider, name, instance_id)
        async with self._lock(target.key):
            instance = target.instance
            if instance is None:
                self._gguf_path(target)
                await self.servers.stop(target.name)
                model = await self.catalog.set_state(target.key, "available", None)
                self.catalog.schedule({LOCAL_SCOPE})
                return model or await self._model(target)
            if target.kind is ProviderKind.OLLAMA:
                await ollama_unload(instance, target.name, self.settings.start_timeout_s)
            elif target.kind is ProviderKind.LMSTUDIO:
                await lmstudio_unload(self._http, instance, target.name)
            elif target.kind is ProviderKind.LLAMACPP and instance.config.managed:
                await self.servers.control.stop(instance)
            else:
                raise not_supported(instance, "stopped")
            return await self._synced(target)

    # -- delete and recreate -------------------------------------------------------------------

    async def delete(
        self, provider: str, name: str, instance_id: str | None = None
    ) -> dict[str, Any]:
        """Remove a model from its runtime (GGUF: the file) and from the catalog."""
        target = await self.resolve(provider, name, instance_id)
        async with self._lock(target.key):
            await self._delete(target)
        return {
            "success": True,
            "provider": target.key[0],
            "instance_id": target.key[1],
            "name": target.name,
            "message": f"deleted {target.name}",
        }

    async def _delete(self, target: Target) -> None:
        instance = target.instance
        try:
            if instance is None:
                await self._delete_gguf(target)
            elif target.kind is ProviderKind.OLLAMA:
                await ollama_delete(instance, target.name, self.settings.start_timeout_s)
            else:
                raise not_supported(instance, "deleted")
        except NotFound:
            await self.catalog.forget(target.key)  # it was gone already: drop the stale row
            raise
        await self.catalog.forget(target.key)
        self.catalog.schedule({target.scope})

    async def _delete_gguf(self, target: Target) -> None:
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

    async def recreate(
        self, provider: str, name: str, instance_id: str | None = None
    ) -> dict[str, Any]:
        """Delete the model and download it again from where it came from."""
        target = await self.resolve(provider, name, instance_id)
        async with self._lock(target.key):
            if target.model is None:
                raise target.not_found()
            request = await asyncio.to_thread(self._source_request, target)
            await self._delete(target)
            await self.catalog.placeholder(self._placeholder(target.model))
            try:
                download = await self._downloads().create(request)
            except ModelyardError as exc:
                await self.catalog.set_state(target.key, "failed", None, {"error": exc.detail})
                raise
        return {**await self._model(target), "download": download}

    async def install(self, request: dict[str, Any]) -> DownloadView:
        """Start a download (a recommended model's install button): the download task."""
        return await self._downloads().create(request)

    def _source_request(self, target: Target) -> dict[str, Any]:
        recorded = self.catalog.store.source_of(target.key)
        if recorded is not None and recorded[1].get("source"):
            return recorded[1]
        if target.kind is ProviderKind.OLLAMA:
            return {"source": "ollama", "model_name": target.name, "instance_id": target.key[1]}
        derived = hf_source(target.name) if target.instance is None else None
        if derived is not None:
            return derived[1]
        raise Conflict(
            f"modelyard does not know where {target.name} came from",
            code="no_source",
            hint="Only models downloaded through modelyard (or from Ollama) can be recreated.",
        )

    def _placeholder(self, model: dict[str, Any]) -> ModelEntry:
        fields = ("size", "family", "parameter_size", "quantization", "format", "mode", "source")
        kept = {f: model[f] for f in fields}
        return ModelEntry(
            model["provider"], model["instance_id"], model["name"], status="downloading", **kept
        )

    # -- batch -------------------------------------------------------------------------------

    async def batch(
        self, action: Action, items: list[dict[str, Any]], *, force: bool = False
    ) -> dict[str, Any]:
        """Run ``action`` on each item in turn; one result per item, progress as events."""
        batch_id = uuid.uuid4().hex[:12]
        results: list[dict[str, Any]] = []
        for item in items:
            result: dict[str, Any] = {
                "provider": item["provider"],
                "name": item["name"],
                "instance_id": item.get("instance_id"),
                "ok": True,
            }
            try:
                if action == "start":
                    done = await self.start(**item, force=force)
                elif action == "stop":
                    done = await self.stop(**item)
                else:
                    done = await self.delete(**item)
                result.update(instance_id=done["instance_id"], name=done["name"])
            except ModelyardError as exc:
                result.update(ok=False, code=exc.error_code, error=exc.detail, hint=exc.hint)
            results.append(result)
            progress = BatchProgress(
                batch_id=batch_id, action=action, done=len(results), total=len(items), result=result
            )
            self.catalog.bus.publish(BATCH_PROGRESS, progress)
        failed = sum(1 for r in results if not r["ok"])
        return {
            "batch_id": batch_id,
            "action": action,
            "results": results,
            "ok": len(results) - failed,
            "failed": failed,
        }

    # -- details and memory ----------------------------------------------------------------------

    async def details(
        self, provider: str, name: str, instance_id: str | None = None
    ) -> dict[str, Any]:
        """The model with its GGUF metadata, memory estimate, fit verdict and source."""
        target = await self.resolve(provider, name, instance_id)
        model = target.model or await self._synced(target)
        out: dict[str, Any] = {**model, "gguf": None, "estimate": None, "fit": None}
        info = None
        if target.instance is None:
            info = await asyncio.to_thread(
                gguf_info, self.catalog.metadata, self._gguf_path(target)
            )
            out["gguf"] = info.to_dict()
            out["servers"] = [i.public() for i in self.catalog.servers_for(target.name)]
        ctx = default_context(info, self.settings.default_ctx_size)
        estimate = estimate_for(model, info=info, instance=target.instance, ctx_size=ctx)
        if estimate is not None:
            resources = await asyncio.to_thread(system_resources, self.catalog.models_dir)
            fit = check_fits(estimate, resources, self.settings.memory_margin_bytes)
            out.update(estimate=estimate.to_dict(), fit=fit.to_dict())
        recorded = await asyncio.to_thread(self.catalog.store.source_of, target.key)
        out["source_request"] = recorded[1] if recorded else None
        return out

    async def _require_memory(self, target: Target, force: bool, ctx_size: int | None) -> None:
        if target.model is None:
            return
        ctx = ctx_size or self.settings.default_ctx_size
        estimate = estimate_for(target.model, info=None, instance=target.instance, ctx_size=ctx)
        if estimate is not None:
            self._check_fits(estimate, force)

    def _check_fits(self, estimate: MemoryEstimate, force: bool) -> None:
        resources = system_resources(self.catalog.models_dir)
        check_fits(estimate, resources, self.settings.memory_margin_bytes).require(force=force)

    def resources(self) -> dict[str, Any]:
        """``GET /api/system/resources``."""
        return running_models(self.catalog.models_dir, self.catalog.active())

    # -- helpers -----------------------------------------------------------------------------

    def _gguf_path(self, target: Target) -> Path:
        path = resolve_inside(self.catalog.models_dir, target.name)
        if not path.is_file():
            raise target.not_found()
        return path

    async def _synced(self, target: Target) -> dict[str, Any]:
        """The model after syncing its scope (it may have appeared since the last sync)."""
        await self.catalog.sync({target.scope})
        return await self._model(target)

    async def _model(self, target: Target) -> dict[str, Any]:
        model = await asyncio.to_thread(self.catalog.get, target.key)
        if model is None:
            raise target.not_found()
        return model
