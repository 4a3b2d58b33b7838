"""The gateway's routes (SPEC §13, docs/GATEWAY.md): OpenAI's ``/v1``, Anthropic's
``/v1/messages`` and Ollama's API under ``/ollama``, on modelyard's own port.

Plain ASGI endpoints, not FastAPI handlers: nothing parses, validates or wraps a request or a
token on the way (``gateway/asgi.py`` writes the answer). Each route still declares its policy
(``inference`` for every method), which the guards apply before it runs — with the key taken
from ``Authorization: Bearer`` or ``x-api-key`` — and which the endpoint checks was the one
applied. Errors come in the client's dialect (``gateway/wire.py``), refusals of the guards too.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from modelyard import __version__
from modelyard.access.keys import Principal
from modelyard.api.policy import POLICY_KEY, policy
from modelyard.errors import ModelyardError, NotFound
from modelyard.gateway.asgi import ClientGone, Responder, read_body
from modelyard.gateway.exchange import parse_json_object
from modelyard.gateway.service import Endpoint, Gateway, UsableModel
from modelyard.gateway.translate.anthropic import AnthropicOverOpenAI, TokenCount
from modelyard.gateway.translate.ollama import (
    OllamaChatOverOpenAI,
    OllamaEmbedOverOpenAI,
    OllamaGenerateOverOpenAI,
)
from modelyard.gateway.wire import JSON, Dialect, compact
from modelyard.services import Services

router = APIRouter(tags=["gateway"])
INFERENCE = policy(read="inference", write="inference")
Handler = Callable[[Gateway, Scope, Receive, Send, "GatewayEndpoint"], Awaitable[None]]


@dataclass
class Asked:
    """What an answering route learnt of its request, for the request log: the model named."""

    name: str = ""


Answer = Callable[[Gateway, Scope, Receive, Asked], Awaitable[bytes]]


class GatewayEndpoint:
    """A plain ASGI endpoint of the gateway (Starlette calls an object that is not a function
    as an ASGI app, with no request or response objects in between)."""

    def __init__(self, dialect: Dialect, handler: Handler, endpoint: Endpoint | None = None):
        self.dialect = dialect
        self.handler = handler
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        applied = scope.get(POLICY_KEY)
        if applied is None or getattr(applied[0], "endpoint", None) is not self:
            await Responder(send, self.dialect, scope["path"]).fail(
                ModelyardError(
                    f"the guards did not check {scope['path']} under its route's policy",
                    code="route_policy_mismatch",
                )
            )
            return
        services: Services = scope["app"].state.services
        await self.handler(services.gateway, scope, receive, send, self)


class GatewayRoute(Route):
    """A route of the gateway: its policy is declared like a FastAPI route's, and ``dialect``
    tells the guards how to word a refusal."""

    def __init__(self, path: str, endpoint: GatewayEndpoint, methods: list[str]) -> None:
        super().__init__(path, endpoint, methods=methods, include_in_schema=False)
        self.dependencies = [INFERENCE]
        self.dialect = endpoint.dialect


def _add(path: str, methods: list[str], endpoint: GatewayEndpoint) -> None:
    router.routes.append(GatewayRoute(path, endpoint, methods))


async def _serve(
    gateway: Gateway, scope: Scope, receive: Receive, send: Send, me: GatewayEndpoint
) -> None:
    assert me.endpoint is not None
    await gateway.serve(scope, receive, send, me.endpoint)


def _answering(answer: Answer) -> Handler:
    """A route the gateway answers from what it knows (no turn, no backend): its JSON or its
    error in the client's dialect, and one entry of the request log either way."""

    async def handler(
        gateway: Gateway, scope: Scope, receive: Receive, send: Send, me: GatewayEndpoint
    ) -> None:
        arrived_at = time.monotonic()
        asked = Asked()
        principal = _principal(scope)
        responder = Responder(send, me.dialect, scope["path"])
        try:
            body = await answer(gateway, scope, receive, asked)
        except ClientGone:
            return
        except ModelyardError as error:
            await responder.fail(error)
            gateway.refused(
                scope,
                principal,
                error.http_status,
                error.error_code,
                error.detail,
                name=asked.name,
                arrived_at=arrived_at,
            )
            return
        await responder.whole(200, body, JSON)
        gateway.answered(scope, principal, asked.name, arrived_at)

    return handler


# -- OpenAI -------------------------------------------------------------------------------------


def _openai_model(item: UsableModel) -> dict[str, Any]:
    model = item.model
    view = item.view
    return {
        "id": item.name,
        "object": "model",
        "created": _epoch(model.modified_at),
        "owned_by": model.provider,
        "modelyard": {
            "qualified_name": item.qualified,
            "provider": model.provider,
            "instance_id": model.instance_id,
            "mode": model.mode,
            "state": item.state,
            "in_flight": view.in_flight if view else 0,
            "queued": view.queued if view else 0,
            "ttl_left_s": view.ttl_left_s if view else None,
            "last_eviction": view.last_eviction.reason if view and view.last_eviction else None,
        },
    }


async def _openai_models(gateway: Gateway, scope: Scope, _: Receive, asked: Asked) -> bytes:
    path: str = scope["path"]
    usable = gateway.usable(_principal(scope))
    if path == "/v1/models":
        return compact({"object": "list", "data": [_openai_model(m) for m in usable]})
    asked.name = wanted = path.removeprefix("/v1/models/")
    found = next((m for m in usable if m.name == wanted or m.qualified == wanted), None)
    if found is None:
        raise _not_found(wanted)
    return compact(_openai_model(found))


