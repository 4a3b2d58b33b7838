"""Which instance serves a conversation's model, starting it first when its runtime allows,
and why a provider that did not answer is down (from the health checker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.chat.types import ChatError, Target
from modelyard.config import ProviderKind, Settings
from modelyard.errors import Conflict, ModelyardError, NotFound
from modelyard.providers.base import ProviderState
from modelyard.providers.registry import adapter_for, parse_provider
from modelyard.runtimes.control import InstanceControl
from modelyard.runtimes.health import HealthChecker
from modelyard.runtimes.instances import Instance, InstanceRegistry
from modelyard.runtimes.processes import ProcessManager

if TYPE_CHECKING:
    from modelyard.models.lifecycle import Lifecycle

# Starts a model that no instance serves yet (a GGUF file of the models directory) and
# returns the instance now serving it, or None when it cannot.
ModelStarter = Callable[[ProviderKind, str], Awaitable[Instance | None]]
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
    ) -> None:
        self.settings = settings
        self.instances = instances
        self.health = health
        self.control = control
        self.processes = processes
        self.starter: ModelStarter | None = None

    def find(self, provider: str, model: str, instance_id: str | None) -> Instance | None:
        """The instance named, else the one serving ``model``; None when none exists yet."""
        kind = parse_provider(provider)
        if instance_id:
            found = self.instances.find(f"{kind.value}/{instance_id}")
            if found is not None:
                return found
        candidates = [i for i in self.instances.list() if i.config.provider is kind]
        if kind is ProviderKind.LLAMACPP:
            return next((i for i in candidates if self._serves(i, model)), None)
        by_id = {i.config.id: i for i in candidates}
        return by_id.get("default") or (candidates[0] if candidates else None)

    def require(self, provider: str, model: str, instance_id: str | None) -> Instance | None:
        """Like ``find`` for a new conversation, but an unknown instance is a 404. None means
        a GGUF model that is started on the first message."""
        kind = parse_provider(provider)
        # GGUF files are catalogued under a pseudo-instance ("local"): their server is found
        # (or started) by model name.
        startable = kind is ProviderKind.LLAMACPP and self.starter is not None
        unknown = instance_id and self.instances.find(f"{kind.value}/{instance_id}") is None
        if unknown and not startable:
            raise NotFound(
                f"there is no {kind.value} instance {instance_id!r}",
                code="instance_not_found",
                hint="GET /api/providers lists the instances.",
            )
        found = self.find(provider, model, instance_id)
        if found is None and not startable:
            raise NotFound(
                f"no {kind.value} instance serves {model!r}",
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

    @staticmethod
    def target(instance: Instance, model: str) -> Target:
        cfg = instance.config
        return Target(cfg.provider, cfg.id, cfg.base_url, cfg.resolved_api_key(), model)

    async def ready(self, provider: str, model: str, instance_id: str | None, say: Say) -> Target:
        """The target to stream from, after starting what is not running (``say`` tells the
        user); raises ChatError when that is not possible."""
        kind = parse_provider(provider)
        instance = self.find(provider, model, instance_id)
        lifecycle_owned = (
            self.starter is not None and instance is not None and instance.origin == "model"
        )
        if instance is None or (lifecycle_owned and not await self._alive(instance)):
            # A GGUF model's server is the catalog's to start (it tracks the model's state).
            instance = await self._start_model(kind, model, say)
        cfg = instance.config
        if adapter_for(cfg.provider).needs_api_key and not cfg.resolved_api_key():
            status = await self.health.status(instance)
            raise ChatError(
                status.reason_code or "missing_api_key",
                f"{cfg.key} has no API key",
                status.hint or "Configure an API key for this instance.",
            )
        if cfg.managed:
            await self._ensure_started(instance, say)
        return self.target(instance, model)

    async def _start_model(self, kind: ProviderKind, model: str, say: Say) -> Instance:
        if self.starter is None or kind is not ProviderKind.LLAMACPP:
            raise ChatError(
                "instance_not_found",
                f"no {kind.value} instance serves {model!r}",
                "Add an instance on the Providers page, or pick another model.",
            )
        say(f"Starting {model}…")
        try:
            instance = await self.starter(kind, model)
        except ModelyardError as exc:
            raise ChatError(exc.error_code, exc.detail, exc.hint) from exc
        if instance is None:
            raise ChatError(
                "model_not_found",
                f"{model!r} is not a model modelyard can start",
                "Pick a model from the list.",
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
                    raise ChatError(exc.error_code, exc.detail, exc.hint) from exc
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
                status.reason_code or "not_running",
                f"{instance.key} did not start: it is {status.state.value}",
                status.hint or "See its log on the Providers page.",
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
            status.reason_code,
            f"{target.key} at {target.base_url} is {status.state.value}",
            status.hint or error.hint,
        )


def gguf_starter(lifecycle: Lifecycle) -> ModelStarter:
    """Start GGUF models of the models directory through the model lifecycle."""

    async def start(kind: ProviderKind, model: str) -> Instance | None:
        await lifecycle.start(kind.value, model)
        running = lifecycle.servers.running(model)
        return running[0] if running else None

    return start
