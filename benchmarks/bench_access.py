"""Gateway keys: 50 concurrent requests against a 100-tokens-per-minute key (tokens admitted
in the minute vs the limit plus one request's reservation); usage totals vs the sum of the
backend's usage fields over a mixed run (three dialects, streaming and not, an error); and
the cost of a keyed request (allow-list, three limits) next to a keyless local one, in the
same run, against the genuine llama-server and a tiny generated model."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam
from tests.support.app_server import RunningApp, make_settings, running_app
from tests.support.llama import LLAMA_SERVER
from tests.support.tiny_gguf import write_tiny_gguf

TITLE = (
    "Gateway keys: a token limit under 50 concurrent requests, exact usage, a keyed request's cost"
)
LIMIT = 100
MAX_TOKENS = 10
ROUNDS = 200
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
HI_CLAUDE: list[MessageParam] = [{"role": "user", "content": "hi"}]


def _key(app: RunningApp, **rules: Any) -> dict[str, Any]:
    answer = app.http.post("/api/keys", json={"name": "bench", "scopes": ["inference"], **rules})
    answer.raise_for_status()
    created: dict[str, Any] = answer.json()
    return created


def _burst(app: RunningApp) -> tuple[int, int, int]:
    """Admitted requests, their tokens (the backend's figures), the largest one's."""
    key = _key(app, limits={"tokens_per_minute": LIMIT})["key"]

    async def run() -> list[Any]:
        async with openai.AsyncOpenAI(
            base_url=app.url + "/v1", api_key=key, max_retries=0, timeout=300
        ) as sdk:

            async def one() -> Any:
                try:
                    return await sdk.chat.completions.create(
                        model="tiny.gguf",
                        messages=HI,
                        max_tokens=MAX_TOKENS,
                    )
                except openai.RateLimitError:
                    return None

            return await asyncio.gather(*(one() for _ in range(50)))

    admitted = [a.usage.total_tokens for a in asyncio.run(run()) if a is not None]
    return len(admitted), sum(admitted), max(admitted)


def _mixed(app: RunningApp) -> tuple[tuple[int, int], tuple[int, int], int]:
    """(prompt, completion) summed from the clients' usage fields, and from GET /api/usage."""
    created = _key(app)
    key = created["key"]
    gpt = openai.OpenAI(base_url=app.url + "/v1", api_key=key, max_retries=0)
    claude = anthropic.Anthropic(base_url=app.url, api_key=key, max_retries=0)
    llama = ollama.Client(host=app.url + "/ollama", headers={"Authorization": f"Bearer {key}"})
    prompt = completion = requests = 0
    for n in range(10):
        done = gpt.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=3 + n)
        assert done.usage is not None
        prompt, completion = (
            prompt + done.usage.prompt_tokens,
            completion + done.usage.completion_tokens,
        )
        chunks = list(
            gpt.chat.completions.create(
                model="tiny.gguf",
                messages=HI,
                max_tokens=2 + n,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        usage = chunks[-1].usage
        assert usage is not None
        prompt, completion = prompt + usage.prompt_tokens, completion + usage.completion_tokens
        message = claude.messages.create(model="tiny.gguf", max_tokens=1 + n, messages=HI_CLAUDE)
        prompt, completion = (
            prompt + message.usage.input_tokens,
            completion + message.usage.output_tokens,
        )
        answer = llama.chat(
            model="tiny.gguf", messages=HI, options={"num_predict": 1 + n}, stream=False
        )
        prompt += answer.prompt_eval_count or 0
        completion += answer.eval_count or 0
        with contextlib.suppress(openai.BadRequestError):  # the backend refuses it: an error
            gpt.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=2, n=-3)
        requests += 5
    totals = app.http.get("/api/usage", params={"key": created["id"], "group": "key"}).json()
    counted = totals["totals"]
    assert counted["requests"] == requests
    return (prompt, completion), (counted["prompt_tokens"], counted["completion_tokens"]), requests


def _cost(app: RunningApp) -> tuple[list[float], list[float]]:
    """Latency of alternating keyless and keyed requests (same body, same connection kind)."""
    key = _key(
        app,
        models=["tiny*", "ollama/*"],
        limits={
            "requests_per_minute": 100_000,
            "tokens_per_minute": 10_000_000,
            "concurrent_requests": 64,
        },
    )["key"]
    body = {"model": "tiny.gguf", "messages": HI, "max_tokens": 1}
    keyless: list[float] = []
    keyed: list[float] = []
    with httpx.Client(base_url=app.url, timeout=60) as http:
        for _ in range(20):  # warm: the model loaded, the connection open
            http.post("/v1/chat/completions", json=body).raise_for_status()
        for n in range(ROUNDS * 2):
            headers = {"Authorization": f"Bearer {key}"} if n % 2 else {}
            began = time.perf_counter()
            http.post("/v1/chat/completions", json=body, headers=headers).raise_for_status()
            (keyed if n % 2 else keyless).append((time.perf_counter() - began) * 1000)
    return keyless, keyed


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(workdir: Path) -> str:
    models = workdir / "models"
    models.mkdir(parents=True, exist_ok=True)
    write_tiny_gguf(models / "tiny.gguf")
    settings = make_settings(
        workdir, [], models_dir=models, llama_server=LLAMA_SERVER, monitor=False
    )
    with running_app(settings) as app:
        app.http.post("/api/models/sync").raise_for_status()
        admitted, spent, largest = _burst(app)
        sums, counted, requests = _mixed(app)
        keyless, keyed = _cost(app)
    shutil.rmtree(models, ignore_errors=True)
    bound = LIMIT + MAX_TOKENS
    p50 = (statistics.median(keyless), statistics.median(keyed))
    p99 = (_pct(keyless, 0.99), _pct(keyed, 0.99))
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            "| measure | figure | baseline (same run) | ratio |",
            "|---|---|---|---|",
            f"| tokens admitted, 50 concurrent requests (`max_tokens` {MAX_TOKENS}), "
            f"{admitted} admitted | {spent} (largest answer {largest}) "
            f"| limit {LIMIT} + one request's `max_tokens` = {bound} "
            f"| {spent / bound:.2f} (≤ 1 holds: {spent <= bound}) |",
            f"| usage totals over a mixed run ({requests} requests: OpenAI whole and streamed, "
            f"Anthropic, Ollama, a refused one) — prompt, completion | {counted[0]}, {counted[1]} "
            f"| the backend's usage fields summed: {sums[0]}, {sums[1]} "
            f"| exact: {counted == sums} |",
            f"| keyed request (allow-list, three limits), p50 | {p50[1]:.2f} ms | keyless "
            f"local {p50[0]:.2f} ms | {p50[1] / p50[0]:.2f} (+{p50[1] - p50[0]:.2f} ms) |",
            f"| keyed request, p99 | {p99[1]:.2f} ms | keyless local {p99[0]:.2f} ms "
            f"| {p99[1] / p99[0]:.2f} (+{p99[1] - p99[0]:.2f} ms) |",
            "",
            f"{ROUNDS} of each, alternating on one connection, one token answered by the genuine "
            "llama-server. A keyless local caller costs a peer-credential lookup; a keyed one a "
            "SHA-256 and a dictionary lookup, the allow-list, the limiter and (with a token "
            "limit) the prompt's estimate — no store access on the request path.",
            "",
        ]
    )
