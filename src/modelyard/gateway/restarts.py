"""The restart policy's restarts, and the Providers page's stops, of single-model servers
through the scheduler (``runtimes.restarts.Relauncher``,
``runtimes.instance_service.ScheduledInstances``).

A server of a local file that died — one the lifecycle started, or a configured llama.cpp
server of a GGUF file wherever it is — is restarted as a load of the scheduler: first told
that the process is gone (``observed``: what is left of it is cleaned up, and it is shown
unloaded, ``died``), then loaded again within the memory budget, evicting idle models as any
load would. So the scheduler's view (loaded, the memory committed) and the processes agree.
The scheduler knows a configured server's model by the name the gateway uses for it: a file
of the models directory is one of the local files (the catalog lists it so), any other is
its instance's one model, ``provider/<id>/<id>`` (its server runs with ``--alias <id>``).
Other managed instances — a runtime with models of its own (Ollama, LM Studio), which
reports them as they come back — are restarted directly.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.config import Settings
from modelyard.errors import NotFound
from modelyard.gateway.names import key_of, qualified
from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelState
from modelyard.gguf.local import local_key
from modelyard.models.catalog import Catalog
from modelyard.models.loading import ModelLoading
from modelyard.models.types import ModelKey
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import Instance


class ScheduledRestarts:
    """Restarts and stops of single-model servers as scheduler loads and unloads."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        loading: ModelLoading,
        scheduler: Scheduler[str],
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.loading = loading
        self.scheduler = scheduler

    def key(self, instance: Instance) -> str | None:
        """The scheduler's key for the model ``instance`` serves when it is a managed server
        of a GGUF file; None for any other instance, restarted directly."""
        cfg = instance.config
        if not cfg.managed or not cfg.model:
            return None
        if not registry.get(cfg.provider).capabilities.runs_gguf:
            return None
        models_dir = self.settings.resolved_models_dir.resolve()
        path = Path(cfg.model).resolve()
        if not path.is_relative_to(models_dir):
            return qualified(ModelKey(cfg.provider, cfg.id, cfg.id))  # what it serves, aliased
        local = local_key(path.relative_to(models_dir).as_posix())
        return qualified(local) if self.catalog.get(local) is not None else None

    def owns(self, instance: Instance) -> bool:
        return self.key(instance) is not None

    def wanted(self, instance: Instance) -> bool:
        key = self.key(instance)
        view = self.scheduler.view(key) if key is not None else None
        if view is None or view.state in (ModelState.LOADED, ModelState.LOADING):
            return True
        eviction = view.last_eviction
        return eviction is None or eviction.reason == "died"

    def _key(self, instance: Instance) -> str:
        key = self.key(instance)
        if key is None:
            raise NotFound(f"{instance.key} serves no model of the catalog")
        return key

    async def stop(self, instance: Instance) -> None:
        await self.scheduler.unload(self._key(instance))

    async def relaunch(self, instance: Instance) -> None:
        key = self._key(instance)
        self.scheduler.observed(key, False)  # its process is gone: cleaned up, then loaded
        self.loading.by_policy.add(key_of(key))
        try:
            await self.scheduler.load(key)
        finally:
            self.loading.by_policy.discard(key_of(key))
