"""Writing one answer: make the model ready, fit the history into its context, relay the
tokens into the generation's queue (which the HTTP response reads) and store the result with
its state, model, timings and token counts. A cancelled task is a stopped answer: the
cancellation closes the upstream stream, so the provider stops generating too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import httpx

from modelyard.chat.answer_events import AnswerEvent, Done, Failed, Started, Status, Token
from modelyard.chat.context import ContextWindows, fit
from modelyard.chat.store import ConversationStore, TurnStart
from modelyard.chat.targets import Targets
from modelyard.chat.types import ChatOptions, Target, Turn, Turns, Usage
from modelyard.chat.views import AnswerColumns
from modelyard.errors import ChatError, ModelyardError
from modelyard.events import ChatAnswer
from modelyard.metrics import Metrics
from modelyard.providers.clients import Clients
from modelyard.providers.registry import registry

log = logging.getLogger("modelyard.chat")
STORE_AFTER_S = 1.0
# How long storing waits for the tokens before it to reach the client (a client that has
# gone away stops reading; the store must not wait for it).
DRAIN_WAIT_S = 0.5


@dataclass
class Choice:
    """The model a message goes to, as recorded on the answer."""

    provider: str
    instance_id: str
    model: str


class _Marker:
    """A queue item that is not an event: it only ends the batch being gathered."""


FLUSH = _Marker()  # the provider's stream has ended: send what is waiting now
_TICK = _Marker()  # the pacing delay is over
# Tokens that arrive within this long of the previous tokens sent go out together: a write
# per token costs the relay a system call and the client a wake-up each (hundreds of tokens
# a second on a fast model, on the cores the model decodes with), and no one reads faster
# than 50 updates a second. The first token, status events and the end are never held back.
SEND_EVERY_S = 0.02


@dataclass
class Generation:
    """One answer being written, and the events its HTTP response streams."""

    conversation_id: str
    message_id: str = ""
    queue: asyncio.Queue[AnswerEvent | _Marker | None] = field(default_factory=asyncio.Queue)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    stopping: bool = False
    written: asyncio.Future[None] | None = None  # storing the user's message and the answer
    emitted: int = 0  # events queued so far
    sent: int = 0  # events the response has written to the client
    reader_gone: bool = False
    answer: ChatAnswer | None = None  # what it came to, once it has ended
    _progress: asyncio.Event = field(default_factory=asyncio.Event)

    def emit(self, event: AnswerEvent) -> None:
        self.emitted += 1
        self.queue.put_nowait(event)

    async def drained(self) -> None:
        """Wait (at most ``DRAIN_WAIT_S``) until the events emitted so far have been written
        to the client. A database write started in a thread takes the GIL from the event loop
        for milliseconds at a time: done after the tokens go out, it does not delay them."""
        goal = self.emitted
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_WAIT_S):
                while self.sent < goal and not self.reader_gone:
                    self._progress.clear()
                    await self._progress.wait()

    def flush(self) -> None:
        self.queue.put_nowait(FLUSH)

    async def events(self) -> AsyncIterator[list[AnswerEvent]]:
        """The events until the answer ends (its last one is ``done`` or ``error``), in
        batches: tokens arriving within ``SEND_EVERY_S`` of the last tokens sent wait for
        them (so the first token never waits)."""
        loop = asyncio.get_running_loop()
        sent_at = -math.inf
        try:
            while True:
                batch = [await self.queue.get()]
                while not _urgent(batch[-1]) and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                wait = sent_at + SEND_EVERY_S - loop.time()
                if not _urgent(batch[-1]) and wait > 0:
                    tick = loop.call_later(wait, self.queue.put_nowait, _TICK)
                    while not _urgent(batch[-1]):
                        batch.append(await self.queue.get())
                    tick.cancel()
                events = [e for e in batch if e is not None and not isinstance(e, _Marker)]
                if any(isinstance(e, Token) for e in events):
                    sent_at = loop.time()  # the pace is kept between tokens only
                if events:
                    yield events  # resumed once the response has written them
                    self.sent += len(events)
                    self._progress.set()
                if batch[-1] is None:  # None is always the last thing queued
                    return
        finally:
            self.reader_gone = True  # no one waits for the client any longer
            self._progress.set()

    def stop(self) -> None:
        """Stop writing (idempotent): the partial answer is kept as ``stopped``."""
        if self.task is not None and not self.done.is_set() and not self.stopping:
            self.stopping = True
            self.task.cancel()


@dataclass
class Tally:
    """What an answer came to: its text and timings so far, and how it ended."""

    text: list[str] = field(default_factory=list)
    chunks: int = 0
    started: float = 0.0
    first: float | None = None
    last: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    state: str = "complete"
    error: ChatError | None = None
    trimmed: int = 0
    instance_id: str | None = None  # the instance that served it, once known

    def ttft_ms(self) -> float | None:
        return round((self.first - self.started) * 1000, 2) if self.first is not None else None

    def tokens(self) -> int | None:
        if self.first is None:
            return None
        return self.completion_tokens if self.completion_tokens is not None else self.chunks

    def tokens_per_s(self) -> float | None:
        """Decoding speed: tokens after the first over the time they took."""
        n = self.tokens() or 0
        if self.first is None or self.last is None or n < 2 or self.last <= self.first:
            return None
        return round((n - 1) / (self.last - self.first), 2)

    def stored(self) -> AnswerColumns:
        """The answer's columns."""
        values: AnswerColumns = {
            "content": "".join(self.text),
            "state": self.state,
            "error": self.error.detail if self.error else None,
            "ttft_ms": self.ttft_ms(),
            "tokens_per_s": self.tokens_per_s(),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.tokens(),
        }
        if self.instance_id is not None:
            values["instance_id"] = self.instance_id
        return values

    def last_event(self, message_id: str, choice: Choice) -> Done | Failed:
        """The ``done`` or ``error`` event that ends the stream."""
        if self.error is not None:
            return Failed(message_id, self.error.error_code, self.error.detail, self.error.hint)
        return Done(
            message_id, self.state, self.ttft_ms(), self.tokens_per_s(),
            Usage(self.prompt_tokens, self.tokens()), self.finish_reason, choice.provider,
            self.instance_id or choice.instance_id or None, choice.model, self.trimmed,
        )  # fmt: skip


