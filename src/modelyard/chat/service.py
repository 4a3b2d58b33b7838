"""Conversations, and the answers being written in them (SPEC §6, §8).

Sending a message plans it (the user's message and a ``streaming`` answer, see
``store.prepare_turn``) and starts a *generation*: a task run by ``answer.Answerer`` that
writes the answer into a queue the HTTP response reads. One generation per conversation at a
time. Stopping cancels the task and waits until the partial answer is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

import httpx
from sqlalchemy import select

from modelyard.chat.answer import Answerer, Choice, Generation
from modelyard.chat.context import ContextWindows
from modelyard.chat.store import DEFAULT_TITLE, ConversationStore
from modelyard.chat.targets import ModelStarter, Targets
from modelyard.chat.types import ChatOptions, Target, Turns
from modelyard.chat.views import Conversation, ConversationColumns, ConversationSummary, Stopped
from modelyard.config import Settings
from modelyard.errors import Conflict
from modelyard.events import CHAT_ANSWER, CONVERSATION_CHANGED, ConversationChanged, EventBus
from modelyard.metrics import Metrics
from modelyard.providers.clients import Clients
from modelyard.providers.registry import registry
from modelyard.runtimes.control import InstanceControl
from modelyard.runtimes.health import HealthChecker
from modelyard.runtimes.instances import InstanceRegistry
from modelyard.runtimes.processes import ProcessManager
from modelyard.store.db import Database
from modelyard.store.tables import ModelRow

log = logging.getLogger("modelyard.chat")
STOP_WAIT_S = 10.0


class ChatService:
    """Conversation CRUD and generations; one generation per conversation at a time."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: EventBus,
        metrics: Metrics,
        instances: InstanceRegistry,
        health: HealthChecker,
        control: InstanceControl,
        processes: ProcessManager,
        starter: ModelStarter | None,
        turns: Turns | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.metrics = metrics
        self.store = ConversationStore(db)
        self.targets = Targets(settings, instances, health, control, processes, starter)
        self.http = httpx.AsyncClient(timeout=settings.api_timeout_ms / 1000)
        self.windows = ContextWindows(self.http, settings.default_ctx_size, self._catalog_ctx)
        self.clients = Clients(settings.connect_timeout_ms / 1000, settings.chat_timeout_s)
        self.answerer = Answerer(
            self.store,
            self.targets,
            self.windows,
            self.clients,
            self.http,
            metrics,
            self._ended,
            turns,
        )
        self._active: dict[str, Generation] = {}
        self._warming: asyncio.Task[None] | None = None

    def warm_up(self) -> None:
        """Prepare the SDK clients in the background when someone opens a chat (the Chat
        page lists conversations, the CLI creates one), so the first answer does not."""
        if self._warming is None:
            self._warming = asyncio.create_task(asyncio.to_thread(self._warm))

    def _warm(self) -> None:
        try:
            self.clients.warm()
        except Exception:  # the first answer builds what it needs itself
            log.exception("could not prepare the chat clients ahead of time")

    async def startup(self) -> None:
        count = await asyncio.to_thread(self.store.interrupt_leftovers)
        if count:
            log.info("marked %d interrupted answer(s) as stopped", count)

    async def close(self) -> None:
        if self._warming is not None:
            with contextlib.suppress(Exception):
                await self._warming
        for gen in list(self._active.values()):
            gen.stop()
        for gen in list(self._active.values()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gen.done.wait(), STOP_WAIT_S)
        await self.windows.close()
        await self.clients.aclose()
        await self.http.aclose()

    # -- conversations ----------------------------------------------------------------------

    async def create(
        self,
        provider: str,
        model: str,
        *,
        instance_id: str | None = None,
        title: str | None = None,
        system: str | None = None,
        options: ChatOptions | None = None,
    ) -> ConversationSummary:
        self.warm_up()
        kind = registry.get(provider).kind
        instance = self.targets.require(kind, model, instance_id)
        values: ConversationColumns = {
            "provider": kind,
            "instance_id": instance.config.id if instance is not None else "",
            "model": model,
            "title": title or DEFAULT_TITLE,
            "system": system or "",
            "options": (options or ChatOptions()).stored(),
        }
        created = await asyncio.to_thread(self.store.create, values)
        self._changed(created.id, "created")
        return created

    async def conversations(self) -> list[ConversationSummary]:
        """Every conversation, the most recently active first."""
        self.warm_up()
        return await asyncio.to_thread(self.store.all)

    async def get(self, conversation_id: str) -> Conversation:
        found = await asyncio.to_thread(self.store.get, conversation_id)
        return replace(found, generating=self._busy(conversation_id))

    async def update(
        self,
        conversation_id: str,
        *,
        title: str | None = None,
        system: str | None = None,
        options: ChatOptions | None = None,
        provider: str | None = None,
        model: str | None = None,
        instance_id: str | None = None,
    ) -> Conversation:
        """Rename, change the system prompt, options or model (``provider``, ``model``,
        ``instance_id``); None leaves a field as it is."""
        changes: ConversationColumns = {}
        if title is not None:
            changes["title"] = title
        if system is not None:
            changes["system"] = system
        if options is not None:
            changes["options"] = options.stored()
        if model or provider or instance_id:
            current = await asyncio.to_thread(self.store.get, conversation_id)
            provider = provider or current.provider
            model = model or current.model
            instance = self.targets.require(provider, model, instance_id)
            changes["provider"] = registry.get(provider).kind
            changes["model"] = model
            changes["instance_id"] = instance.config.id if instance is not None else ""
        updated = await asyncio.to_thread(self.store.update, conversation_id, changes)
        updated = replace(updated, generating=self._busy(conversation_id))
        self._changed(conversation_id, "updated")
        return updated

    async def delete(self, conversation_id: str) -> None:
        await self.stop(conversation_id)
        await asyncio.to_thread(self.store.delete, conversation_id)
        self._changed(conversation_id, "deleted")

    def _busy(self, conversation_id: str) -> bool:
        gen = self._active.get(conversation_id)
        return gen is not None and not gen.done.is_set()

    def _changed(self, conversation_id: str, action: str) -> None:
        self.bus.publish(
            CONVERSATION_CHANGED, ConversationChanged(id=conversation_id, action=action)
        )

    # -- generations ------------------------------------------------------------------------

    async def send(
        self,
        conversation_id: str,
        content: str | None,
        *,
        model: str | None = None,
        provider: str | None = None,
        instance_id: str | None = None,
        options: ChatOptions | None = None,
    ) -> Generation:
        """Store the message (``content`` None: answer the last one again) and start the
        answer. 409 ``generation_in_progress`` while another answer is being written."""
        if provider is not None:
            registry.get(provider)  # 404 unknown_provider
        await self._wait_for_stopping(conversation_id)
        gen = self._claim(conversation_id)
        choice: list[Choice] = []

        def pick(row_provider: str, row_instance: str, row_model: str) -> tuple[str, str, str]:
            chosen = self._choose(row_provider, row_instance, row_model, provider, model)
            if instance_id:
                chosen.instance_id = instance_id
            choice.append(chosen)
            return chosen.provider, chosen.instance_id, chosen.model

        try:
            if self.store.memory.get(conversation_id) is not None:
                # No database read: a thread hop would cost more, on the way to the first token.
                start = self.store.prepare_turn(conversation_id, content, pick)
            else:
                start = await asyncio.to_thread(
                    self.store.prepare_turn, conversation_id, content, pick
                )
        except BaseException:
            self._release(gen)
            raise
        gen.message_id = start.message_id
        opts = start.options.merged(options)
        gen.task = asyncio.create_task(self.answerer.run(gen, start, choice[0], opts))
        self._changed(conversation_id, "message")
        return gen

    def _choose(
        self,
        row_provider: str,
        row_instance: str,
        row_model: str,
        provider: str | None,
        model: str | None,
    ) -> Choice:
        new_provider = registry.get(provider).kind if provider else row_provider
        new_model = model or row_model
        # Where one server serves one model, another model means another instance.
        one_model = registry.get(new_provider).capabilities.runs_gguf
        same = new_provider == row_provider and (new_model == row_model or not one_model)
        found = self.targets.find(new_provider, new_model, row_instance if same else None)
        return Choice(new_provider, found.config.id if found else "", new_model)

    async def _wait_for_stopping(self, conversation_id: str) -> None:
        """A new message may follow a stop at once: wait for the stopped answer to be stored."""
        gen = self._active.get(conversation_id)
        if gen is not None and gen.stopping and not gen.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gen.done.wait(), STOP_WAIT_S)

    def _claim(self, conversation_id: str) -> Generation:
        """Reserve the conversation for a new answer, without awaiting in between."""
        busy = self._active.get(conversation_id)
        if busy is not None and not busy.done.is_set():
            raise Conflict(
                "an answer is still being written in this conversation",
                code="generation_in_progress",
                hint="Wait for it, or stop it with POST /api/conversations/{id}/stop.",
            )
        gen = Generation(conversation_id)
        self._active[conversation_id] = gen
        return gen

    def _release(self, gen: Generation) -> None:
        gen.done.set()
        if self._active.get(gen.conversation_id) is gen:
            del self._active[gen.conversation_id]

    def _ended(self, gen: Generation) -> None:
        self._release(gen)
        self._changed(gen.conversation_id, "message")
        if gen.answer is not None:
            self.bus.publish(CHAT_ANSWER, gen.answer)

    async def stop(self, conversation_id: str) -> Stopped:
        """Stop the answer being written, wait until it is stored, and return it."""
        gen = self._active.get(conversation_id)
        if gen is None or gen.done.is_set():
            return Stopped(stopped=False, message_id=None)
        gen.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gen.done.wait(), STOP_WAIT_S)
        return Stopped(stopped=True, message_id=gen.message_id)

    async def _catalog_ctx(self, target: Target) -> int | None:
        """The context length the catalog recorded for this model, if any."""

        def read() -> int | None:
            # GGUF files are catalogued under the models directory, not their server.
            query = (
                select(ModelRow.context_length)
                .where(
                    ModelRow.provider == target.provider,
                    ModelRow.name == target.model,
                    ModelRow.context_length.is_not(None),
                )
                .order_by((ModelRow.instance_id == target.instance_id).desc())
            )
            with self.db.session() as s:
                return s.scalars(query).first()

        return await asyncio.to_thread(read)
