"""The model catalog (SPEC §4): every instance's models merged into one list, kept in the store
and synchronised with the instances.

A sync lists the chosen *scopes* in parallel — an instance through its provider, or the local
files (``gguf/local.py``: the GGUF files of the models directory) — and applies the listings in
one transaction, reporting exact ``added``/``updated``/``removed``/``unchanged`` counts. Syncs
run one at a time. Besides ``POST /api/models/sync``, background syncs run when a provider's
status changes (it came up, or went away), after every finished download and after every start,
stop and delete. Changes go out as ``catalog.changed`` (the counts) and ``model.state`` events.

A GGUF file is *loaded* only when a managed llama.cpp server for it runs and its ``/health``
answers 200; a server still loading makes the model ``starting``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from modelyard import events
from modelyard.config import Settings
from modelyard.downloads.states import DownloadState, SourceKind
from modelyard.downloads.views import DownloadView
from modelyard.errors import ModelyardError
from modelyard.events import Event, EventBus
from modelyard.gguf.files import MetadataCache
from modelyard.gguf.local import (
    ServerState,
    list_local,
    local_key,
    local_scope,
    runner,
    served_file,
    server_details,
)
from modelyard.models.store import CatalogStore, Listing, SearchQuery, SyncCounts
from modelyard.models.types import (
    LoadedFigures,
    Model,
    ModelEntry,
    ModelKey,
    ModelMeta,
    ModelPage,
    ModelState,
    ModelStatus,
    RefetchRequest,
    Scope,
    SyncError,
    SyncResult,
)
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import Instance, InstanceRegistry
from modelyard.runtimes.processes import ProcessManager
from modelyard.runtimes.resources import process_memory

log = logging.getLogger("modelyard.models.catalog")
_DEBOUNCE_S = 0.05
_MEMORY_TTL_S = 2.0  # how old a running GGUF server's memory figure in the list may be
_ACTIVE_DOWNLOAD = frozenset(
    {DownloadState.QUEUED, DownloadState.DOWNLOADING, DownloadState.VERIFYING, DownloadState.PAUSED}
)


class Catalog:
    """The merged model list: sync, search, single models and their state."""

    def __init__(
        self,
        settings: Settings,
        store: CatalogStore,
        bus: EventBus,
        instances: InstanceRegistry,
        processes: ProcessManager,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.instances = instances
        self.processes = processes
        self.metadata = MetadataCache()
        self._lock = asyncio.Lock()
        timeout = settings.api_timeout_ms / 1000
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[Scope] | None = set()  # None: everything
        self._scheduled: asyncio.Task[None] | None = None
        self._downloads: dict[ModelKey, ModelStatus] = {}  # placeholders: downloading, failed
        self._starting: set[str] = set()  # GGUF models whose start is under way
        self._deferred = False  # a sync was asked for meanwhile by one of their servers
        # Download events are applied one at a time, in order: a task's "failed" must never be
        # overtaken by its earlier "downloading".
        self._download_events: asyncio.Queue[DownloadView] = asyncio.Queue()
        self._download_worker: asyncio.Task[None] | None = None
        self._list_cache: tuple[int, float, bytes] | None = None  # version, expiry, body

    @property
    def models_dir(self) -> Path:
        return self.settings.resolved_models_dir

    # -- background ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for provider and download events and sync everything once."""
        self._loop = asyncio.get_running_loop()
        self.bus.add_listener(events.PROVIDER_STATUS, self._on_provider_status)
        self.bus.add_listener(events.PROVIDER_REMOVED, self._on_provider_status)
        self.bus.add_listener(events.DOWNLOAD_STATE, self._on_download_state)
        self._download_worker = asyncio.create_task(self._follow_downloads())
        self.schedule(None)

    async def close(self) -> None:
        for task in (self._scheduled, self._download_worker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._scheduled = self._download_worker = None
        await self._http.aclose()

    def _threadsafe(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_provider_status(self, event: Event[Any]) -> None:
        """A status change (came up, went away) or a removed instance: sync what it serves."""
        key = f"{event.data.get('provider')}/{event.data.get('instance_id')}"
        self._threadsafe(self._schedule_instance, key)

    def _schedule_instance(self, key: str) -> None:
        instance = self.instances.find(key)
        if instance is None:
            self.schedule(None)  # removed: a full sync drops its models
        elif self.local_model_name(instance) in self._starting:
            # The start records the model's state itself; a sync now would only compete with
            # the loading server for the CPU. It runs when the start ends (``starting``).
            self._deferred = True
        else:
            self.schedule({self.scope_of(instance)})

    def schedule(self, scopes: set[Scope] | None) -> None:
        """Sync these scopes (None: all) soon, coalescing requests that arrive together.
        Call it from the event loop's thread."""
        if self._pending is not None:
            self._pending = None if scopes is None else self._pending | scopes
        if self._scheduled is None or self._scheduled.done():
            self._scheduled = asyncio.get_running_loop().create_task(self._run_scheduled())

    @property
    def busy(self) -> bool:  # a background sync is scheduled or running
        return self._scheduled is not None and not self._scheduled.done()

    async def _run_scheduled(self) -> None:
        await asyncio.sleep(_DEBOUNCE_S)
        scopes, self._pending = self._pending, set()
        try:
            await self.sync(scopes)
        except Exception:  # a background sync must never kill the loop's task
            log.exception("background catalog sync failed")
        if self._pending is None or self._pending:
            self._scheduled = asyncio.get_running_loop().create_task(self._run_scheduled())

    # -- scopes --------------------------------------------------------------------------------

    def scope_of(self, instance: Instance) -> Scope:
        """The servers of local files report through the local files' scope."""
        if self.local_model_name(instance) is not None:
            return local_scope()
        return _scope(instance)

    def local_model_name(self, instance: Instance) -> str | None:
        """The local file (path in the models dir) an instance serves, if it serves one."""
        return served_file(instance.config, self.models_dir)

    def servers_for(self, name: str) -> list[Instance]:
        """Managed llama.cpp instances serving the GGUF file ``name``."""
        return [i for i in self.instances.list() if self.local_model_name(i) == name]

    def _listable(self) -> list[Instance]:
        return [
            i
            for i in self.instances.list()
            if self.local_model_name(i) is None
            and (
                not registry.get(i.config.provider).capabilities.needs_api_key
                or i.config.has_api_key()
            )
        ]

    # -- sync ------------------------------------------------------------------------------------

    async def sync(self, scopes: set[Scope] | None = None) -> SyncResult:
        """List the scopes (None: all) and make the store match; returns the counts."""
        local = local_scope()
        async with self._lock:
            listable = self._listable()
            targets = [_scope(i) for i in listable]
            live = {local, *targets}
            if scopes is not None:
                targets = [t for t in targets if t in scopes]
            jobs = [self._list_scope(i) for i in listable if _scope(i) in targets]
            if scopes is None or local in scopes:
                jobs.append(self._list_local())
            listings = await asyncio.gather(*jobs)
            counts = await asyncio.to_thread(
                self.store.apply,
                listings,
                live_scopes=live if scopes is None else None,
                keep=dict(self._downloads),
            )
        # A file that cannot be read is listed (with its error) and named here too.
        unreadable = [
            SyncError(
                entry.provider,
                entry.instance_id,
                code,
                entry.meta.get("error") or "",
                name=entry.name,
            )
            for item in listings
            for entry in item.entries or ()
            if (code := entry.meta.get("error_code"))
        ]
        result = SyncResult(
            counts.added,
            counts.updated,
            counts.removed,
            counts.unchanged,
            (*(item.error for item in listings if item.error is not None), *unreadable),
        )
        self._publish(counts, result)
        return result

    def _publish(self, counts: SyncCounts, result: SyncResult) -> None:
        for state in counts.changed_states:
            self.bus.publish(events.MODEL_STATE, state.wire())
        if counts.changed:
            self.bus.publish(events.CATALOG_CHANGED, result.counts())

    async def _list_scope(self, instance: Instance) -> Listing:
        scope = _scope(instance)
        limit = max(2 * self.settings.api_timeout_ms / 1000, 1.0)
        provider = registry.get(instance.config.provider)
        try:
            async with asyncio.timeout(limit):
                entries = await provider.list_models(self._http, instance.config, limit)
        except TimeoutError:
            return Listing(scope, None, _failure(scope, "timeout", f"no answer in {limit:g} s"))
        except ModelyardError as exc:
            error = _failure(scope, exc.error_code, exc.detail, exc.hint)
            return Listing(scope, None, error)
        return Listing(scope, entries)

    async def _list_local(self) -> Listing:
        scope = local_scope()
        by_name: dict[str, ServerState] = {}
        servers = [(n, i) for i in self.instances.list() if (n := self.local_model_name(i))]
        states = await asyncio.gather(*(self.server_state(i) for _, i in servers))
        for (name, _), state in zip(servers, states, strict=True):
            known = by_name.get(name)
            if state is not None and (known is None or known.status is not ModelStatus.LOADED):
                by_name[name] = state
        for name in self._starting:  # launched, but maybe before its process is on record
            by_name.setdefault(name, ServerState(ModelStatus.STARTING, None))
        sources = await asyncio.to_thread(self.store.sources, scope)
        try:
            entries = await asyncio.to_thread(
                list_local, self.models_dir, self.metadata, by_name, sources
            )
        except OSError as exc:
            return Listing(scope, None, _failure(scope, "unreadable", str(exc)))
        return Listing(scope, entries)

    @contextlib.contextmanager
    def starting(self, name: str) -> Iterator[None]:
        """While a GGUF model's start is under way (launch, then loading), syncs show it
        ``starting`` and its server's status changes do not start syncs; the one they asked
        for runs when the start ends. Enter and leave it on the event loop's thread."""
        self._starting.add(name)
        try:
            yield
        finally:
            self._starting.discard(name)
            if self._deferred and not self._starting:
                self._deferred = False
                self.schedule({local_scope()})

    async def server_state(self, instance: Instance) -> ServerState | None:
        """Loaded or starting, for a local file's server that runs; None when none does."""
        check = await asyncio.to_thread(self.processes.check, instance.key)
        if not check.alive or check.record is None:
            return None
        if await self.serving(instance.config.base_url):
            return ServerState(ModelStatus.LOADED, server_details(instance, check.record))
        return ServerState(ModelStatus.STARTING, None)

    async def serving(self, base_url: str) -> bool:
        """Whether the local files' server at ``base_url`` has loaded its model."""
        return await runner().serving(self._http, base_url)

    # -- single models ---------------------------------------------------------------------

    def get(self, key: ModelKey) -> Model | None:
        return _with_memory(self.store.get(key))

    def find(self, provider: str, name: str) -> list[Model]:
        return [_measured(m) for m in self.store.find(provider, name)]

    async def set_state(
        self,
        key: ModelKey,
        status: ModelStatus,
        loaded: LoadedFigures | None,
        meta: ModelMeta | None = None,
    ) -> Model | None:
        """Record a state the lifecycle just observed; publishes ``model.state`` on a change.
        409 ``invalid_model_transition`` when the model's status cannot become ``status``.

        Written in the event loop: one indexed SELECT and at most one UPDATE without fsync
        (WAL, synchronous=NORMAL) take well under a millisecond, less than the hand-offs to
        and from a thread that a start answering ``loaded`` would otherwise wait for."""
        async with self._lock:
            model, event = self.store.set_state(key, status, loaded, meta)
        if event is not None:
            self.bus.publish(events.MODEL_STATE, event.wire())
        return _with_memory(model)

    async def forget(self, key: ModelKey) -> None:
        """Drop a deleted model's row at once (the background sync confirms it)."""
        async with self._lock:
            self._downloads.pop(key, None)
            removed = await asyncio.to_thread(self.store.delete, key)
        if removed:
            gone = ModelState(key.provider, key.instance_id, key.name, ModelStatus.REMOVED, None)
            self.bus.publish(events.MODEL_STATE, gone.wire())
            self.bus.publish(events.CATALOG_CHANGED, SyncResult(removed=1).counts())

    def list_all(self) -> list[Model]:
        return [_measured(m) for m in self.store.list_all()]

    def cached_list_json(self) -> bytes | None:
        """The encoded list when nothing has changed since it was built, else None."""
        cached = self._list_cache
        if cached is not None and cached[0] == self.store.version and time.monotonic() < cached[1]:
            return cached[2]
        return None

    def list_json(self) -> bytes:
        """``{"models": [...]}`` encoded, rebuilt only after a write to the catalog (or, while
        a GGUF server runs, when its memory figure is older than a few seconds)."""
        cached = self.cached_list_json()
        if cached is not None:
            return cached
        version, now = self.store.version, time.monotonic()
        models = self.list_all()
        body = json.dumps({"models": [m.wire() for m in models]}, separators=(",", ":")).encode()
        live = any(m.loaded is not None and "memory" in m.loaded for m in models)
        self._list_cache = (version, now + _MEMORY_TTL_S if live else math.inf, body)
        return body

    def search(self, query: SearchQuery) -> ModelPage:
        page = self.store.search(query)
        for model in page.models:
            _measured(model)
        return page

    def active(self) -> list[Model]:
        """Models loaded or starting right now (the ``models`` section of the WS snapshot)."""
        return [_measured(m) for m in self.store.active()]

    def names(self) -> list[ModelKey]:
        """The key of every model of a registered provider."""
        return self.store.names(registry.kinds())

    def source_of(self, key: ModelKey) -> tuple[str, RefetchRequest] | None:
        """The source recorded for a model, and the download request that fetches it."""
        return self.store.source_of(key)

    # -- downloads -------------------------------------------------------------------------------

    def _on_download_state(self, event: Event[DownloadView]) -> None:
        self._threadsafe(self._download_events.put_nowait, event.payload)

    async def _follow_downloads(self) -> None:
        while True:
            download = await self._download_events.get()
            key = self.download_key(download)
            if key is None:
                continue
            try:
                await self._apply_download(key, download)
            except Exception:  # one bad event must not stop the others
                log.exception("could not follow download %s", download.id)

    def download_key(self, download: DownloadView) -> ModelKey | None:
        """The catalog key a download produces, from its source fields: a model of the
        provider that pulled it, or a local file."""
        puller = registry.puller(download.source)
        if puller is not None and download.model_name is not None:
            instance_id = download.instance_id or "default"
            return ModelKey(puller.kind, instance_id, puller.catalog_name(download.model_name))
        if download.path:
            try:
                name = Path(download.path).resolve().relative_to(self.models_dir.resolve())
            except ValueError:
                return None
            return local_key(name.as_posix())
        if download.source is SourceKind.HF and download.repo and download.filename:
            return local_key(f"hf/{download.repo}/{download.filename}")
        if download.source is SourceKind.URL and download.filename:
            return local_key(download.filename)
        return None

    async def placeholder(self, entry: ModelEntry) -> None:
        """Show a model being downloaded again (recreate) until its download ends."""
        self._downloads[entry.key] = entry.status
        if await asyncio.to_thread(self.store.add_placeholder, entry):
            self.bus.publish(events.MODEL_STATE, entry.state().wire())
            self.bus.publish(events.CATALOG_CHANGED, SyncResult(added=1).counts())

    async def _apply_download(self, key: ModelKey, download: DownloadView) -> None:
        if download.state in _ACTIVE_DOWNLOAD:
            self._downloads[key] = ModelStatus.DOWNLOADING
            entry = ModelEntry(
                *key,
                size=download.total,
                status=ModelStatus.DOWNLOADING,
                mode=download.mode.value,
                source=_source_text(download),
            )
            if await asyncio.to_thread(self.store.add_placeholder, entry):
                self.bus.publish(events.CATALOG_CHANGED, SyncResult(added=1).counts())
            await self.set_state(key, ModelStatus.DOWNLOADING, None)
            return
        if download.state is DownloadState.FAILED and key in self._downloads:
            self._downloads[key] = ModelStatus.FAILED
            await self.set_state(key, ModelStatus.FAILED, None, ModelMeta(error=download.error))
            return
        self._downloads.pop(key, None)  # completed (the manager recorded the source) or gone
        self.schedule({key.scope})


def _scope(instance: Instance) -> Scope:
    return Scope(instance.config.provider, instance.config.id)


def _failure(scope: Scope, code: str, detail: str, hint: str | None = None) -> SyncError:
    return SyncError(scope.provider, scope.instance_id, code, detail, hint)


def _source_text(download: DownloadView) -> str:
    puller = registry.puller(download.source)
    if puller is not None:
        return puller.kind
    if download.source is SourceKind.HF and download.repo:
        rev = f"@{download.revision}" if download.revision else ""
        return f"hf://{download.repo}/{download.filename or ''}{rev}"
    return download.url or "local"


def _measured(model: Model) -> Model:
    """Add the resident memory of a loaded GGUF server's process, measured now."""
    loaded = model.loaded
    pid = loaded.get("pid") if loaded is not None else None
    if loaded is not None and isinstance(pid, int):
        model.loaded = {**loaded, "memory": process_memory([pid]).get(pid)}
    return model


def _with_memory(model: Model | None) -> Model | None:
    return _measured(model) if model is not None else None
