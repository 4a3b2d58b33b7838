"""A stand-in LM Studio server (PROTOCOLS.md §4; LM Studio itself is closed source).

Usage::

    state = LMStudioState()
    state.add_model("qwen/qwen3-4b", params_string="4B", loaded=True)
    state.add_model("text-embedding-nomic-embed-text-v1.5", type="embeddings")
    with serve(create_lmstudio_app(state), state) as server: ...   # tests/fakes/fixtures.py

Endpoints: ``GET /lmstudio-greeting`` (``{"lmstudio":true}``), ``GET /v1/models`` (every
downloaded model with JIT loading on, else only loaded instances; ``owned_by`` is
``organization_owner``), ``GET /api/v0/models`` and ``/api/v0/models/{id}`` (``type``
llm/vlm/embeddings, ``state`` loaded/not-loaded), ``GET /api/v1/models`` (``type``
llm/embedding, ``loaded_instances``), ``POST /api/v1/models/load`` (``{"model",
"context_length"?}`` → ``{"type","instance_id","load_time_seconds","status":"loaded"}``),
``POST /api/v1/models/unload`` (``{"instance_id"}`` → ``{"instance_id"}``) and
``POST /v1/chat/completions`` (OpenAI SSE; JIT-loads the model when allowed).

Quirks kept: every response carries ``X-Powered-By: Express``; REST bodies are pretty-printed
with two spaces; an unknown path or wrong method answers **HTTP 200**
``{"error":"Unexpected endpoint or method. (GET /x)"}``. With ``state.api_token`` set, every
path but the greeting needs ``Authorization: Bearer <token>``: a missing token gets the 401
body LM Studio 0.4 sends; the wording for a wrong token is an assumption (not captured).
Errors for unknown models use the OpenAI shape LM Studio sends for chat completions.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.fakes.common import RecordingMiddleware, ReplyScript, RequestLog, read_json_object
from tests.fakes.openai_wire import ChatRequest, complete_chat, error_body, stream_chat

__all__ = ["LMStudioModel", "LMStudioState", "ReplyScript", "create_lmstudio_app"]

TOKEN_MISSING = (
    "An LM Studio API token is required to make requests to this server, but none was "
    "provided using the Authorization header using the 'Bearer' scheme (i.e., "
    "'Authorization: Bearer $LM_API_TOKEN'). Learn more at: "
    "https://lmstudio.ai/docs/developer/core/authentication."
)
TOKEN_INVALID = "The provided LM Studio API token is invalid."
JSON_TYPE = "application/json; charset=utf-8"
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class LMStudioModel:
    """A downloaded model; ``instances`` maps loaded instance ids to their context length."""

    key: str
    type: str = "llm"
    publisher: str = "lmstudio-community"
    arch: str = "llama"
    compatibility_type: str = "gguf"
    quantization: str = "Q4_K_M"
    bits_per_weight: float = 4
    max_context_length: int = 32768
    size_bytes: int = 4_920_734_016
    params_string: str | None = "7B"
    display_name: str = ""
    trained_for_tool_use: bool = False
    instances: dict[str, int] = field(default_factory=dict)

    def v0(self) -> dict[str, Any]:
        """The REST v0 entry."""
        entry: dict[str, Any] = {
            "id": self.key,
            "object": "model",
            "type": self.type,
            "publisher": self.publisher,
            "arch": self.arch,
            "compatibility_type": self.compatibility_type,
            "quantization": self.quantization,
            "state": "loaded" if self.instances else "not-loaded",
            "max_context_length": self.max_context_length,
        }
        if self.type != "embeddings":
            entry["capabilities"] = ["tool_use"] if self.trained_for_tool_use else []
        return entry

    def v1(self) -> dict[str, Any]:
        """The REST v1 entry (``type`` is singular ``embedding`` here)."""
        embedding = self.type == "embeddings"
        entry: dict[str, Any] = {
            "type": "embedding" if embedding else "llm",
            "publisher": self.publisher,
            "key": self.key,
            "display_name": self.display_name or self.key,
        }
        if not embedding:
            entry["architecture"] = self.arch
        entry.update(
            quantization={"name": self.quantization, "bits_per_weight": self.bits_per_weight},
            size_bytes=self.size_bytes,
            params_string=self.params_string,
            loaded_instances=[
                {"id": i, "config": {"context_length": n}} for i, n in self.instances.items()
            ],
            max_context_length=self.max_context_length,
            format=self.compatibility_type,
        )
        if not embedding:
            entry["capabilities"] = {
                "vision": self.type == "vlm",
                "trained_for_tool_use": self.trained_for_tool_use,
            }
            entry["description"] = None
        return entry


class LMStudioState:
    """Scripting object of one LM Studio stand-in (thread-safe)."""

    def __init__(self, *, jit_loading: bool = True, api_token: str | None = None) -> None:
        self.jit_loading = jit_loading
        self.api_token = api_token
        self.reply = ReplyScript()
        self.log = RequestLog()
        self.lock = threading.RLock()
        self._models: dict[str, LMStudioModel] = {}

    def add_model(self, key: str, *, loaded: bool = False, **fields: Any) -> LMStudioModel:
        """Add a downloaded model (fields as in LMStudioModel); ``loaded`` loads one instance."""
        model = LMStudioModel(key=key, **fields)
        with self.lock:
            self._models[key] = model
        if loaded:
            self.load(key)
        return model

    def remove_model(self, key: str) -> bool:
        """Delete a model (and its instances); False when it was not there."""
        with self.lock:
            return self._models.pop(key, None) is not None

    def models(self) -> list[LMStudioModel]:
        """Every downloaded model, in the order added."""
        with self.lock:
            return list(self._models.values())

    def find(self, name: str) -> LMStudioModel | None:
        """The model with that key or a loaded instance with that id."""
        with self.lock:
            for model in self._models.values():
                if model.key == name or name in model.instances:
                    return model
        return None

    def load(self, key: str, context_length: int | None = None) -> str:
        """Load a new instance (``key``, then ``key:2``…) and return its id."""
        with self.lock:
            model = self._models[key]
            instance_id, n = key, 1
            while instance_id in model.instances:
                n += 1
                instance_id = f"{key}:{n}"
            model.instances[instance_id] = context_length or min(4096, model.max_context_length)
            return instance_id

    def unload(self, instance_id: str) -> bool:
        """Unload one instance; False when no such instance is loaded."""
        with self.lock:
            for model in self._models.values():
                if model.instances.pop(instance_id, None) is not None:
                    return True
        return False

    def loaded_ids(self) -> list[str]:
        """Ids of every loaded instance."""
        return [i for m in self.models() for i in m.instances]


def _pretty(value: Any, status: int = 200) -> Response:
    body = json.dumps(value, indent=2, ensure_ascii=False)
    return Response(body, status_code=status, headers={"content-type": JSON_TYPE})


def _not_found(state: LMStudioState, name: str) -> Response:
    names = "\n".join(m.key for m in state.models())
    message = f'Model "{name}" not found. Please specify a valid model.\n\nYour models:\n\n{names}'
    return _pretty(error_body(message, "invalid_request_error", "model_not_found", "model"), 404)


class _ExpressHeaders:
    """Adds ``X-Powered-By: Express`` to every response, as LM Studio's server does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def add_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-powered-by", b"Express")]
            await send(message)

        await self.app(scope, receive, add_header)


