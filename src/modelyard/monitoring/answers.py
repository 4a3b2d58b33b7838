"""The answers given between two history samples — the gateway's and chat's — overall and per
model.

Listeners on ``gateway.request`` and ``chat.answer`` (published once a request or a chat answer
is over) add each to a tally; the sampler takes the tally once a round and turns it into rates
and a median. Nothing on the request's path waits for it: a listener appends under a lock and
returns.

Series: ``answers.per_s``, ``answers.tokens_per_s``, ``answers.ttft_ms`` and, for each model
that answered in the interval (the busiest ``MODEL_SERIES_MAX`` of them), the same three as
``model.<provider>/<instance>/<name>.answers_per_s|tokens_per_s|ttft_ms``. An answer is a
gateway request to a model that got a 2xx (not a model list or a token count), or a chat
answer that completed or was stopped after its first token; tokens are the completion tokens
it reported; the time to first token is the median (p50) of those that streamed one. No
answer in an interval: the overall rates are 0, the median and the per-model series have no
point (nothing was measured).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from modelyard.events import (
    CHAT_ANSWER,
    GATEWAY_REQUEST,
    ChatAnswer,
    Event,
    EventBus,
    GatewayRequest,
)

MODEL_SERIES_MAX = 20  # models with series per sample; bounds the store (docs/BENCHMARKS.md)
SERIES_NAME_MAX = 200  # the samples table's column: a longer model key is counted overall only


@dataclass
class _Count:
    answers: int = 0
    tokens: int = 0
    ttfts: list[float] = field(default_factory=list)

    def add(self, ttft_ms: float | None, tokens: int | None) -> None:
        self.answers += 1
        self.tokens += tokens or 0
        if ttft_ms is not None:
            self.ttfts.append(ttft_ms)

    def values(self, names: tuple[str, str, str], elapsed_s: float) -> dict[str, float]:
        """Answers per second, tokens per second, the median TTFT, under ``names``."""
        answers, tokens, ttft = names
        values = {answers: self.answers / elapsed_s, tokens: self.tokens / elapsed_s}
        if self.ttfts:
            values[ttft] = statistics.median(self.ttfts)
        return values


OVERALL = ("answers.per_s", "answers.tokens_per_s", "answers.ttft_ms")


def model_series(key: str) -> tuple[str, str, str]:
    """The names of one model's series (``key``: provider/instance/name)."""
    return (f"model.{key}.answers_per_s", f"model.{key}.tokens_per_s", f"model.{key}.ttft_ms")


def _fits(key: str) -> bool:
    return max(len(name) for name in model_series(key)) <= SERIES_NAME_MAX


class AnswerTally:
    """The gateway's requests and chat's answers finished since the last ``take``."""

    def __init__(self, bus: EventBus) -> None:
        self._lock = threading.Lock()
        self._overall = _Count()
        self._models: defaultdict[str, _Count] = defaultdict(_Count)
        self._since = time.monotonic()
        bus.add_listener(GATEWAY_REQUEST, self._relayed)
        bus.add_listener(CHAT_ANSWER, self._chatted)

    def _relayed(self, event: Event[GatewayRequest]) -> None:
        request = event.payload
        # A 2xx with no model reached is a list or a count the gateway answered itself.
        if 200 <= request["status"] < 300 and request["key"]:
            self._add(request["key"], request["ttft_ms"], request["completion_tokens"])

    def _chatted(self, event: Event[ChatAnswer]) -> None:
        answer = event.payload
        if answer["state"] != "error" and answer["ttft_ms"] is not None:
            self._add(answer["key"], answer["ttft_ms"], answer["completion_tokens"])

    def _add(self, key: str, ttft_ms: float | None, tokens: int | None) -> None:
        with self._lock:
            self._overall.add(ttft_ms, tokens)
            self._models[key].add(ttft_ms, tokens)

    def take(self) -> dict[str, float]:
        """The series' values over the time since the last take, and a fresh tally."""
        now = time.monotonic()
        with self._lock:
            overall, models, since = self._overall, self._models, self._since
            self._overall, self._models, self._since = _Count(), defaultdict(_Count), now
        elapsed = max(now - since, 1e-3)
        values = overall.values(OVERALL, elapsed)
        named = [(key, count) for key, count in models.items() if _fits(key)]
        busiest = sorted(named, key=lambda item: item[1].answers, reverse=True)
        for key, count in busiest[:MODEL_SERIES_MAX]:
            values.update(count.values(model_series(key), elapsed))
        return values
