"""``/api/generate``, ``/api/chat``, ``/api/embed`` and ``/api/embeddings`` of the Ollama stand-in.

Generation streams NDJSON (``application/x-ndjson``): one object per piece of
``state.reply`` (or per token of a real llama.cpp server when ``state.forward_chat_url`` is
set), then a final object with ``done: true``, ``done_reason`` (``stop``/``length``) and the
metrics (integer nanoseconds; zero values left out). A scripted mid-stream error ends the
stream with ``{"error": "..."}`` at HTTP 200; with ``"stream": false`` it is a 500.
An empty prompt (generate) or ``messages: []`` (chat) only loads the model
(``done_reason: "load"``) or, with ``keep_alive: 0``, unloads it (``"unload"``). The
``model`` field echoes the request string as sent.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tests.fakes.common import (
    BadBody,
    StreamEvent,
    go_json,
    go_json_response,
    go_time,
    play,
    read_go_body,
    utc_now,
)
from tests.fakes.ollama_names import BadDuration, keep_alive_seconds
from tests.fakes.ollama_state import OllamaModel, OllamaState, Outcome

NDJSON = {"content-type": "application/x-ndjson"}
LOAD_NS = 250_000_000  # what loading a model "costs" in the reported metrics


def error(message: str, status: int) -> Response:
    """Ollama's error body."""
    return go_json_response({"error": message}, status)


class _Call:
    """A decoded generate/chat/embed request whose model exists."""

    def __init__(self, body: dict[str, Any], model: OllamaModel, keep_alive: float | None):
        self.body = body
        self.model = model
        self.raw_name = str(body["model"])
        self.keep_alive = keep_alive
        self.load_ns = 0

    def head(self) -> dict[str, Any]:
        return {"model": self.raw_name, "created_at": go_time(utc_now())}

    def limit(self) -> int | None:
        options = self.body.get("options")
        value = options.get("num_predict") if isinstance(options, dict) else None
        return value if isinstance(value, int) and value >= 0 else None

    def streaming(self) -> bool:
        return self.body.get("stream") is not False


async def _decode(
    state: OllamaState, request: Request, type_name: str, not_found: Callable[[str], str]
) -> _Call | Response:
    try:
        body = await read_go_body(request, type_name)
        keep = keep_alive_seconds(body.get("keep_alive"))
    except (BadBody, BadDuration) as exc:
        return error(str(exc), 400)
    name = body.get("model") or ""
    if not isinstance(name, str) or not name:
        return error("model is required", 400)
    model = state.model(name)
    if model is None:
        return error(not_found(name), 404)
    return _Call(body, model, keep)


def _not_found(name: str) -> str:
    return f"model '{name}' not found"


def _load_or_unload(state: OllamaState, call: _Call, empty: dict[str, Any]) -> Response:
    if call.keep_alive == 0:
        state.unload(call.model.name)
        reason = "unload"
    else:
        state.load(call.model.name, call.keep_alive)
        reason = "load"
    return go_json_response({**call.head(), **empty, "done": True, "done_reason": reason})


def _mark_loaded(state: OllamaState, call: _Call) -> None:
    call.load_ns = 0 if state.is_loaded(call.model.name) else LOAD_NS
    state.load(call.model.name, call.keep_alive)


def _metrics(call: _Call, prompt_count: int, outcome: Outcome) -> dict[str, int]:
    prompt_ns, eval_ns = prompt_count * 2_000_000, outcome.eval_count * 10_000_000
    values = {
        "total_duration": call.load_ns + prompt_ns + eval_ns + 1_000_000,
        "load_duration": call.load_ns,
        "prompt_eval_count": prompt_count,
        "prompt_eval_duration": prompt_ns,
        "eval_count": outcome.eval_count,
        "eval_duration": eval_ns,
    }
    return {k: v for k, v in values.items() if v}


async def _scripted(
    state: OllamaState, call: _Call, outcome: Outcome
) -> AsyncIterator[StreamEvent]:
    script = state.reply
    pieces, cut = script.pieces_for(call.limit())
    if cut:
        outcome.done_reason = "length"
    async for event in play(script, pieces):
        yield event


async def _forwarded(
    state: OllamaState, call: _Call, messages: list[dict[str, Any]], outcome: Outcome
) -> AsyncIterator[StreamEvent]:
    """Relay a llama.cpp server's streamed chat completion as pieces."""
    payload = {
        "messages": messages,
        "stream": True,
        "max_tokens": call.limit() or state.forward_max_tokens,
    }
    url = f"{state.forward_chat_url}/v1/chat/completions"
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as client,
        client.stream("POST", url, json=payload) as response,
    ):
        if response.status_code != 200:
            yield StreamEvent(error=f"llama runner returned status {response.status_code}")
            return
        async for line in response.aiter_lines():
            data = line.removeprefix("data: ")
            if not line.startswith("data: ") or data == "[DONE]":
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                yield StreamEvent(error=str(chunk["error"].get("message", chunk["error"])))
                return
            for choice in chunk.get("choices", []):
                if choice.get("finish_reason"):
                    outcome.done_reason = choice["finish_reason"]
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield StreamEvent(text=text)


