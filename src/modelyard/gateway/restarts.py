"""The restart policy's restarts, through the scheduler (``runtimes.restarts.Relauncher``).

A server of a local file (one the lifecycle started, or a configured llama.cpp server of a
file of the models directory) that died is restarted as a load of the scheduler: first told
that the process is gone (``observed``: what is left of it is cleaned up, and it is shown
unloaded, ``died``), then loaded again within the memory budget, evicting idle models as any
load would. So the scheduler's view (loaded, the memory committed) and the processes agree.
Other managed instances are restarted directly: a runtime with models of its own (Ollama,
LM Studio) reports them as they come back; a configured llama.cpp server of a file outside the
models directory is not yet one of the scheduler's models at restart.
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
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import Instance


class ScheduledRestarts:
    """Restarts of single-model servers as scheduler loads."""

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
        """The scheduler's key for the local file ``instance`` serves (a server of a file of
        the models directory); None for any other instance, restarted directly."""
        cfg = instance.config
        if not cfg.managed or not cfg.model:
            return None
        if not registry.get(cfg.provider).capabilities.runs_gguf:
            return None
        models_dir = self.settings.resolved_models_dir.resolve()
        path = Path(cfg.model).resolve()
        if not path.is_relative_to(models_dir):
            return None
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

    async def relaunch(self, instance: Instance) -> None:
        key = self.key(instance)
        if key is None:
            raise NotFound(f"{instance.key} serves no model of the catalog")
        self.scheduler.observed(key, False)  # its process is gone: cleaned up, then loaded
        self.loading.by_policy.add(key_of(key))
        try:
            await self.scheduler.load(key)
        finally:
            self.loading.by_policy.discard(key_of(key))