def _auth_error(state: LMStudioState, request: Request) -> Response | None:
    if state.api_token is None or request.url.path == "/lmstudio-greeting":
        return None
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if token == state.api_token:
        return None
    message = TOKEN_INVALID if token else TOKEN_MISSING
    body = {"error": {"type": "invalid_request", "code": "invalid_api_key", "message": message}}
    return _pretty(body, 401)


class _Routes:
    """Endpoint functions bound to one state."""

    def __init__(self, state: LMStudioState) -> None:
        self.state = state

    async def greeting(self, request: Request) -> Response:
        return _pretty({"lmstudio": True})

    async def v1_openai_models(self, request: Request) -> Response:
        models = self.state.models()
        ids = [m.key for m in models] if self.state.jit_loading else self.state.loaded_ids()
        data = [{"id": i, "object": "model", "owned_by": "organization_owner"} for i in ids]
        return _pretty({"data": data, "object": "list"})

    async def v0_models(self, request: Request) -> Response:
        return _pretty({"data": [m.v0() for m in self.state.models()], "object": "list"})

    async def v0_model(self, request: Request) -> Response:
        name = request.path_params["model_id"]
        model = self.state.find(name)
        return _pretty(model.v0()) if model else _not_found(self.state, name)

    async def v1_models(self, request: Request) -> Response:
        return _pretty({"models": [m.v1() for m in self.state.models()]})

    async def load(self, request: Request) -> Response:
        body = await read_json_object(request) or {}
        key = str(body.get("model") or "")
        model = self.state.find(key)
        if model is None:
            return _not_found(self.state, key)
        context = body.get("context_length")
        instance = self.state.load(model.key, context if isinstance(context, int) else None)
        kind = "embedding" if model.type == "embeddings" else "llm"
        answer: dict[str, Any] = {
            "type": kind,
            "instance_id": instance,
            "load_time_seconds": 0.412,
            "status": "loaded",
        }
        if body.get("echo_load_config"):
            answer["load_config"] = {"context_length": model.instances[instance]}
        return _pretty(answer)

    async def unload(self, request: Request) -> Response:
        body = await read_json_object(request) or {}
        instance = str(body.get("instance_id") or "")
        if not self.state.unload(instance):
            message = f'No loaded model instance found with id "{instance}".'
            return _pretty(error_body(message, "invalid_request_error", "model_not_found"), 404)
        return _pretty({"instance_id": instance})

    async def chat(self, request: Request) -> Response:
        body = await read_json_object(request)
        if body is None:
            return _pretty({"error": "'messages' field is required"}, 400)
        chat = ChatRequest.parse(body)
        model = self.state.find(chat.model)
        if model is None or (not model.instances and not self.state.jit_loading):
            return _not_found(self.state, chat.model)
        if not model.instances:
            self.state.load(model.key)
        if chat.stream:
            chunks = stream_chat(self.state.reply, chat, model.key)
            return StreamingResponse(chunks, headers={"content-type": "text/event-stream"})
        status, payload = await complete_chat(self.state.reply, chat, model.key)
        return _pretty(payload, status)


