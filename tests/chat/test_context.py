"""Fitting a conversation into a model's context, and how stored messages become turns."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from modelyard.chat.context import MESSAGE_OVERHEAD, PROMPT_OVERHEAD, fit, reply_reserve
from modelyard.chat.store import history_of, title_from
from modelyard.chat.types import Turn
from modelyard.providers.llamacpp import LlamaTokenizer
from modelyard.store.tables import MessageRow
from tests.support.servers import closed_port


class WordCounter:
    """One token per word: easy to reason about in a test."""

    def __init__(self) -> None:
        self.calls = 0

    async def count(self, texts: Sequence[str]) -> list[int]:
        self.calls += 1
        return [len(t.split()) for t in texts]


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine in its own thread: the browser tests keep a loop in the main one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def run_fit(history: list[Turn], window: int, max_tokens: int | None, system: str = "sys") -> Any:
    return run(fit(system, history, window, max_tokens, WordCounter()))


def test_everything_is_kept_when_it_fits_without_counting() -> None:
    counter = WordCounter()
    history = [Turn("user", "hi"), Turn("assistant", "hello"), Turn("user", "how are you")]
    fitted = run(fit("Be kind.", history, 4096, None, counter))
    assert fitted.dropped == 0
    assert fitted.turns == [Turn("system", "Be kind."), *history]
    assert counter.calls == 0  # fits even if every byte were a token


def test_oldest_turns_go_first_and_the_system_prompt_stays() -> None:
    history = [
        Turn("user", words(40, "a")),
        Turn("assistant", words(40, "b")),
        Turn("user", words(40, "c")),
        Turn("assistant", words(40, "d")),
        Turn("user", words(10, "e")),
    ]
    window, max_tokens = 200, 20
    fitted = run_fit(history, window, max_tokens, system=words(5, "s"))
    assert fitted.turns[0] == Turn("system", words(5, "s"))
    assert fitted.turns[-1] == history[-1]
    kept = fitted.turns[1:]
    assert kept == history[-len(kept) :]
    assert kept[0].role == "user"  # never starts with the assistant
    assert fitted.dropped == len(history) - len(kept) > 0
    budget = window - max_tokens - PROMPT_OVERHEAD
    used = sum(len(t.content.split()) + MESSAGE_OVERHEAD for t in fitted.turns)
    assert used <= budget


def test_the_newest_message_is_sent_even_when_it_alone_is_too_long() -> None:
    history = [Turn("user", words(50, "a")), Turn("assistant", "ok"), Turn("user", words(500, "z"))]
    fitted = run_fit(history, 256, 16)
    assert fitted.turns == [Turn("system", "sys"), history[-1]]
    assert fitted.dropped == 2


@pytest.mark.parametrize(
    ("window", "max_tokens", "reserve"),
    [
        pytest.param(4096, None, 1024, id="quarter-capped"),
        pytest.param(256, None, 64, id="quarter"),
        pytest.param(4096, 100, 100, id="max-tokens"),
        pytest.param(256, 10_000, 128, id="at-most-half"),
    ],
)
def test_room_kept_for_the_answer(window: int, max_tokens: int | None, reserve: int) -> None:
    assert reply_reserve(window, max_tokens) == reserve


def row(role: str, content: str, state: str = "complete") -> MessageRow:
    return MessageRow(role=role, content=content, state=state)


def test_history_leaves_out_failed_answers_and_merges_neighbours() -> None:
    rows = [
        row("user", "zero"),
        row("assistant", "   "),  # an empty answer: its question stays, merged with the next
        row("user", "one"),
        row("assistant", "partial", state="error"),
        row("user", "two"),
        row("assistant", "kept though stopped", state="stopped"),
        row("assistant", "   "),
        row("user", "three"),
        row("assistant", "", state="streaming"),
    ]
    # "one" failed: it is not sent again (it would fail every later message too).
    assert history_of(rows) == [
        Turn("user", "zero\n\ntwo"),
        Turn("assistant", "kept though stopped"),
        Turn("user", "three"),
    ]


def test_titles_come_from_the_first_line() -> None:
    assert title_from("  Hello   there\nsecond line") == "Hello there"
    long = title_from("x" * 200)
    assert len(long) == 60 and long.endswith("…")


def test_a_failed_llama_count_is_the_upper_bound_not_an_estimate() -> None:
    """Counting fails (the server went away): the conversation must still fit, so each text
    counts as many tokens as it has bytes, plus one."""
    text = "héllo wörld, " * 5

    async def count() -> list[int]:
        async with httpx.AsyncClient(timeout=5) as http:
            url = f"http://127.0.0.1:{closed_port()}"
            return await LlamaTokenizer(http, url, OrderedDict()).count([text])

    assert run(count()) == [len(text.encode()) + 1]
