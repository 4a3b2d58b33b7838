"""Which instance serves a conversation's model, starting it first when its runtime allows,
and why a provider that did not answer is down (from the health checker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from modelyard.chat.types import Target
from modelyard.config import Settings
from modelyard.errors import ChatError, Conflict, InvalidInput, ModelyardError, NotFound
from modelyard.providers.base import Provider, ProviderState
from modelyard.providers.registry import registry
from modelyard.runtimes.control import InstanceControl
from modelyard.runtimes.health import HealthChecker
from modelyard.runtimes.instances import Instance, InstanceOrigin, InstanceRegistry
from modelyard.runtimes.processes import ProcessManager

# Starts a local file that no instance serves yet and returns the instance now serving it,
# or None when it cannot (``Lifecycle.start_local``).
ModelStarter = Callable[[str], Awaitable[Instance | None]]
Say = Callable[[str], None]


class Targets:
    """Resolves (provider, model, instance) to a running instance."""

    def __init__(
        self,
        settings: Settings,
        instances: InstanceRegistry,
        health: HealthChecker,
        control: InstanceControl,
        processes: ProcessManager,
        starter: ModelStarter | None = None,
    ) -> None:
        self.settings = settings
        self.instances = instances
        self.health = health
        self.control = control
        self.processes = processes
        self.starter = starter

    def find(self, provider: str, model: str, instance_id: str | None) -> Instance | None:
        """The instance named, else the one serving ``model``; None when none exists yet."""
        found_provider = registry.get(provider)
        kind = found_provider.kind
        if instance_id:
            found = self.instances.find(f"{kind}/{instance_id}")
            if found is not None:
                return found
        candidates = [i for i in self.instances.list() if i.config.provider == kind]
        if found_provider.capabilities.runs_gguf:  # one server per model
            return next((i for i in candidates if self._serves(i, model)), None)
        by_id = {i.config.id: i for i in candidates}
        return by_id.get("default") or (candidates[0] if candidates else None)

    def require(self, provider: str, model: str, instance_id: str | None) -> Instance | None:
        """Like ``find`` for a new conversation, but an unknown instance is a 404. None means
        a GGUF model that is started on the first message."""
        found_provider = registry.get(provider)
        kind = found_provider.kind
        # Local files are catalogued under a pseudo-instance ("local"): their server is found
        # (or started) by model name.
        startable = self._startable(found_provider)
        unknown = instance_id and self.instances.find(f"{kind}/{instance_id}") is None
        if unknown and not startable:
            raise NotFound(
                f"there is no {kind} instance {instance_id!r}",
                code="instance_not_found",
                hint="GET /api/providers lists the instances.",
            )
        found = self.find(provider, model, instance_id)
        if found is None and not startable:
            raise NotFound(
                f"no {kind} instance serves {model!r}",
                code="instance_not_found",
                hint="Add an instance on the Providers page, or pick another model.",
            )
        return found

    def _serves(self, instance: Instance, model: str) -> bool:
        cfg = instance.config
        if cfg.id == model:
            return True
        if not cfg.model:
            return False
        path = Path(model)
        if not path.is_absolute():
            path = self.settings.resolved_models_dir / path
        return Path(cfg.model).resolve() == path.resolve()

    def _startable(self, provider: Provider) -> bool:
        return provider.capabilities.runs_gguf and self.starter is not None

    @staticmethod
    def target(instance: Instance, model: str) -> Target:
        cfg = instance.config
        return Target(cfg.provider, cfg.id, cfg.base_url, cfg.resolved_api_key(), model)

    async def ready(self, provider: str, model: str, instance_id: str | None, say: Say) -> Target:
        """The target to stream from, after starting what is not running (``say`` tells the
        user); raises ChatError when that is not possible."""
        chosen = registry.get(provider)
        instance = self.find(provider, model, instance_id)
        lifecycle_owned = (
            self.starter is not None
            and instance is not None
            and instance.origin is InstanceOrigin.MODEL
        )
        if instance is None or (lifecycle_owned and not await self._alive(instance)):
            # A local file's server is the lifecycle's to start (it tracks the model's state).
            instance = await self._start_model(chosen, model, say)
        cfg = instance.config
        if registry.get(cfg.provider).capabilities.needs_api_key and not cfg.has_api_key():
            status = await self.health.status(instance)
            raise ChatError(
                f"{cfg.key} has no API key",
                code=status.reason_code or "missing_api_key",
                hint=status.hint or "Configure an API key for this instance.",
            )
        try:
            target = self.target(instance, model)
        except InvalidInput as exc:  # a key that cannot be sent: this instance's error
            raise ChatError(exc.detail, code=exc.error_code, hint=exc.hint) from exc
        if cfg.managed:
            await self._ensure_started(instance, say)
        return target

    async def _start_model(self, provider: Provider, model: str, say: Say) -> Instance:
        if self.starter is None or not self._startable(provider):
            raise ChatError(
                f"no {provider.kind} instance serves {model!r}",
                code="instance_not_found",
                hint="Add an instance on the Providers page, or pick another model.",
            )
        say(f"Starting {model}…")
        try:
            instance = await self.starter(model)
        except ModelyardError as exc:
            raise ChatError(exc.detail, code=exc.error_code, hint=exc.hint) from exc
        if instance is None:
            raise ChatError(
                f"{model!r} is not a model modelyard can start",
                code="model_not_found",
                hint="Pick a model from the list.",
            )
        await self._settle(instance)
        return instance

    async def _alive(self, instance: Instance) -> bool:
        return (await asyncio.to_thread(self.processes.check, instance.key)).alive

    async def _ensure_started(self, instance: Instance, say: Say) -> None:
        if not await self._alive(instance):
            say(f"Starting {instance.key}…")
            try:
                await self.control.start(instance)
            except Conflict as exc:
                if exc.error_code != "already_running":
                    raise ChatError(exc.detail, code=exc.error_code, hint=exc.hint) from exc
            await self._settle(instance)
            return
        status = await self.health.status(instance)
        if status.state is ProviderState.STARTING:
            say(f"Waiting for {instance.key} to load its model…")
            await self._settle(instance)

    async def _settle(self, instance: Instance) -> None:
        status = await self.health.watch_until_settled(instance, self.settings.start_timeout_s)
        if status.state is not ProviderState.RUNNING:
            raise ChatError(
                f"{instance.key} did not start: it is {status.state.value}",
                code=status.reason_code or "not_running",
                hint=status.hint or "See its log on the Providers page.",
            )

    async def down(self, target: Target, error: ChatError) -> ChatError:
        """After a connection failure: the health checker's reason, when it has one."""
        instance = self.instances.find(target.key)
        if instance is None:
            return error
        status = await self.health.status(instance, refresh=True)
        if status.state is ProviderState.RUNNING or not status.reason_code:
            return error
        return ChatError(
            f"{target.key} at {target.base_url} is {status.state.value}",
            code=status.reason_code,
            hint=status.hint or error.hint,
        )