def _not_found(name: str) -> NotFound:
    return NotFound(
        f"there is no model {name!r}",
        code="model_not_found",
        hint="GET /v1/models lists the names you can use.",
    )


for _suffix in ("/chat/completions", "/completions", "/embeddings", "/rerank", "/responses"):
    _add(
        f"/v1{_suffix}",
        ["POST"],
        GatewayEndpoint(Dialect.OPENAI, _serve, Endpoint(Dialect.OPENAI, _suffix)),
    )
_add("/v1/models", ["GET"], GatewayEndpoint(Dialect.OPENAI, _answering(_openai_models)))
_add("/v1/models/{name:path}", ["GET"], GatewayEndpoint(Dialect.OPENAI, _answering(_openai_models)))

# -- Anthropic ----------------------------------------------------------------------------------


async def _count_tokens(gateway: Gateway, scope: Scope, receive: Receive, asked: Asked) -> bytes:
    body = parse_json_object(await read_body(receive, gateway.settings.gateway_max_body_bytes))
    request = TokenCount(body)
    asked.name = request.model or ""
    count = await gateway.count_tokens(request, _principal(scope))
    return compact({"input_tokens": count})


_add(
    "/v1/messages",
    ["POST"],
    GatewayEndpoint(
        Dialect.ANTHROPIC, _serve, Endpoint(Dialect.ANTHROPIC, "/messages", AnthropicOverOpenAI)
    ),
)
_add(
    "/v1/messages/count_tokens",
    ["POST"],
    GatewayEndpoint(Dialect.ANTHROPIC, _answering(_count_tokens)),
)

# -- Ollama -------------------------------------------------------------------------------------


def _ollama_model(item: UsableModel) -> dict[str, Any]:
    model = item.model
    name = item.name if ":" in item.name else f"{item.name}:latest"
    return {
        "name": name,
        "model": name,
        "modified_at": model.modified_at or "1970-01-01T00:00:00Z",
        "size": model.size or 0,
        "digest": model.digest or "",
        "details": {
            "parent_model": "",
            "format": model.format or "gguf",
            "family": model.family or "",
            "families": [model.family] if model.family else None,
            "parameter_size": model.parameter_size or "",
            "quantization_level": model.quantization or "",
        },
    }


async def _ollama_tags(gateway: Gateway, scope: Scope, _: Receive, __: Asked) -> bytes:
    usable = gateway.usable(_principal(scope))
    return compact({"models": [_ollama_model(m) for m in usable]})


async def _ollama_ps(gateway: Gateway, scope: Scope, _: Receive, __: Asked) -> bytes:
    running = []
    for item in gateway.usable(_principal(scope)):
        if item.state != "loaded":
            continue
        entry = _ollama_model(item)
        ttl = item.view.ttl_left_s if item.view else None
        expires = datetime.fromtimestamp(time.time() + ttl, UTC) if ttl is not None else None
        entry["expires_at"] = expires.isoformat() if expires else "0001-01-01T00:00:00Z"
        entry["size_vram"] = 0
        running.append(entry)
    return compact({"models": running})


async def _ollama_version(gateway: Gateway, scope: Scope, _: Receive, __: Asked) -> bytes:
    return compact({"version": __version__})


async def _ollama_show(gateway: Gateway, scope: Scope, receive: Receive, asked: Asked) -> bytes:
    body = parse_json_object(await read_body(receive, gateway.settings.max_body_bytes))
    asked.name = name = str(body.get("model") or body.get("name") or "")
    key = gateway.names().resolve(name)
    usable = gateway.usable(_principal(scope))
    found = next((m for m in usable if m.model.key == key), None)
    if found is None:
        raise _not_found(name)
    model = found.model
    info: dict[str, Any] = {}
    if model.context_length:
        info[f"{model.family or 'general'}.context_length"] = model.context_length
    capabilities = ["embedding"] if model.mode == "embed" else ["completion"]
    shown = {
        "modelfile": "",
        "parameters": "",
        "template": "",
        "details": _ollama_model(found)["details"],
        "model_info": info,
        "capabilities": capabilities,
        "modified_at": model.modified_at or "1970-01-01T00:00:00Z",
    }
    return compact(shown)


for _suffix, _translation in (
    ("/chat", OllamaChatOverOpenAI),
    ("/generate", OllamaGenerateOverOpenAI),
):
    _add(
        f"/ollama/api{_suffix}",
        ["POST"],
        GatewayEndpoint(Dialect.OLLAMA, _serve, Endpoint(Dialect.OLLAMA, _suffix, _translation)),
    )
_add(
    "/ollama/api/embed",
    ["POST"],
    GatewayEndpoint(
        Dialect.OLLAMA, _serve, Endpoint(Dialect.OLLAMA, "/embed", OllamaEmbedOverOpenAI, False)
    ),
)
for _suffix, _answer in (
    ("/tags", _ollama_tags),
    ("/ps", _ollama_ps),
    ("/version", _ollama_version),
):
    _add(f"/ollama/api{_suffix}", ["GET"], GatewayEndpoint(Dialect.OLLAMA, _answering(_answer)))
_add("/ollama/api/show", ["POST"], GatewayEndpoint(Dialect.OLLAMA, _answering(_ollama_show)))


def _principal(scope: Scope) -> Principal | None:
    """Who the guards found calling (None: a public route without a caller)."""
    found: Principal | None = (scope.get("state") or {}).get("principal")
    return found


def _epoch(stamp: str | None) -> int:
    if not stamp:
        return 0
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0
