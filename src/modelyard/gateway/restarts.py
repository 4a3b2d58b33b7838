"""The restart policy's restarts, and the Providers page's starts, restarts and stops, of
single-model servers through the scheduler (``runtimes.restarts.Relauncher``,
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
reports them as they come back; a container, which Docker restarts by its own policy; one of
several servers configured for the same file, which the file's key cannot tell apart — are
started and restarted directly.

A start by hand (the Providers page, ``modelyard providers start``) is a load of the scheduler
too, decided as a gateway load is: its estimate admitted within the budget and the measured
free memory, idle models evicted for it, 507 when it cannot fit. It answers once the process
is launched, as a start by hand always has; the model is counted (loading) from then on, and
shows loaded once its server answers, before any request.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from modelyard.config import Settings
from modelyard.errors import Conflict, ModelyardError, NotFound, Unavailable
from modelyard.gateway.names import key_of, qualified
from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelState
from modelyard.gateway.tickets import discard
from modelyard.gguf.local import local_key
from modelyard.models.catalog import Catalog
from modelyard.models.loading import ModelLoading
from modelyard.models.types import ModelKey
from modelyard.providers.registry import registry
from modelyard.runtimes.control import InstanceControl
from modelyard.runtimes.instances import Instance

log = logging.getLogger("modelyard.gateway")


class ScheduledRestarts:
    """Starts, restarts and stops of single-model servers as scheduler loads and unloads."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        loading: ModelLoading,
        scheduler: Scheduler[str],
        control: InstanceControl,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.loading = loading
        self.scheduler = scheduler
        self.control = control
        # Starts' loads, after their answer (the scheduler's close ends them).
        self._loads: set[asyncio.Task[None]] = set()

    def key(self, instance: Instance) -> str | None:
        """The scheduler's key for the model ``instance`` serves when it is a managed server
        of a GGUF file; None for any other instance, restarted directly."""
        cfg = instance.config
        if not cfg.managed or not cfg.model or cfg.container is not None:
            return None  # a container: Docker applies its restart policy; started directly
        if not registry.get(cfg.provider).capabilities.runs_gguf:
            return None
        models_dir = self.settings.resolved_models_dir.resolve()
        path = Path(cfg.model).resolve()
        if not path.is_relative_to(models_dir):
            return qualified(ModelKey(cfg.provider, cfg.id, cfg.id))  # what it serves, aliased
        name = path.relative_to(models_dir).as_posix()
        local = local_key(name)
        if self.catalog.get(local) is None or len(self.catalog.servers_for(name)) > 1:
            return None  # the file's key names the file: its load could start another server
        return qualified(local)

    def owns(self, instance: Instance) -> bool:
        return self.key(instance) is not None

    def wanted(self, instance: Instance) -> bool:
        key = self.key(instance)
        view = self.scheduler.view(key) if key is not None else None
        if view is None or view.state in (ModelState.LOADED, ModelState.LOADING):
            return True
        eviction = view.last_eviction
        # Died, or died while loading (a crash then too: the policy restarts it).
        return eviction is None or eviction.reason in ("died", "load_failed")

    def _key(self, instance: Instance) -> str:
        key = self.key(instance)
        if key is None:
            raise NotFound(f"{instance.key} serves no model of the catalog")
        return key

    async def start(self, instance: Instance) -> None:
        """Start ``instance``'s model as a load of the scheduler; return once its process is
        launched (the load goes on until it answers). 409 ``already_running`` when it runs or
        is being started; the load's refusal (507) or the launch's (409) as they are; 503
        ``queue_timeout`` when the models in the way stay busy past the queue timeout."""
        key = self._key(instance)
        self.control.require_stopped(instance)
        view = self.scheduler.view(key)
        if view is not None and view.state is ModelState.LOADING:
            raise Conflict(
                f"{instance.key} is being started already",
                code="already_running",
                hint="Wait for it to load, or use restart to start it again.",
            )
        self.scheduler.observed(key, False)  # held loaded, its process gone: cleaned up first
        launched = self.control.next_launch(instance)
        load = asyncio.create_task(self.scheduler.load(key))
        self._loads.add(load)
        load.add_done_callback(_settled)
        load.add_done_callback(self._loads.discard)
        try:
            timeout = self.scheduler.settings.queue_timeout_s
            await asyncio.wait((launched, load), timeout=timeout, return_when="FIRST_COMPLETED")
            if launched.done():
                launched.result()
            elif load.done():
                load.result()  # refused, or failed before its launch
            else:  # the models in the way stayed busy: given up, the load is cancelled
                load.cancel()
                raise Unavailable(
                    f"{instance.key} found no room within {timeout:g} s",
                    code="queue_timeout",
                    hint="The models it must replace are busy; retry when they are idle.",
                    retry_after_s=timeout,
                )
        finally:
            discard(launched)

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


def _settled(load: asyncio.Task[None]) -> None:
    """A start's load ended, maybe after its answer: a failure the scheduler shows (the
    model's ``last_error``, the instance's status) is read here, anything else logged."""
    error = None if load.cancelled() else load.exception()
    if error is not None and not isinstance(error, ModelyardError | TimeoutError):
        log.error("a start's load failed", exc_info=error)
