"""The scheduler's ``Backend`` over the catalog's models: what a load, an unload and a
liveness check mean for each kind of runtime, read from its provider's capabilities.

Scheduler keys are qualified model names (``provider/instance/name``, ``names.qualified``).

* a local GGUF file (``runs_gguf``, the ``local`` scope) and a managed single-model server:
  a llama-server process modelyard runs; its memory is the GGUF estimate;
* a runtime that ``owns_memory`` (Ollama, LM Studio): loaded and unloaded through its API,
  its reports taken as they are (``manages_own_memory``), estimated from parameters;
* anything else (a server someone else runs, a cloud API): always there; nothing to load,
  nothing of this machine's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from modelyard.config import Settings
from modelyard.gateway.names import key_of, qualified
from modelyard.gateway.policies import model_settings
from modelyard.gguf.local import is_local
from modelyard.gguf.servers import GgufServers
from modelyard.models.catalog import Catalog
from modelyard.models.memory import default_context, estimate_for, gguf_info
from modelyard.models.types import ModelKey, ModelRef
from modelyard.providers.base import Provider
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import Instance, InstanceRegistry
from modelyard.runtimes.resources import estimate_memory
from modelyard.validation import resolve_inside


class ModelLoader(Protocol):
    """What loads and unloads a catalog model without asking the scheduler (the lifecycle's
    own operations, which the scheduler calls)."""

    async def load_model(self, ref: ModelRef, ctx_size: int | None) -> object: ...

    async def unload_model(self, ref: ModelRef) -> object: ...


class CatalogBackend:
    """``scheduling.Backend`` for the catalog's models."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        instances: InstanceRegistry,
        servers: GgufServers,
        loader: ModelLoader,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.instances = instances
        self.servers = servers
        self.loader = loader

    # -- what a model is --------------------------------------------------------------------

    def provider(self, key: ModelKey) -> Provider:
        return registry.get(key.provider)

    def instance(self, key: ModelKey) -> Instance | None:
        """The configured instance that serves ``key`` (None for a local file)."""
        if is_local(key):
            return None
        return self.instances.find(f"{key.provider}/{key.instance_id}")

    def runs_here(self, key: ModelKey) -> bool:
        """A process modelyard runs: a local file's server or a managed single-model one."""
        if is_local(key):
            return True
        instance = self.instance(key)
        return (
            instance is not None
            and instance.config.managed
            and self.provider(key).capabilities.runs_gguf
        )

    def startable(self, key: ModelKey) -> bool:
        return self.runs_here(key) or self.provider(key).capabilities.loads_models

    # -- Backend --------------------------------------------------------------------------

    def estimate_bytes(self, name: str) -> int:
        key = key_of(name)
        if not self.startable(key):
            return 0
        try:
            estimate = self._estimate(key)
        except Exception:  # an unreadable header: the load will say what is wrong
            return 0
        return estimate or 0

    def _estimate(self, key: ModelKey) -> int | None:
        served = self._served_file(key)
        if served is not None:  # known from its configuration, listed or not yet
            own = gguf_info(self.catalog.metadata, served)
            ctx = self._instance_ctx(key) or own.context_length or self.settings.default_ctx_size
            return estimate_memory(own, file_size=served.stat().st_size, ctx_size=ctx).total
        model = self.catalog.get(key)
        if model is None:
            return None
        info = None
        if is_local(key):
            path: Path | None = resolve_inside(self.catalog.models_dir, key.name)
        else:
            path = Path(model.path) if model.path else None
        if path is not None and path.is_file():
            info = gguf_info(self.catalog.metadata, path)
        ctx = self._ctx(qualified(key)) or default_context(info, self.settings.default_ctx_size)
        estimate = estimate_for(model, info=info, instance=self.instance(key), ctx_size=ctx)
        return estimate.total if estimate is not None else None

    def _served_file(self, key: ModelKey) -> Path | None:
        """The GGUF file a managed single-model server of ``key`` runs (its configuration)."""
        instance = self.instance(key)
        if instance is None or not self.runs_here(key) or not instance.config.model:
            return None
        return Path(instance.config.model)

    def _instance_ctx(self, key: ModelKey) -> int:
        """The context a managed server runs with (0: the model's own)."""
        instance = self.instance(key)
        return instance.config.ctx_size if instance is not None else 0

    def _ctx(self, name: str) -> int | None:
        """The context a model is loaded with when its table pins one (``num_ctx``)."""
        own = model_settings(self.settings, name)
        return own.num_ctx if own is not None else None

    def manages_own_memory(self, name: str) -> bool:
        key = key_of(name)
        return not self.runs_here(key)

    async def load(self, name: str, progress: Callable[[float], None]) -> None:
        key = key_of(name)
        if self.startable(key):
            ref = ModelRef(key.provider, key.name, key.instance_id)
            await self.loader.load_model(ref, self._ctx(name))
        progress(1.0)

    async def unload(self, name: str) -> None:
        key = key_of(name)
        if self.startable(key):
            await self.loader.unload_model(ModelRef(key.provider, key.name, key.instance_id))

    async def is_alive(self, name: str) -> bool:
        key = key_of(name)
        if is_local(key):
            return bool(await asyncio.to_thread(self.servers.running, key.name))
        instance = self.instance(key)
        if instance is not None and self.runs_here(key):
            check = await asyncio.to_thread(self.servers.processes.check, instance.key)
            return check.alive
        return True  # not ours to judge: a failed request says it is down

    def base_url(self, name: str) -> str | None:
        """Where the loaded model answers: its server (a local file's runs on a port of its
        own), else its instance; None when nothing serves it."""
        key = key_of(name)
        if is_local(key):
            running = self.servers.running(key.name)
            return running[0].config.base_url if running else None
        instance = self.instance(key)
        return instance.config.base_url if instance is not None else None

    def api_key(self, name: str) -> str:
        instance = self.instance(key_of(name))
        return instance.config.resolved_api_key() if instance is not None else ""
