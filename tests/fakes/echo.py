"""The runtime of the test-only Echo provider (``tests/support/echo_provider.py``): a server that
answers by repeating the user's last message, word by word.

``GET /hello`` → ``{"echo": true, "version"}`` (how it is recognised); ``GET /models`` →
``{"models": [...]}``; ``POST /chat`` ``{"model", "messages"}`` → NDJSON lines
``{"token"}`` per word, then ``{"done": true, "prompt_tokens", "completion_tokens"}``
(words counted), or 404 ``{"error"}`` for a model it does not have. Requests are recorded in
``state.log``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import RecordingMiddleware, RequestLog

VERSION = "echo-1.0"


class EchoState:
    """Scripting object: the models it has, and the request log."""

    def __init__(self, models: tuple[str, ...] = ("parrot", "mirror")) -> None:
        self.models = list(models)
        self.log = RequestLog()


def create_echo_app(state: EchoState) -> Starlette:
    async def hello(request: Request) -> Response:
        return JSONResponse({"echo": True, "version": VERSION})

    async def models(request: Request) -> Response:
        return JSONResponse({"models": state.models})

    async def chat(request: Request) -> Response:
        body = await request.json()
        if body.get("model") not in state.models:
            return JSONResponse({"error": f"no model {body.get('model')!r}"}, status_code=404)
        messages = body.get("messages") or []
        said = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        words = re.findall(r"\S+\s*", said)
        prompt = sum(len(m["content"].split()) for m in messages)

        async def lines() -> AsyncIterator[bytes]:
            for word in words:
                yield json.dumps({"token": word}).encode() + b"\n"
            done = {"done": True, "prompt_tokens": prompt, "completion_tokens": len(words)}
            yield json.dumps(done).encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return Starlette(
        routes=[
            Route("/hello", hello, methods=["GET"]),
            Route("/models", models, methods=["GET"]),
            Route("/chat", chat, methods=["POST"]),
        ],
        middleware=[Middleware(RecordingMiddleware, log=state.log)],
    )