class Answerer:
    """Writes answers; ``ended`` is called with each generation once it is over."""

    def __init__(
        self,
        store: ConversationStore,
        targets: Targets,
        windows: ContextWindows,
        clients: Clients,
        http: httpx.AsyncClient,
        metrics: Metrics,
        ended: Callable[[Generation], None],
        turns: Turns | None = None,
    ) -> None:
        self.store = store
        self.turns = turns
        self.targets = targets
        self.windows = windows
        self.clients = clients
        self.http = http
        self.metrics = metrics
        self.ended = ended
        self._background: set[asyncio.Task[None]] = set()

    async def run(
        self, gen: Generation, start: TurnStart, choice: Choice, options: ChatOptions
    ) -> None:
        """Write the answer; it always ends with a ``done`` or ``error`` event."""
        gen.emit(
            Started(
                gen.message_id, gen.conversation_id, start.title, choice.provider,
                choice.instance_id or None, choice.model,
            )
        )  # fmt: skip
        # The message is stored once the first token is out (a database write in a thread
        # would hold the GIL while the request goes upstream), or after a second of waiting.
        store_later = asyncio.get_running_loop().call_later(
            STORE_AFTER_S, self._store_turn, gen, start
        )
        tally = Tally()
        target: Target | None = None
        try:
            target = await self.targets.ready(
                choice.provider, choice.model, choice.instance_id or None, _sayer(gen)
            )
            tally.instance_id = target.instance_id
            async with self._turn(target, gen):
                window = await self.windows.window(target, options)
                fitted = await fit(
                    start.system, start.history, window, options.max_tokens,
                    self.windows.counter(target),
                )  # fmt: skip
                tally.trimmed = fitted.dropped
                if fitted.dropped:
                    gen.emit(Status(f"Left out the {fitted.dropped} oldest message(s) to fit "
                                    f"the model's context of {window} tokens."))  # fmt: skip
                await self._stream(gen, target, fitted.turns, options, tally, start)
        except asyncio.CancelledError:
            tally.state = "stopped"
        except ChatError as exc:
            tally.state = "error"
            connection = exc.error_code in ("provider_unreachable", "timeout")
            tally.error = await self.targets.down(target, exc) if target and connection else exc
        except Exception as exc:  # a bug must still end the answer and tell the client
            log.exception("chat generation failed")
            tally.state = "error"
            tally.error = ChatError(
                f"unexpected error: {exc}",
                code="internal_error",
                hint=_internal_hint(choice, target),
            )
        store_later.cancel()
        self._store_turn(gen, start)
        await asyncio.shield(self._finish(gen, choice, tally))

    def _turn(self, target: Target, gen: Generation) -> AbstractAsyncContextManager[None]:
        """The model's turn from the scheduler, held while the answer is written."""
        if self.turns is None:
            return contextlib.nullcontext()
        return self.turns.turn(target, _sayer(gen))

    def _store_when_sent(self, gen: Generation, start: TurnStart) -> None:
        """Store the turn once the first token has reached the client."""

        async def store() -> None:
            await gen.drained()
            self._store_turn(gen, start)

        task = asyncio.create_task(store())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _store_turn(self, gen: Generation, start: TurnStart) -> None:
        if gen.written is None:
            gen.written = asyncio.ensure_future(
                asyncio.to_thread(self.store.write_turn, start.writes)
            )

    async def _stream(
        self,
        gen: Generation,
        target: Target,
        turns: list[Turn],
        options: ChatOptions,
        tally: Tally,
        start: TurnStart,
    ) -> None:
        provider = registry.get(target.provider)
        loading = (
            asyncio.create_task(self._announce_loading(gen, target, tally))
            if provider.loads_on_demand
            else None
        )
        thinking_said = False
        tally.started = time.perf_counter()
        try:
            async for piece in provider.chat(self.clients, target, turns, options):
                if piece.text:
                    now = time.perf_counter()
                    tally.first = tally.first or now
                    tally.last = now
                    tally.chunks += 1
                    tally.text.append(piece.text)
                    gen.emit(Token(piece.text))
                    if tally.chunks == 1:
                        self._store_when_sent(gen, start)
                elif piece.thinking and not thinking_said and tally.first is None:
                    thinking_said = True
                    gen.emit(Status("Thinking…"))
                if piece.prompt_tokens is not None:
                    tally.prompt_tokens = piece.prompt_tokens
                if piece.completion_tokens is not None:
                    tally.completion_tokens = piece.completion_tokens
                if piece.finish_reason is not None:
                    tally.finish_reason = piece.finish_reason
        finally:
            gen.flush()  # the last tokens go out now, not after the answer is stored
            if loading is not None:
                loading.cancel()

    async def _announce_loading(self, gen: Generation, target: Target, tally: Tally) -> None:
        """A runtime that loads a model on its first request (Ollama): say so when this
        answer will have to wait for that."""
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
            will_load = await registry.get(target.provider).will_load(self.http, target)
            if will_load and tally.first is None:
                gen.emit(Status(f"Loading {target.model}…"))

    async def _finish(self, gen: Generation, choice: Choice, tally: Tally) -> None:
        await gen.drained()  # the last tokens first, then the database
        try:
            if gen.written is not None:
                await gen.written
        except ModelyardError as exc:  # the conversation was deleted meanwhile
            tally.state = "error"
            tally.error = ChatError(exc.detail, code=exc.error_code, hint=exc.hint)
        try:
            await asyncio.to_thread(self.store.finish, gen.message_id, tally.stored())
        except Exception:
            log.exception("could not store the answer %s", gen.message_id)
        if tally.first is not None:
            self.metrics.chat_tokens.labels(choice.provider).inc(tally.tokens() or 0)
        instance = tally.instance_id or choice.instance_id
        gen.answer = ChatAnswer(
            key=f"{choice.provider}/{instance}/{choice.model}",
            state="error" if tally.error is not None else tally.state,
            ttft_ms=tally.ttft_ms(),
            completion_tokens=tally.tokens(),
        )
        gen.emit(tally.last_event(gen.message_id, choice))
        gen.queue.put_nowait(None)
        self.ended(gen)


def _urgent(item: AnswerEvent | _Marker | None) -> bool:
    """Whether an item sends its batch at once: anything but a token."""
    return not isinstance(item, Token)


def _internal_hint(choice: Choice, target: Target | None) -> str:
    """Where to look when answering failed inside modelyard itself."""
    where = target.key if target is not None else f"{choice.provider}/{choice.instance_id or '?'}"
    return (
        f"modelyard failed while asking {where} for {choice.model}; its log (the output of "
        "'modelyard serve') has the details. Check the instance on the Providers page, then "
        "try again."
    )


def _sayer(gen: Generation) -> Callable[[str], None]:
    return lambda text: gen.emit(Status(text))
