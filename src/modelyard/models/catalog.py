"""The model catalog (SPEC §4): every instance's models merged into one list, kept in the
store and synchronised with the instances.

A sync lists the chosen *scopes* in parallel — an instance, or ``llamacpp/local`` for the GGUF
files of the models directory — and applies the listings in one transaction, reporting exact
``added``/``updated``/``removed``/``unchanged`` counts. Syncs run one at a time. Besides
``POST /api/models/sync``, background syncs run when a provider's status changes (it came up,
or went away), after every finished download and after every start, stop and delete. Changes
are published as ``catalog.changed`` (the counts) and ``model.state`` events.

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
from modelyard.config import ProviderKind, Settings
from modelyard.errors import ModelyardError
from modelyard.events import Event, EventBus
from modelyard.gguf.files import MetadataCache
from modelyard.models.sources import (
    LOCAL_INSTANCE,
    ModelEntry,
    list_instance,
    list_local,
)
from modelyard.models.store import (
    CatalogStore,
    Key,
    Listing,
    Scope,
    SearchQuery,
    SyncCounts,
    state_event,
)
from modelyard.providers.registry import adapter_for
from modelyard.runtimes.instances import Instance, InstanceRegistry
from modelyard.runtimes.processes import ProcessManager, ProcessRecord
from modelyard.runtimes.resources import process_memory
from modelyard.validation import ollama_display_name

log = logging.getLogger("modelyard.models.catalog")
LOCAL_SCOPE: Scope = (ProviderKind.LLAMACPP.value, LOCAL_INSTANCE)
_DEBOUNCE_S = 0.05
_MEMORY_TTL_S = 2.0  # how old a running GGUF server's memory figure in the list may be
_ACTIVE_DOWNLOAD = frozenset({"queued", "downloading", "verifying", "paused"})


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
        self._downloads: dict[Key, str] = {}  # placeholder key → "downloading" | "failed"
        self._starting: set[str] = set()  # GGUF models whose start is under way
        self._deferred = False  # a sync was asked for meanwhile by one of their servers
        # Download events are applied one at a time, in order: a task's "failed" must never be
        # overtaken by its earlier "downloading".
        self._download_events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
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
        self.bus.add_snapshot_source("models", self._snapshot)
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
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

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

    async def _run_scheduled(self) -> None:
        await asyncio.sleep(_DEBOUNCE_S)
        scopes, self._pending = self._pending, set()
        try:
            await self.sync(scopes)
        except Exception:  # a background sync must never kill the loop's task
            log.exception("background catalog sync failed")
        if self._pending is None or self._pending:
            self._scheduled = asyncio.get_running_loop().create_task(self._run_scheduled())

    async def _snapshot(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.active)

    # -- scopes --------------------------------------------------------------------------------

    def scope_of(self, instance: Instance) -> Scope:
        """GGUF servers of the models directory report through ``llamacpp/local``."""
        if self.local_model_name(instance) is not None:
            return LOCAL_SCOPE
        return (instance.config.provider.value, instance.config.id)

    def local_model_name(self, instance: Instance) -> str | None:
        """The model name (path in the models dir) a managed llama.cpp instance serves."""
        cfg = instance.config
        if cfg.provider is not ProviderKind.LLAMACPP or not cfg.managed or not cfg.model:
            return None
        path = Path(cfg.model)
        path = path if path.is_absolute() else self.models_dir / path
        root = self.models_dir.resolve()
        try:
            return path.resolve().relative_to(root).as_posix()
        except ValueError:
            return None

    def servers_for(self, name: str) -> list[Instance]:
        """Managed llama.cpp instances serving the GGUF file ``name``."""
        return [i for i in self.instances.list() if self.local_model_name(i) == name]

    def _listable(self) -> list[Instance]:
        return [
            i
            for i in self.instances.list()
            if self.local_model_name(i) is None
            and (not adapter_for(i.config.provider).needs_api_key or i.config.resolved_api_key())
        ]

    # -- sync ------------------------------------------------------------------------------------

    async def sync(self, scopes: set[Scope] | None = None) -> dict[str, Any]:
        """List the scopes (None: all) and make the store match; returns the counts."""
        async with self._lock:
            listable = self._listable()
            targets = [(i.config.provider.value, i.config.id) for i in listable]
            live = {LOCAL_SCOPE, *targets}
            if scopes is not None:
                targets = [t for t in targets if t in scopes]
            wanted = scopes is None or LOCAL_SCOPE in scopes
            jobs = [self._list_scope(i) for i in listable if _scope(i) in targets]
            if wanted:
                jobs.append(self._list_local())
            listings = await asyncio.gather(*jobs)
            counts = await asyncio.to_thread(
                self.store.apply,
                listings,
                live_scopes=live if scopes is None else None,
                keep=dict(self._downloads),
            )
            errors = [
                {"provider": item.scope[0], "instance_id": item.scope[1], **item.error}
                for item in listings
                if item.error is not None
            ]
            # A file that cannot be read is listed (with its error) and named here too.
            errors += [
                {
                    "provider": entry.provider,
                    "instance_id": entry.instance_id,
                    "name": entry.name,
                    "code": entry.meta["error_code"],
                    "detail": entry.meta["error"],
                }
                for item in listings
                for entry in item.entries or ()
                if entry.meta.get("error_code")
            ]
        self._publish(counts)
        return {**counts.counts(), "errors": errors}

    def _publish(self, counts: SyncCounts) -> None:
        for data in counts.changed_states:
            self.bus.publish(events.MODEL_STATE, data)
        if counts.changed:
            self.bus.publish(events.CATALOG_CHANGED, counts.counts())

    async def _list_scope(self, instance: Instance) -> Listing:
        scope = _scope(instance)
        limit = max(2 * self.settings.api_timeout_ms / 1000, 1.0)
        try:
            async with asyncio.timeout(limit):
                entries = await list_instance(instance, self._http, limit)
        except TimeoutError:
            return Listing(scope, None, {"code": "timeout", "detail": f"no answer in {limit:g} s"})
        except ModelyardError as exc:
            error = {"code": exc.error_code, "detail": exc.detail, "hint": exc.hint}
            return Listing(scope, None, error)
        return Listing(scope, entries)

    async def _list_local(self) -> Listing:
        by_name: dict[str, dict[str, Any]] = {}
        servers = [(n, i) for i in self.instances.list() if (n := self.local_model_name(i))]
        states = await asyncio.gather(*(self.server_state(i) for _, i in servers))
        for (name, _), state in zip(servers, states, strict=True):
            if state is not None and by_name.get(name, {}).get("status") != "loaded":
                by_name[name] = state
        for name in self._starting:  # launched, but maybe before its process is on record
            by_name.setdefault(name, {"status": "starting", "loaded": None})
        sources = await asyncio.to_thread(self.store.sources, LOCAL_SCOPE)
        try:
            entries = await asyncio.to_thread(
                list_local, self.models_dir, self.metadata, by_name, sources
            )
        except OSError as exc:
            return Listing(LOCAL_SCOPE, None, {"code": "unreadable", "detail": str(exc)})
        return Listing(LOCAL_SCOPE, entries)

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
                self.schedule({LOCAL_SCOPE})

    async def server_state(self, instance: Instance) -> dict[str, Any] | None:
        """``{"status": "loaded"|"starting", "loaded": ...}`` of a running GGUF server, or None."""
        check = await asyncio.to_thread(self.processes.check, instance.key)
        if not check.alive or check.record is None:
            return None
        server = server_details(instance, check.record)
        healthy = await self.healthy(instance.config.base_url)
        return {
            "status": "loaded" if healthy else "starting",
            "loaded": server if healthy else None,
        }

    async def healthy(self, base_url: str) -> bool:
        """Whether a llama-server at ``base_url`` has its model loaded (``/health`` is 200)."""
        try:
            resp = await self._http.get(f"{base_url}/health")
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    # -- single models ---------------------------------------------------------------------

    def get(self, key: Key) -> dict[str, Any] | None:
        return _with_memory(self.store.get(key))

    def find(self, provider: str, name: str) -> list[dict[str, Any]]:
        return [m for m in (_with_memory(m) for m in self.store.find(provider, name)) if m]

    async def set_state(
        self,
        key: Key,
        status: str,
        loaded: dict[str, Any] | None,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Record a state the lifecycle just observed; publishes ``model.state`` on a change.

        Written in the event loop: one indexed SELECT and at most one UPDATE without fsync
        (WAL, synchronous=NORMAL) take well under a millisecond, less than the hand-offs to
        and from a thread that a start answering ``loaded`` would otherwise wait for."""
        async with self._lock:
            model, event = self.store.set_state(key, status, loaded, meta)
        if event is not None:
            self.bus.publish(events.MODEL_STATE, event)
        return _with_memory(model)

    async def forget(self, key: Key) -> None:
        """Drop a deleted model's row at once (the background sync confirms it)."""
        async with self._lock:
            self._downloads.pop(key, None)
            removed = await asyncio.to_thread(self.store.delete, key)
        if removed:
            provider, instance_id, name = key
            self.bus.publish(
                events.MODEL_STATE,
                events.ModelStateChange(
                    provider=provider,
                    instance_id=instance_id,
                    name=name,
                    status="removed",
                    loaded=False,
                    details=None,
                ),
            )
            self.bus.publish(events.CATALOG_CHANGED, _counts(removed=1))

    def list_all(self) -> list[dict[str, Any]]:
        return [m for m in map(_with_memory, self.store.list_all()) if m]

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
        body = json.dumps({"models": models}, separators=(",", ":")).encode()
        live = any(isinstance(m["loaded"], dict) and "memory" in m["loaded"] for m in models)
        self._list_cache = (version, now + _MEMORY_TTL_S if live else math.inf, body)
        return body

    def search(self, query: SearchQuery) -> dict[str, Any]:
        page = self.store.search(query)
        page["models"] = [m for m in map(_with_memory, page["models"]) if m]
        return page

    def active(self) -> list[dict[str, Any]]:
        """Models loaded or starting right now (the ``models`` section of the WS snapshot)."""
        return [m for m in map(_with_memory, self.store.active()) if m]

    # -- downloads -------------------------------------------------------------------------------

    def _on_download_state(self, event: Event[Any]) -> None:
        self._threadsafe(self._download_events.put_nowait, dict(event.data))

    async def _follow_downloads(self) -> None:
        while True:
            data = await self._download_events.get()
            key, state = self.download_key(data), data.get("state")
            if key is None or not isinstance(state, str):
                continue
            try:
                await self._apply_download(key, state, data)
            except Exception:  # one bad event must not stop the others
                log.exception("could not follow download %s", data.get("id"))

    def download_key(self, data: dict[str, Any]) -> Key | None:
        """The catalog key a download produces, from its source fields."""
        source = data.get("source")
        if source == "ollama" and isinstance(data.get("model_name"), str):
            instance_id = data.get("instance_id") or "default"
            return ("ollama", instance_id, ollama_display_name(data["model_name"]))
        path = data.get("path")
        if isinstance(path, str) and path:
            try:
                name = Path(path).resolve().relative_to(self.models_dir.resolve()).as_posix()
            except ValueError:
                return None
            return (*LOCAL_SCOPE, name)
        if source == "hf" and data.get("repo") and data.get("filename"):
            return (*LOCAL_SCOPE, f"hf/{data['repo']}/{data['filename']}")
        if source == "url" and data.get("filename"):
            return (*LOCAL_SCOPE, str(data["filename"]))
        return None

    async def placeholder(self, entry: ModelEntry) -> None:
        """Show a model being downloaded again (recreate) until its download ends."""
        self._downloads[entry.key] = entry.status
        if await asyncio.to_thread(self.store.add_placeholder, entry):
            self.bus.publish(events.MODEL_STATE, state_event(entry.values()))
            self.bus.publish(events.CATALOG_CHANGED, _counts(added=1))

    async def _apply_download(self, key: Key, state: str, data: dict[str, Any]) -> None:
        scope: Scope = (key[0], key[1])
        if state in _ACTIVE_DOWNLOAD:
            self._downloads[key] = "downloading"
            entry = ModelEntry(
                *key,
                size=_int(data.get("total")),
                status="downloading",
                mode=str(data.get("mode") or "llm"),
                source=_source_text(data),
            )
            if await asyncio.to_thread(self.store.add_placeholder, entry):
                self.bus.publish(events.CATALOG_CHANGED, _counts(added=1))
            await self.set_state(key, "downloading", None)
            return
        if state == "failed" and key in self._downloads:
            self._downloads[key] = "failed"
            await self.set_state(key, "failed", None, {"error": data.get("error")})
            return
        self._downloads.pop(key, None)  # completed (the manager recorded the source) or gone
        self.schedule({scope})


