"""A stand-in Ollama server, faithful to PROTOCOLS.md §1 where the doc is precise.

Usage::

    state = OllamaState(pull_tick=0.005)
    state.add_model("llama3.2")                      # appears in /api/tags
    state.add_registry_model("qwen2:0.5b", [300_000_000, 1_400])  # pullable
    state.reply = ReplyScript(pieces=["Hi", " there"], token_delay=0.01)
    with ServerThread(create_ollama_app(state), server_header=False) as server:
        ollama.Client(host=server.url).list()

or the ``ollama_server`` fixture of tests/fakes/fixtures.py. The scripting knobs are
documented in tests/fakes/ollama_state.py; the pull stream in ollama_pull.py; generation and
embeddings in ollama_chat.py.

Wire behaviour kept from the real server (gin):

* ``GET``/``HEAD /`` → ``Ollama is running`` (``text/plain; charset=utf-8``).
* Unknown path → 404 ``text/plain`` ``404 page not found``; known path with the wrong
  method → 405 ``405 method not allowed``.
* Errors are ``{"error": "..."}`` as ``application/json; charset=utf-8``; an empty body is
  400 ``missing request body``; malformed JSON is 400 with Go's decoder wording.
* ``/api/tags`` sorted newest first, ``{"models":[]}`` when empty, ``digest`` 64 hex without
  prefix, ``modified_at`` in the server's zone with an offset (``state.tz``; see
  ``times_with_zone``).
* ``DELETE /api/delete`` → 200 with an empty body (no Content-Type), or 404
  ``model '<as sent>' not found``; ``/api/copy`` → 404 ``model "<source>" not found``.
* ``/v1/models`` (OpenAI shape, ``owned_by`` = namespace) gives ``"data": null`` when empty.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes import ollama_chat
from tests.fakes.common import (
    BadBody,
    RecordingMiddleware,
    ReplyScript,
    go_json,
    go_json_response,
    read_go_body,
)
from tests.fakes.ollama_names import namespace_of, normalise
from tests.fakes.ollama_pull import pull_events
from tests.fakes.ollama_state import OllamaModel, OllamaState, PullFailure, RegistryModel

__all__ = [
    "OllamaState",
    "PullFailure",
    "RegistryModel",
    "ReplyScript",
    "create_ollama_app",
]

Handler = Callable[[OllamaState, Request], Awaitable[Response]]
error = ollama_chat.error


def _bind(state: OllamaState, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handler(state, request)

    return endpoint


def _gin_text(status: int, text: str) -> Response:
    # gin writes these with a bare "text/plain" (no charset), unlike c.String.
    return Response(text, status_code=status, headers={"content-type": "text/plain"})


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return _gin_text(405, "405 method not allowed")
    return _gin_text(404, "404 page not found")


def _tags_entry(state: OllamaState, model: OllamaModel) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": model.name,
        "model": model.name,
        "modified_at": state.time_text(model.modified_at, model.mtime_extra_ns),
        "size": model.size,
        "digest": model.digest,
        "details": model.details.wire(state.new_fields),
    }
    if state.new_fields and model.capabilities:
        entry["capabilities"] = model.capabilities
    return entry


async def root(state: OllamaState, request: Request) -> Response:
    """GET/HEAD /."""
    return PlainTextResponse("Ollama is running")


async def version(state: OllamaState, request: Request) -> Response:
    """GET/HEAD /api/version."""
    return go_json_response({"version": state.version})


async def tags(state: OllamaState, request: Request) -> Response:
    """GET/HEAD /api/tags."""
    return go_json_response({"models": [_tags_entry(state, m) for m in state.models()]})


async def ps(state: OllamaState, request: Request) -> Response:
    """GET /api/ps."""
    entries = []
    for loaded in state.loaded():
        model = state.model(loaded.name)
        if model is None:
            continue
        entries.append(
            {
                "name": model.name,
                "model": model.name,
                "size": loaded.size,
                "digest": model.digest,
                "details": model.details.wire(False),
                "expires_at": state.time_text(loaded.expires_at),
                "size_vram": loaded.size_vram,
                "context_length": loaded.context_length,
            }
        )
    return go_json_response({"models": entries})


def _parameter_count(text: str) -> int:
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
    try:
        return int(float(text[:-1]) * scale[text[-1].upper()])
    except (KeyError, ValueError, IndexError):
        return 0


def _show_body(state: OllamaState, model: OllamaModel) -> dict[str, Any]:
    family = model.details.family
    info = {
        "general.architecture": family,
        "general.parameter_count": _parameter_count(model.details.parameter_size),
        "general.quantization_version": 2,
        f"{family}.context_length": model.details.context_length,
        f"{family}.embedding_length": model.details.embedding_length,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": [],
    }
    blob = model.layers[0].digest.replace(":", "-")
    return {
        "modelfile": f'# Modelfile generated by "ollama show"\nFROM /models/blobs/{blob}\n',
        "parameters": 'stop                           "<|eot_id|>"',
        "template": "{{ .Prompt }}",
        "details": model.details.wire(False),
        "model_info": dict(sorted(info.items())),  # Go marshals maps with sorted keys
        "capabilities": model.capabilities,
        "modified_at": state.time_text(model.modified_at, model.mtime_extra_ns),
    }


async def show(state: OllamaState, request: Request) -> Response:
    """POST /api/show."""
    try:
        body = await read_go_body(request, "ShowRequest")
    except BadBody as exc:
        return error(exc.message, 400)
    name = str(body.get("model") or body.get("name") or "")
    if not name:
        return error("model is required", 400)
    display = normalise(name)
    if display is None:
        return error("invalid model name", 400)
    model = state.model(display)
    if model is None:
        return error(f"model '{display}' not found", 404)
    return go_json_response(_show_body(state, model))


async def pull(state: OllamaState, request: Request) -> Response:
    """POST /api/pull."""
    try:
        body = await read_go_body(request, "PullRequest")
    except BadBody as exc:
        return error(exc.message, 400)
    display = normalise(str(body.get("model") or body.get("name") or ""))
    if display is None:
        return error("invalid model name", 400)
    events = pull_events(state, display)
    if body.get("stream") is False:
        async for event in events:
            if "error" in event:
                return error(event["error"], 500)
        return go_json_response({"status": "success"})

    async def lines() -> AsyncIterator[bytes]:
        async for event in events:
            yield go_json(event) + b"\n"

    return StreamingResponse(lines(), headers=ollama_chat.NDJSON)


async def delete(state: OllamaState, request: Request) -> Response:
    """DELETE /api/delete."""
    try:
        body = await read_go_body(request, "DeleteRequest")
    except BadBody as exc:
        return error(exc.message, 400)
    name = str(body.get("model") or body.get("name") or "")
    if normalise(name) is None:
        return error(f"name {json.dumps(name)} is invalid", 400)
    if not state.remove_model(name):
        return error(f"model '{name}' not found", 404)
    return Response(status_code=200)


async def copy(state: OllamaState, request: Request) -> Response:
    """POST /api/copy."""
    try:
        body = await read_go_body(request, "CopyRequest")
    except BadBody as exc:
        return error(exc.message, 400)
    source, destination = str(body.get("source") or ""), str(body.get("destination") or "")
    for label, value in (("source", source), ("destination", destination)):
        if normalise(value) is None:
            return error(f"{label} {json.dumps(value)} is invalid", 400)
    model = state.model(source)
    if model is None:
        return error(f"model {json.dumps(source)} not found", 404)
    state.copy_model(model, destination)
    return Response(status_code=200)


def _openai_model(model: OllamaModel) -> dict[str, Any]:
    return {
        "id": model.name,
        "object": "model",
        "created": int(model.modified_at.timestamp()),
        "owned_by": namespace_of(model.name),
    }


async def v1_models(state: OllamaState, request: Request) -> Response:
    """GET /v1/models: a nil Go slice, so ``null`` rather than ``[]`` with no models."""
    data = [_openai_model(m) for m in state.models()] or None
    return go_json_response({"object": "list", "data": data})


async def v1_model(state: OllamaState, request: Request) -> Response:
    """GET /v1/models/{model}."""
    name = request.path_params["model"]
    model = state.model(name)
    if model is None:
        message = f"model '{name}' not found"
        body = {"message": message, "type": "not_found_error", "param": None, "code": None}
        return go_json_response({"error": body}, 404)
    return go_json_response(_openai_model(model))


_ROUTES: list[tuple[str, Handler, list[str]]] = [
    ("/", root, ["GET", "HEAD"]),
    ("/api/version", version, ["GET", "HEAD"]),
    ("/api/tags", tags, ["GET", "HEAD"]),
    ("/api/ps", ps, ["GET"]),
    ("/api/show", show, ["POST"]),
    ("/api/pull", pull, ["POST"]),
    ("/api/delete", delete, ["DELETE"]),
    ("/api/copy", copy, ["POST"]),
    ("/api/generate", ollama_chat.generate, ["POST"]),
    ("/api/chat", ollama_chat.chat, ["POST"]),
    ("/api/embed", ollama_chat.embed, ["POST"]),
    ("/api/embeddings", ollama_chat.embeddings, ["POST"]),
    ("/v1/models", v1_models, ["GET"]),
    ("/v1/models/{model:path}", v1_model, ["GET"]),
]


def create_ollama_app(state: OllamaState) -> Starlette:
    """The ASGI app of one Ollama stand-in backed by ``state``."""
    return Starlette(
        routes=[Route(p, _bind(state, h), methods=m) for p, h, m in _ROUTES],
        middleware=[Middleware(RecordingMiddleware, log=state.log)],
        exception_handlers={404: _http_error, 405: _http_error},
    )
