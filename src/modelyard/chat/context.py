"""Fitting a conversation into a model's context window.

The window comes from, in order: the ``ctx_size`` option; a hosted API's known window; what the
runtime reports for the loaded model (the provider's ``loaded_context``: llama.cpp ``/props``
``n_ctx``, Ollama ``/api/ps`` ``context_length``); the catalog's record; the model's own
metadata (``model_context``: Ollama ``/api/show``, LM Studio ``max_context_length``,
``/v1/models`` ``meta.n_ctx``); else ``default_ctx_size``. Lookups are cached for a short while
(two seconds, and then made again before use, when a runtime that should report its window did
not) and never fail a chat.

Trimming drops the oldest turns first and always keeps the system prompt and the newest message.
Counting is free when the whole conversation fits even if every byte were a token (no tokenizer
produces more tokens than bytes); otherwise the provider's counter counts (exactly where the
runtime tokenizes, as llama.cpp's ``/tokenize`` does), or estimates.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from modelyard.chat.types import ChatOptions, Target, Turn
from modelyard.providers.base import TokenCounter
from modelyard.providers.registry import registry

# What a chat template adds, generously: role markers and separators per message, and the
# assistant header before the answer ("<|im_start|>assistant\n" is 11 tokens when every byte
# of "assistant" is a token of its own).
MESSAGE_OVERHEAD = 12
PROMPT_OVERHEAD = 16
CACHE_TTL_S = 30.0
GUESS_TTL_S = 2.0  # when the runtime's own answer was missing

CatalogLookup = Callable[[Target], Awaitable[int | None]]


@dataclass(frozen=True)
class Fitted:
    """The turns to send, and how many older ones were left out."""

    turns: list[Turn]
    dropped: int
    window: int


def reply_reserve(window: int, max_tokens: int | None) -> int:
    """Room kept for the answer: ``max_tokens``, else a quarter of the window (at most 1024),
    never more than half the window."""
    wanted = max_tokens if max_tokens is not None else min(window // 4, 1024)
    return min(wanted, window // 2)


async def fit(
    system: str,
    history: Sequence[Turn],
    window: int,
    max_tokens: int | None,
    counter: TokenCounter,
) -> Fitted:
    """The system prompt plus as many of the newest turns as fit; the newest always goes."""
    head = [Turn("system", system)] if system else []
    budget = window - reply_reserve(window, max_tokens) - PROMPT_OVERHEAD
    everything = [*head, *history]
    upper = sum(len(t.content.encode()) + MESSAGE_OVERHEAD for t in everything)
    if upper <= budget or len(history) <= 1:
        return Fitted(everything, 0, window)
    counts = await counter.count([t.content for t in everything])
    used = sum(c + MESSAGE_OVERHEAD for c in counts[: len(head)])
    kept: list[Turn] = []
    for turn, count in zip(reversed(history), reversed(counts[len(head) :]), strict=True):
        cost = count + MESSAGE_OVERHEAD
        if kept and used + cost > budget:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    # A conversation sent to a model starts with the user speaking.
    while len(kept) > 1 and kept[0].role != "user":
        kept.pop(0)
    return Fitted([*head, *kept], len(history) - len(kept), window)


class ContextWindows:
    """Finds (and briefly remembers) the context window of a model."""

    def __init__(
        self, http: httpx.AsyncClient, default: int, catalog: CatalogLookup | None = None
    ) -> None:
        self.http = http
        self.default = default
        self.catalog = catalog
        self._cache: dict[tuple[str, str], tuple[float, int, bool]] = {}  # expiry, window, guess
        self._refreshing: dict[tuple[str, str], asyncio.Task[int]] = {}
        self._memo: OrderedDict[str, int] = OrderedDict()

    def counter(self, target: Target) -> TokenCounter:
        """The most exact token counter available for this target."""
        return registry.get(target.provider).token_counter(self.http, target, self._memo)

    async def window(self, target: Target, options: ChatOptions) -> int:
        """The context window to fit messages into."""
        runtime = await self._cached(target)
        if options.ctx_size is not None:
            # A running llama.cpp server cannot grow its context; Ollama takes num_ctx.
            fixed = registry.get(target.provider).fixed_context
            return min(options.ctx_size, runtime) if fixed else options.ctx_size
        return runtime

    async def close(self) -> None:
        """Cancel lookups still under way (at shutdown)."""
        tasks = list(self._refreshing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _cached(self, target: Target) -> int:
        key = (target.key, target.model)
        hit = self._cache.get(key)
        if hit is None:
            return await self._refresh(key, target)
        expires, window, guessed = hit
        if expires > time.monotonic():
            return window
        if guessed:
            return await self._refresh(key, target)  # worth the round trip
        if key not in self._refreshing:
            # Answer with what was known and look again meanwhile: a lookup on the way to
            # the first token would cost an HTTP round trip.
            task = asyncio.create_task(self._refresh(key, target))
            self._refreshing[key] = task
            task.add_done_callback(lambda _: self._refreshing.pop(key, None))
        return window

    async def _refresh(self, key: tuple[str, str], target: Target) -> int:
        value, from_runtime = await self._lookup(target)
        # A runtime that did not answer may be busy for a moment: what stood in for its
        # answer (which may be bigger than the loaded context) is not kept for long.
        guessed = not from_runtime and registry.get(target.provider).reports_context
        ttl = GUESS_TTL_S if guessed else CACHE_TTL_S
        self._cache[key] = (time.monotonic() + ttl, value, guessed)
        return value

    async def _lookup(self, target: Target) -> tuple[int, bool]:
        """The window, and whether the runtime itself reported it."""
        provider = registry.get(target.provider)
        if provider.known_window is not None:
            return provider.known_window, False
        runtime = await _quietly(provider.loaded_context, self.http, target)
        if runtime:
            return runtime, True
        if self.catalog is not None and (known := await self.catalog(target)):
            return known, False
        metadata = await _quietly(provider.model_context, self.http, target)
        return metadata or self.default, False


Probe = Callable[[httpx.AsyncClient, Target], Awaitable[int | None]]


async def _quietly(probe: Probe, http: httpx.AsyncClient, target: Target) -> int | None:
    try:
        value = await probe(http, target)
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None
