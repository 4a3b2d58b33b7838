"""A generic OpenAI-compatible server (vLLM, LocalAI, or the OpenAI API itself).

Usage::

    state = OpenAIState(api_key="sk-test-123", models=["gpt-4o-mini"])
    state.reply = ReplyScript(pieces=["Hel", "lo"], token_delay=0.05)
    with serve(create_openai_app(state), state) as server:   # tests/fakes/fixtures.py
        openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test-123")

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/chat/completions``
(streamed as SSE per tests/fakes/openai_wire.py, or one ``chat.completion`` object).

Knobs on ``OpenAIState``: ``api_key`` (None: no key needed; otherwise a missing key gets the
401 "You didn't provide an API key…" body and a wrong one the ``invalid_api_key`` body of
PROTOCOLS §5), ``models`` (ids; when not empty, other model names get 404
``model_not_found``), ``owned_by``, ``reply`` (ReplyScript: pieces, per-token delay,
mid-stream error), ``fingerprint`` and ``log`` (requests received; a streamed request whose
client hung up early has ``disconnected`` set and fewer ``chunks_sent``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import RecordingMiddleware, ReplyScript, RequestLog, read_json_object
from tests.fakes.openai_wire import ChatRequest, complete_chat, error_body, stream_chat

__all__ = ["OpenAIState", "ReplyScript", "create_openai_app"]

MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
    "(with blank username) if you're accessing the API from your browser and are prompted for "
    "a username. You can obtain an API key from https://platform.openai.com/account/api-keys."
)
SSE_TYPE = "text/event-stream; charset=utf-8"


class OpenAIState:
    """Scripting object of one OpenAI-compatible stand-in."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: list[str] | None = None,
        owned_by: str = "system",
    ) -> None:
        self.api_key = api_key
        self.models = list(models or [])
        self.owned_by = owned_by
        self.created = int(time.time())
        self.reply = ReplyScript()
        self.fingerprint = "fp_stand_in"
        self.log = RequestLog()


def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status_code=status, media_type="application/json")


def mask_key(key: str) -> str:
    """How OpenAI echoes a wrong key: the first and last characters around asterisks."""
    if len(key) <= 8:
        return key
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def _auth_error(state: OpenAIState, request: Request) -> Response | None:
    if state.api_key is None:
        return None
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not key:
        return _json(error_body(MISSING_KEY, "invalid_request_error"), 401)
    if key != state.api_key:
        message = (
            f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        return _json(error_body(message, "invalid_request_error", "invalid_api_key"), 401)
    return None


def _model_entry(state: OpenAIState, model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": state.created, "owned_by": state.owned_by}


def _unknown_model(model: str) -> Response:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return _json(error_body(message, "invalid_request_error", "model_not_found"), 404)


def create_openai_app(state: OpenAIState) -> Starlette:
    """The ASGI app of one OpenAI-compatible stand-in backed by ``state``."""

    async def list_models(request: Request) -> Response:
        if (denied := _auth_error(state, request)) is not None:
            return denied
        data = [_model_entry(state, m) for m in state.models]
        return _json({"object": "list", "data": data})

    async def get_model(request: Request) -> Response:
        if (denied := _auth_error(state, request)) is not None:
            return denied
        model_id = request.path_params["model_id"]
        if model_id not in state.models:
            return _unknown_model(model_id)
        return _json(_model_entry(state, model_id))

    async def chat_completions(request: Request) -> Response:
        if (denied := _auth_error(state, request)) is not None:
            return denied
        body = await read_json_object(request)
        if body is None:
            message = "We could not parse the JSON body of your request."
            return _json(error_body(message, "invalid_request_error"), 400)
        chat = ChatRequest.parse(body)
        if not chat.model:
            message = "you must provide a model parameter"
            return _json(error_body(message, "invalid_request_error"), 400)
        if state.models and chat.model not in state.models:
            return _unknown_model(chat.model)
        if chat.stream:
            chunks = stream_chat(state.reply, chat, state.fingerprint)
            return StreamingResponse(chunks, headers={"content-type": SSE_TYPE})
        status, payload = await complete_chat(state.reply, chat, state.fingerprint)
        return _json(payload, status)

    async def invalid_url(request: Request, exc: Exception) -> Response:
        if (denied := _auth_error(state, request)) is not None:
            return denied
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        message = f"Invalid URL ({request.method} {request.url.path})"
        return _json(error_body(message, "invalid_request_error"), status)

    return Starlette(
        routes=[
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        ],
        middleware=[Middleware(RecordingMiddleware, log=state.log)],
        exception_handlers={404: invalid_url, 405: invalid_url},
    )
