"""A minimal ASGI app around the gateway's engine, until its routes are on modelyard's app.

``GatewayApp(targets, scheduler)`` answers ``POST /v1/chat/completions`` (OpenAI),
``POST /v1/messages`` (Anthropic) and ``POST /ollama/api/{chat,generate,embed}`` (Ollama) for
the models named in ``targets``, through ``exchange`` — the scheduler's turn, then the relay —
with the translation a route needs when the backend speaks only OpenAI. Every finished
``Exchange`` is appended to ``exchanges``. Tests and the gateway benchmark use it; the
coordinator switches them to the real routes when those land.

``ReadyBackend`` is a scheduler backend whose models are always loaded (a server someone
else runs): loading it checks that it answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from modelyard.errors import ModelyardError, NotFound
from modelyard.gateway.asgi import ClientGone, Responder, read_body
from modelyard.gateway.exchange import Exchange, Target, exchange, parse_json_object
from modelyard.gateway.relay import Relay, Translation
from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import SchedulerSettings
from modelyard.gateway.wire import Dialect
from tests.support.servers import ServerThread

BODY_LIMIT = 32 << 20
ROUTES = {
    "/v1/chat/completions": Dialect.OPENAI,
    "/v1/messages": Dialect.ANTHROPIC,
    "/ollama/api/chat": Dialect.OLLAMA,
    "/ollama/api/generate": Dialect.OLLAMA,
    "/ollama/api/embed": Dialect.OLLAMA,
    "/v1/embeddings": Dialect.OPENAI,
    "/v1/completions": Dialect.OPENAI,
}
# The translation each client route needs in front of an OpenAI-only backend.
Translations = Mapping[str, Callable[[], Translation]]


class ReadyBackend:
    """Models served by a server that is already running (sizes for the budget only)."""

    def __init__(self, sizes: Mapping[str, int], health: Mapping[str, str]) -> None:
        self.sizes = sizes
        self.health = health  # model → a URL that answers 200 while it is up

    def estimate_bytes(self, key: str) -> int:
        return self.sizes[key]

    def manages_own_memory(self, key: str) -> bool:
        return False

    async def load(self, key: str, progress: Callable[[float], None]) -> None:
        if not await self.is_alive(key):
            raise RuntimeError(f"{self.health[key]} does not answer")
        progress(1.0)

    async def unload(self, key: str) -> None:
        return None

    async def is_alive(self, key: str) -> bool:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                return (await client.get(self.health[key])).status_code == 200
        except httpx.HTTPError:
            return False


def ready_scheduler(targets: Mapping[str, Target[str]], health_path: str) -> Scheduler[str]:
    """A scheduler over ``ReadyBackend`` for ``targets`` with a budget that holds them all."""
    backend = ReadyBackend(
        {name: 1 for name in targets},
        {name: t.base.removesuffix("/v1") + health_path for name, t in targets.items()},
    )
    return Scheduler(backend, SchedulerSettings(memory_budget_bytes=len(targets) or 1))


class GatewayApp:
    """The gateway's engine behind the routes it will have, for the models in ``targets``."""

    def __init__(
        self,
        targets: Mapping[str, Target[str]],
        scheduler: Scheduler[str],
        translations: Translations | None = None,
        relay: Relay | None = None,
        heartbeat_s: float = 0.5,
    ) -> None:
        self.targets = targets
        self.scheduler = scheduler
        self.translations = translations or {}
        self.relay = relay or Relay()
        self.heartbeat_s = heartbeat_s
        self.exchanges: list[Exchange] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        client = ROUTES.get(path, Dialect.OPENAI)
        responder = Responder(send, client, path)
        try:
            if path not in ROUTES or scope["method"] != "POST":
                raise NotFound(f"no route {scope['method']} {path}", code="route_not_found")
            body = parse_json_object(await read_body(receive, BODY_LIMIT))
            target = self._target(path, body)
        except ClientGone:
            return
        except ModelyardError as error:
            await responder.fail(error)
            return
        make = self.translations.get(path) if target.dialect is not client else None
        record = await exchange(
            receive,
            send,
            relay=self.relay,
            scheduler=self.scheduler,
            target=target,
            body=body,
            client=client,
            path=path,
            translation=make() if make else None,
            streams=False if path.endswith("/embed") else None,
            heartbeat_s=self.heartbeat_s,
        )
        self.exchanges.append(record)

    def _target(self, path: str, body: dict[str, Any]) -> Target[str]:
        name = body.get("model")
        target = self.targets.get(name) if isinstance(name, str) else None
        if target is None:
            raise NotFound(f"model {name!r} not found", code="model_not_found")
        suffix = path.removeprefix("/ollama").removeprefix("/v1")
        same = target.dialect is ROUTES[path]
        return Target(
            key=target.key,
            base=target.base,
            path=suffix if same else target.path,
            model=target.model,
            dialect=target.dialect,
            headers=target.headers,
            pinned_options=target.pinned_options,
            cancels_only_streams=target.cancels_only_streams,
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.scheduler.aclose()
                await self.relay.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def openai_target(
    name: str, url: str, model: str | None = None, *, cancels_only_streams: bool = False
) -> Target[str]:
    """``name`` served by an OpenAI-style backend at ``url`` (without ``/v1``), which knows
    it as ``model`` (by default the same name)."""
    return Target(
        key=name,
        base=url + "/v1",
        path="/chat/completions",
        model=model or name,
        dialect=Dialect.OPENAI,
        cancels_only_streams=cancels_only_streams,
    )


def llama_target(name: str, url: str) -> Target[str]:
    """``name`` served by llama.cpp's server at ``url``, which stops generating for a
    client that left only when it streams."""
    return openai_target(name, url, cancels_only_streams=True)


@contextmanager
def running_gateway(
    targets: Mapping[str, Target[str]],
    scheduler: Scheduler[str] | None = None,
    health_path: str = "/health",
    **options: Any,
) -> Iterator[tuple[ServerThread, GatewayApp]]:
    """The gateway app for ``targets`` on a free port of 127.0.0.1 (with no scheduler given:
    one over ``ReadyBackend``, every model always loaded)."""
    app = GatewayApp(targets, scheduler or ready_scheduler(targets, health_path), **options)
    with ServerThread(app) as server:
        yield server, app
