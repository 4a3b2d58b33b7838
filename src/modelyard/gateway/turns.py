"""Chat's answers take the scheduler's turns, like gateway requests.

An answer on the Chat page holds its model's turn from the first token it asks for to the
last it stores: the model is counted in flight, so the scheduler never evicts it mid-answer
nor unloads it for idleness, and a load of another model that needs its memory waits (or is
refused with 503 and ``Retry-After``) as it would for a gateway request. Leaving the block
releases the turn however the answer ended: finished, failed, stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import httpx

from modelyard.chat.types import Target
from modelyard.errors import ChatError, ModelyardError
from modelyard.gateway.backend import CatalogBackend
from modelyard.gateway.names import NameIndex, key_of, qualified
from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelState
from modelyard.gguf.local import local_key
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import InstanceOrigin

# The errors of an answer that say its model's server may have died: the scheduler checks.
_CONNECTION = frozenset({"provider_unreachable", "timeout"})


class ChatTurns:
    """``chat.types.Turns`` over the one scheduler."""

    def __init__(
        self,
        scheduler: Scheduler[str],
        backend: CatalogBackend,
        names: Callable[[], NameIndex],
        http: httpx.AsyncClient,
    ) -> None:
        self.scheduler = scheduler
        self.backend = backend
        self.names = names
        self.http = http

    def key(self, target: Target) -> str | None:
        """The scheduler's key for a chat target: a local file's server answers for the
        file's model (``llamacpp/local/<file>``); None for a model the catalog does not know
        (nothing of this machine's memory the scheduler could count)."""
        instance = self.backend.instances.find(target.key)
        if instance is not None and instance.origin is InstanceOrigin.MODEL:
            name = qualified(local_key(target.model))
        else:
            name = f"{target.provider}/{target.instance_id}/{target.model}"
        try:
            return qualified(self.names().resolve(name))
        except ModelyardError:
            return None

    @contextlib.asynccontextmanager
    async def turn(self, target: Target, say: Callable[[str], None]) -> AsyncIterator[None]:
        key = self.key(target)
        if key is None:
            yield
            return
        will_load = not self.scheduler.is_loaded(key) and await self._will_load(key, target)
        try:
            ticket = self.scheduler.request(key)
        except ModelyardError as exc:
            raise _chat_error(exc) from exc
        with ticket:
            if not ticket.granted:
                if will_load:
                    say(f"Loading {target.model}…")
                elif ticket.view().state is ModelState.LOADED:
                    say(f"Waiting for {target.model}: it is answering other requests…")
                try:
                    await ticket.ready()
                except ModelyardError as exc:
                    raise _chat_error(exc) from exc
            try:
                yield
            except ChatError as exc:
                if exc.error_code in _CONNECTION:
                    ticket.backend_failed()
                raise

    async def _will_load(self, key: str, target: Target) -> bool:
        """Whether the model is really loaded for this answer: always for a server we run;
        for a runtime that manages its memory, when it says so (the scheduler may have taken
        a stale report for the truth); never for a cloud API."""
        model = key_of(key)
        if self.backend.runs_here(model):
            return True
        if not self.backend.startable(model):
            return False
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
            return await registry.get(target.provider).will_load(self.http, target)
        return False


def _chat_error(exc: ModelyardError) -> ChatError:
    """A scheduler's refusal (``queue_full``, ``queue_timeout``, ``model_too_large``,
    ``load_failed``) as the answer's error, its code kept."""
    return ChatError(
        exc.detail, code=exc.error_code, hint=exc.hint, retry_after_s=exc.retry_after_s
    )
