"""Fitting a conversation into a model's context window.

The window comes from, in order: the ``ctx_size`` option; what the runtime reports for the
loaded model (llama.cpp ``/props`` ``n_ctx``, Ollama ``/api/ps`` ``context_length``); the
catalog's record; the model's own metadata (Ollama ``/api/show``, LM Studio
``max_context_length``, ``/v1/models`` ``meta.n_ctx``); a known cloud window; else
``default_ctx_size``. Lookups are cached for a short while (two seconds, and then made again
before use, when a runtime that should report its window did not) and never fail a chat.

Trimming drops the oldest turns first and always keeps the system prompt and the newest
message. Counting is free when the whole conversation fits even if every byte were a token
(no tokenizer produces more tokens than bytes); otherwise llama.cpp's ``/tokenize`` counts
exactly (when it fails, a text counts as its bytes), and other providers are estimated.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from modelyard.chat.types import ChatOptions, Target, Turn
from modelyard.config import ProviderKind
from modelyard.providers.openai_compat import models_url
from modelyard.validation import ollama_display_name

CLOUD_WINDOWS = {ProviderKind.OPENAI: 128_000, ProviderKind.ANTHROPIC: 200_000}
# What a chat template adds, generously: role markers and separators per message, and the
# assistant header before the answer ("<|im_start|>assistant\n" is 11 tokens when every byte
# of "assistant" is a token of its own).
MESSAGE_OVERHEAD = 12
PROMPT_OVERHEAD = 16
CACHE_TTL_S = 30.0
GUESS_TTL_S = 2.0  # when the runtime's own answer was missing
BYTES_PER_TOKEN_ESTIMATE = 3  # conservative: English text averages about 4

CatalogLookup = Callable[[Target], Awaitable[int | None]]


class TokenCounter(Protocol):
    """Counts the tokens of texts for one model."""

    async def count(self, texts: Sequence[str]) -> list[int]: ...


class EstimatingCounter:
    """An estimate from the UTF-8 length, for providers without a tokenizer endpoint."""

    async def count(self, texts: Sequence[str]) -> list[int]:
        return [math.ceil(len(t.encode()) / BYTES_PER_TOKEN_ESTIMATE) for t in texts]


class LlamaTokenizer:
    """Exact counts from llama.cpp's ``POST /tokenize``, remembered per text."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, memo: OrderedDict[str, int]):
        self.http = http
        self.base_url = base_url
        self.memo = memo

    async def count(self, texts: Sequence[str]) -> list[int]:
        return list(await asyncio.gather(*(self._one(t) for t in texts)))

    async def _one(self, text: str) -> int:
        key = self.base_url + hashlib.sha1(text.encode()).hexdigest()
        if key in self.memo:
            self.memo.move_to_end(key)
            return self.memo[key]
        try:
            resp = await self.http.post(
                f"{self.base_url}/tokenize", json={"content": text, "add_special": False}
            )
            tokens = resp.json().get("tokens") if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            tokens = None
        if not isinstance(tokens, list):
            # Its upper bound, not an estimate: a failed count must not overflow the server's
            # context (a byte-level tokenizer makes a token of nearly every byte).
            return len(text.encode()) + 1
        self.memo[key] = len(tokens)
        if len(self.memo) > 2048:
            self.memo.popitem(last=False)
        return len(tokens)


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
        if target.provider is ProviderKind.LLAMACPP:
            return LlamaTokenizer(self.http, target.base_url, self._memo)
        return EstimatingCounter()

    async def window(self, target: Target, options: ChatOptions) -> int:
        """The context window to fit messages into."""
        runtime = await self._cached(target)
        if options.ctx_size is not None:
            # A running llama.cpp server cannot grow its context; Ollama takes num_ctx.
            fixed = target.provider in (ProviderKind.LLAMACPP, ProviderKind.LMSTUDIO)
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
        guessed = not from_runtime and target.provider in _RUNTIME
        ttl = GUESS_TTL_S if guessed else CACHE_TTL_S
        self._cache[key] = (time.monotonic() + ttl, value, guessed)
        return value

    async def _lookup(self, target: Target) -> tuple[int, bool]:
        """The window, and whether the runtime itself reported it."""
        if target.provider in CLOUD_WINDOWS:
            return CLOUD_WINDOWS[target.provider], False
        runtime = await _quietly(_RUNTIME.get(target.provider), self.http, target)
        if runtime:
            return runtime, True
        if self.catalog is not None and (known := await self.catalog(target)):
            return known, False
        metadata = await _quietly(_METADATA.get(target.provider), self.http, target)
        return metadata or self.default, False


Probe = Callable[[httpx.AsyncClient, Target], Awaitable[int | None]]


async def _quietly(probe: Probe | None, http: httpx.AsyncClient, target: Target) -> int | None:
    if probe is None:
        return None
    try:
        value = await probe(http, target)
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def _llamacpp_runtime(http: httpx.AsyncClient, target: Target) -> int | None:
    props = (await http.get(f"{target.base_url}/props")).json()
    return _int(props["default_generation_settings"]["n_ctx"])


def _ollama_name(name: str) -> str:
    return ollama_display_name(name).lower()


async def _ollama_runtime(http: httpx.AsyncClient, target: Target) -> int | None:
    models = (await http.get(f"{target.base_url}/api/ps")).json()["models"]
    wanted = _ollama_name(target.model)
    for entry in models:
        if _ollama_name(str(entry.get("name") or entry.get("model"))) == wanted:
            return _int(entry.get("context_length"))
    return None


async def _ollama_metadata(http: httpx.AsyncClient, target: Target) -> int | None:
    resp = await http.post(f"{target.base_url}/api/show", json={"model": target.model})
    info = resp.json().get("model_info") or {}
    for key, value in info.items():
        if key.endswith(".context_length"):
            return _int(value)
    return None


async def _lmstudio_metadata(http: httpx.AsyncClient, target: Target) -> int | None:
    entry = (await http.get(f"{target.base_url}/api/v0/models/{target.model}")).json()
    return _int(entry.get("loaded_context_length")) or _int(entry.get("max_context_length"))


async def _openai_compat_metadata(http: httpx.AsyncClient, target: Target) -> int | None:
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    data = (await http.get(models_url(target.base_url), headers=headers)).json()["data"]
    for entry in data:
        if entry.get("id") == target.model:
            meta = entry.get("meta") or {}
            return (
                _int(meta.get("n_ctx"))
                or _int(entry.get("max_model_len"))  # vLLM
                or _int(entry.get("context_length"))
            )
    return None


_RUNTIME: dict[ProviderKind, Probe] = {
    ProviderKind.LLAMACPP: _llamacpp_runtime,
    ProviderKind.OLLAMA: _ollama_runtime,
}
_METADATA: dict[ProviderKind, Probe] = {
    ProviderKind.OLLAMA: _ollama_metadata,
    ProviderKind.LMSTUDIO: _lmstudio_metadata,
    ProviderKind.OPENAI_COMPAT: _openai_compat_metadata,
}
