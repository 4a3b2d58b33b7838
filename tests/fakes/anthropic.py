"""A stand-in for the Anthropic API (PROTOCOLS.md §5 and the Messages streaming format).

Usage::

    state = AnthropicState(api_key="sk-ant-test")
    state.reply = ReplyScript(pieces=["Hi", "!"], token_delay=0.01)
    with serve(create_anthropic_app(state), state) as server:   # tests/fakes/fixtures.py
        anthropic.Anthropic(base_url=server.url, api_key="sk-ant-test")

Endpoints: ``GET /v1/models`` (``{"data":[…],"has_more","first_id","last_id"}``, newest
first, with ``limit``/``after_id``/``before_id``), ``GET /v1/models/{id}`` and
``POST /v1/messages`` (one ``message`` object, or with ``"stream": true`` the SSE events
``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
(``text_delta``) per piece, ``content_block_stop``, ``message_delta`` (``stop_reason``
``end_turn``/``max_tokens``, ``usage.output_tokens``), ``message_stop``). A scripted
mid-stream error (``state.reply.error_after``) sends ``event: error`` with
``state.stream_error_type`` (default ``overloaded_error``) and ends the stream.

Every request needs ``x-api-key`` (or ``Authorization: Bearer``, which current SDKs send)
equal to ``state.api_key`` (401 ``authentication_error``:
``x-api-key header is required`` / ``invalid x-api-key``) and an ``anthropic-version`` header
(400 ``invalid_request_error``). Error bodies carry ``request_id``; responses carry a
``request-id`` header. Requests are recorded in ``state.log``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import (
    RecordingMiddleware,
    ReplyScript,
    RequestLog,
    play,
    read_json_object,
)

__all__ = ["AnthropicModel", "AnthropicState", "ReplyScript", "create_anthropic_app"]

ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


@dataclass(frozen=True)
class AnthropicModel:
    """One entry of ``/v1/models``."""

    id: str
    display_name: str
    created_at: str

    def wire(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "type": "model",
            "id": self.id,
            "display_name": self.display_name,
            "created_at": self.created_at,
        }


DEFAULT_MODELS = [
    AnthropicModel("claude-opus-4-7", "Claude Opus 4.7", "2026-04-16T00:00:00Z"),
    AnthropicModel("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
    AnthropicModel("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
]


class AnthropicState:
    """Scripting object of one Anthropic stand-in."""

    def __init__(self, *, api_key: str = "sk-ant-test-key") -> None:
        self.api_key = api_key
        self.models = list(DEFAULT_MODELS)
        self.reply = ReplyScript()
        self.stream_error_type = "overloaded_error"
        self.log = RequestLog()


def _request_id() -> str:
    return "req_" + secrets.token_hex(12)


def _json(value: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(value, separators=(",", ":")),
        status_code=status,
        headers={"content-type": "application/json", "request-id": _request_id()},
    )


def _error(kind: str, message: str, status: int | None = None) -> Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return _json({**body, "request_id": _request_id()}, status or ERROR_STATUS[kind])


def _denied(state: AnthropicState, request: Request) -> Response | None:
    # Current SDKs send the key as a bearer token; the documented header is x-api-key.
    bearer = request.headers.get("authorization", "")
    key = request.headers.get("x-api-key") or bearer.removeprefix("Bearer ").strip()
    if not key:
        return _error("authentication_error", "x-api-key header is required")
    if key != state.api_key:
        return _error("authentication_error", "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return _error("invalid_request_error", "anthropic-version: header is required")
    return None


def _page(models: list[AnthropicModel], request: Request) -> Response:
    query = request.query_params
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        return _error("invalid_request_error", "limit: Input should be a valid integer")
    if not 1 <= limit <= 1000:
        return _error("invalid_request_error", "limit: Input should be between 1 and 1000")
    ids = [m.id for m in models]
    start, stop = 0, len(models)
    if "after_id" in query and query["after_id"] in ids:
        start = ids.index(query["after_id"]) + 1
    if "before_id" in query and query["before_id"] in ids:
        stop = ids.index(query["before_id"])
        start = max(start, stop - limit)
    page = models[start:stop][:limit]
    return _json(
        {
            "data": [m.wire() for m in page],
            "has_more": start + len(page) < stop,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        }
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass(frozen=True)
class _Turn:
    """A validated messages request."""

    model: str
    max_tokens: int
    input_tokens: int
    message_id: str

    def message(self, content: list[Any], stop: str | None, output: int) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": output},
        }


async def _stream(state: AnthropicState, turn: _Turn) -> AsyncIterator[bytes]:
    script = state.reply
    pieces, cut = script.pieces_for(turn.max_tokens)
    yield _sse("message_start", {"type": "message_start", "message": turn.message([], None, 1)})
    block = {"type": "text", "text": ""}
    yield _sse(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )
    yield _sse("ping", {"type": "ping"})
    sent = 0
    async for event in play(script, pieces):
        if event.error is not None:
            error = {"type": state.stream_error_type, "message": event.error}
            yield _sse("error", {"type": "error", "error": error})
            return
        sent += 1
        delta = {"type": "text_delta", "text": event.text}
        yield _sse(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    stop = {"stop_reason": "max_tokens" if cut else "end_turn", "stop_sequence": None}
    yield _sse(
        "message_delta", {"type": "message_delta", "delta": stop, "usage": {"output_tokens": sent}}
    )
    yield _sse("message_stop", {"type": "message_stop"})


async def _complete(state: AnthropicState, turn: _Turn) -> Response:
    script = state.reply
    pieces, cut = script.pieces_for(turn.max_tokens)
    text: list[str] = []
    async for event in play(script, pieces):
        if event.error is not None:
            return _error(state.stream_error_type, event.error)
        text.append(event.text)
    content = [{"type": "text", "text": "".join(text)}]
    return _json(turn.message(content, "max_tokens" if cut else "end_turn", len(text)))


def _validate(state: AnthropicState, body: dict[str, Any]) -> _Turn | Response:
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return _error("invalid_request_error", f"{name}: Field required")
    model, max_tokens, messages = body["model"], body["max_tokens"], body["messages"]
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return _error("invalid_request_error", "max_tokens: Input should be greater than 0")
    if not isinstance(messages, list) or not messages:
        return _error("invalid_request_error", "messages: at least one message is required")
    if model not in {m.id for m in state.models}:
        return _error("not_found_error", f"model: {model}")
    words = sum(len(_text_of(m.get("content")).split()) for m in messages if isinstance(m, dict))
    return _Turn(str(model), max_tokens, max(words, 1), "msg_" + secrets.token_hex(12))


def create_anthropic_app(state: AnthropicState) -> Starlette:
    """The ASGI app of one Anthropic stand-in backed by ``state``."""

    async def list_models(request: Request) -> Response:
        return _denied(state, request) or _page(state.models, request)

    async def get_model(request: Request) -> Response:
        if (denied := _denied(state, request)) is not None:
            return denied
        model_id = request.path_params["model_id"]
        for model in state.models:
            if model.id == model_id:
                return _json(model.wire())
        return _error("not_found_error", f"model: {model_id}")

    async def messages(request: Request) -> Response:
        if (denied := _denied(state, request)) is not None:
            return denied
        body = await read_json_object(request)
        if body is None:
            return _error("invalid_request_error", "The request body is not valid JSON.")
        turn = _validate(state, body)
        if isinstance(turn, Response):
            return turn
        if body.get("stream"):
            headers = {"content-type": "text/event-stream; charset=utf-8"}
            headers["request-id"] = _request_id()
            return StreamingResponse(_stream(state, turn), headers=headers)
        return await _complete(state, turn)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _denied(state, request) or _error("not_found_error", "Not Found")

    return Starlette(
        routes=[
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
            Route("/v1/messages", messages, methods=["POST"]),
        ],
        middleware=[Middleware(RecordingMiddleware, log=state.log)],
        exception_handlers={404: not_found, 405: not_found},
    )