def server_details(instance: Instance, record: ProcessRecord) -> dict[str, Any]:
    """The ``loaded`` details of a GGUF model served by ``instance`` (process ``record``)."""
    cfg = instance.config
    return {
        "instance_id": cfg.id,
        "base_url": cfg.base_url,
        "pid": record.pid,
        "port": record.port,
        "started_at": record.started_at,
        "ctx_size": cfg.ctx_size or None,
    }


def _scope(instance: Instance) -> Scope:
    return (instance.config.provider.value, instance.config.id)


def _counts(added: int = 0, removed: int = 0) -> events.CatalogCounts:
    return {"added": added, "updated": 0, "removed": removed, "unchanged": 0}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _source_text(data: dict[str, Any]) -> str:
    source = data.get("source")
    if source == "ollama":
        return "ollama"
    if source == "hf" and data.get("repo"):
        rev = f"@{data['revision']}" if data.get("revision") else ""
        return f"hf://{data['repo']}/{data.get('filename') or ''}{rev}"
    return str(data.get("url") or "local")


def _with_memory(model: dict[str, Any] | None) -> dict[str, Any] | None:
    """Add the resident memory of a loaded GGUF server's process, measured now."""
    if model is None:
        return None
    loaded = model.get("loaded")
    pid = loaded.get("pid") if isinstance(loaded, dict) else None
    if isinstance(loaded, dict) and isinstance(pid, int):
        memory = process_memory([pid]).get(pid)
        model["loaded"] = {**loaded, "memory": memory}
    return model