def _source(
    state: OllamaState, call: _Call, messages: list[dict[str, Any]], outcome: Outcome
) -> AsyncIterator[StreamEvent]:
    if state.forward_chat_url:
        return _forwarded(state, call, messages, outcome)
    return _scripted(state, call, outcome)


async def _respond(
    call: _Call,
    events: AsyncIterator[StreamEvent],
    piece: Callable[[str], dict[str, Any]],
    final: Callable[[Outcome, str], dict[str, Any]],
    outcome: Outcome,
) -> Response:
    """Stream NDJSON, or collect everything into one object when ``stream`` is false."""
    if not call.streaming():
        text: list[str] = []
        async for event in events:
            if event.error is not None:
                return error(event.error, 500)
            outcome.eval_count += 1
            text.append(event.text)
        return go_json_response(final(outcome, "".join(text)))

    async def lines() -> AsyncIterator[bytes]:
        async for event in events:
            if event.error is not None:
                yield go_json({"error": event.error}) + b"\n"
                return
            outcome.eval_count += 1
            yield go_json(piece(event.text)) + b"\n"
        yield go_json(final(outcome, "")) + b"\n"

    return StreamingResponse(lines(), headers=NDJSON)


async def chat(state: OllamaState, request: Request) -> Response:
    """POST /api/chat."""
    call = await _decode(state, request, "ChatRequest", _not_found)
    if isinstance(call, Response):
        return call
    messages = [m for m in call.body.get("messages") or [] if isinstance(m, dict)]
    if not messages:
        return _load_or_unload(state, call, {"message": {"role": "assistant", "content": ""}})
    _mark_loaded(state, call)
    prompt_count = sum(len(str(m.get("content") or "").split()) for m in messages)
    outcome = Outcome()
    relay = [{"role": m.get("role", "user"), "content": m.get("content") or ""} for m in messages]

    def piece(text: str) -> dict[str, Any]:
        return {**call.head(), "message": {"role": "assistant", "content": text}, "done": False}

    def final(result: Outcome, text: str) -> dict[str, Any]:
        return {
            **call.head(),
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": result.done_reason,
            **_metrics(call, prompt_count, result),
        }

    return await _respond(call, _source(state, call, relay, outcome), piece, final, outcome)


async def generate(state: OllamaState, request: Request) -> Response:
    """POST /api/generate."""
    call = await _decode(state, request, "GenerateRequest", _not_found)
    if isinstance(call, Response):
        return call
    prompt = str(call.body.get("prompt") or "")
    if not prompt and not call.body.get("images"):
        return _load_or_unload(state, call, {"response": ""})
    _mark_loaded(state, call)
    prompt_count = len(prompt.split())
    outcome = Outcome()

    def piece(text: str) -> dict[str, Any]:
        return {**call.head(), "response": text, "done": False}

    def final(result: Outcome, text: str) -> dict[str, Any]:
        line: dict[str, Any] = {**call.head(), "response": text, "done": True}
        line["done_reason"] = result.done_reason
        if not call.body.get("raw"):
            line["context"] = list(range(1, prompt_count + result.eval_count + 1))
        return {**line, **_metrics(call, prompt_count, result)}

    relay = [{"role": "user", "content": prompt}]
    return await _respond(call, _source(state, call, relay, outcome), piece, final, outcome)


def embedding_vector(text: str, dims: int) -> list[float]:
    """A deterministic L2-normalised vector for a text."""
    raw: list[float] = []
    block = 0
    while len(raw) < dims:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        raw.extend((b - 127.5) / 127.5 for b in digest)
        block += 1
    values = raw[:dims]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _embed_not_found(name: str) -> str:
    return f'model "{name}" not found, try pulling it first'


def _dims(call: _Call) -> int:
    wanted = call.body.get("dimensions")
    if isinstance(wanted, int) and wanted > 0:
        return min(wanted, call.model.details.embedding_length)
    return call.model.details.embedding_length


async def embed(state: OllamaState, request: Request) -> Response:
    """POST /api/embed."""
    call = await _decode(state, request, "EmbedRequest", _embed_not_found)
    if isinstance(call, Response):
        return call
    value = call.body.get("input")
    inputs: list[Any] = [] if value is None else value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in inputs):
        return error("invalid input type", 400)
    if not inputs or inputs == [""]:
        return go_json_response({"model": call.raw_name, "embeddings": []})
    _mark_loaded(state, call)
    count = sum(len(str(text).split()) for text in inputs)
    return go_json_response(
        {
            "model": call.raw_name,
            "embeddings": [embedding_vector(str(text), _dims(call)) for text in inputs],
            "total_duration": call.load_ns + 5_000_000,
            **({"load_duration": call.load_ns} if call.load_ns else {}),
            "prompt_eval_count": count,
        }
    )


async def embeddings(state: OllamaState, request: Request) -> Response:
    """POST /api/embeddings (the older single-prompt form)."""
    call = await _decode(state, request, "EmbeddingRequest", _embed_not_found)
    if isinstance(call, Response):
        return call
    prompt = str(call.body.get("prompt") or "")
    if not prompt:
        return go_json_response({"embedding": []})
    _mark_loaded(state, call)
    return go_json_response({"embedding": embedding_vector(prompt, _dims(call))})