def create_lmstudio_app(state: LMStudioState) -> ASGIApp:
    """The ASGI app of one LM Studio stand-in backed by ``state``."""
    routes = _Routes(state)

    async def unexpected(request: Request, exc: Exception) -> Response:
        message = f"Unexpected endpoint or method. ({request.method} {request.url.path})"
        body = json.dumps({"error": message}, separators=(",", ":"))
        return Response(body, headers={"content-type": JSON_TYPE})

    def guarded(endpoint: Endpoint) -> Endpoint:
        async def guarded_endpoint(request: Request) -> Response:
            denied = _auth_error(state, request)
            return denied if denied is not None else await endpoint(request)

        return guarded_endpoint

    table: list[tuple[str, Endpoint, str]] = [
        ("/lmstudio-greeting", routes.greeting, "GET"),
        ("/v1/models", routes.v1_openai_models, "GET"),
        ("/api/v0/models", routes.v0_models, "GET"),
        ("/api/v0/models/{model_id:path}", routes.v0_model, "GET"),
        ("/api/v1/models", routes.v1_models, "GET"),
        ("/api/v1/models/load", routes.load, "POST"),
        ("/api/v1/models/unload", routes.unload, "POST"),
        ("/v1/chat/completions", routes.chat, "POST"),
    ]
    app = Starlette(
        routes=[Route(path, guarded(fn), methods=[method]) for path, fn, method in table],
        middleware=[Middleware(RecordingMiddleware, log=state.log)],
        exception_handlers={404: unexpected, 405: unexpected},
    )
    return _ExpressHeaders(app)
