"""The gateway on modelyard's port: a request's model name made a ``Target``, then ``exchange``.

``Gateway.serve`` is what every inference route calls (``api/routes/gateway.py``): it reads
the body, resolves the model's name (``names``), picks how the backend is spoken to — as it
is when it speaks the client's dialect (an Anthropic client to the Anthropic API, an Ollama
client to Ollama), else translated over its OpenAI API — and hands the rest to ``exchange``,
whose turn comes from the one scheduler. Every finished request is logged (never its prompt)
and published as ``gateway.request``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from modelyard.access.keys import Principal, shown_prefix
from modelyard.chat.types import Target as ChatTarget
from modelyard.config import Settings
from modelyard.errors import Conflict, InvalidInput, ModelyardError, Unavailable
from modelyard.events import (
    MODEL_STATE,
    Event,
    EventBus,
    GatewayRequest,
    ModelStateChange,
)
from modelyard.gateway.asgi import ClientGone, Responder, read_body
from modelyard.gateway.backend import CatalogBackend
from modelyard.gateway.exchange import Exchange, Target, exchange, parse_json_object
from modelyard.gateway.keyed import KeyGate, allowed, not_found
from modelyard.gateway.names import NameIndex, key_of, qualified
from modelyard.gateway.policies import model_settings
from modelyard.gateway.relay import Relay, Translation, upstream_error
from modelyard.gateway.reporting import ScheduleReporter
from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelView
from modelyard.gateway.translate.anthropic import TokenCount
from modelyard.gateway.wire import Dialect
from modelyard.models.catalog import Catalog
from modelyard.models.types import Model, ModelKey, ModelStatus
from modelyard.providers.anthropic import ANTHROPIC_VERSION
from modelyard.providers.base import EstimatingCounter, TokenCounter, bearer
from modelyard.providers.registry import registry

_REPORTS = frozenset({"loaded", "available", "removed"})
_KEY_FIELDS = ("provider", "instance_id", "name")
_GENERATING = frozenset(
    {"/chat/completions", "/completions", "/responses", "/messages", "/chat", "/generate"}
)
USABLE = frozenset({ModelStatus.AVAILABLE, ModelStatus.LOADED, ModelStatus.STARTING})
LOGGED_NAME_CHARS = 200  # of a model's name as asked, in the request log (bodies are large)
LOGGED_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Endpoint:
    """One inference route: the client's dialect and the backend path it means."""

    client: Dialect
    path: str  # under the dialect's API base: ``/chat/completions``, ``/messages``, ``/chat``
    translation: Callable[[], Translation] | None = None  # over an OpenAI-only backend
    streams: bool | None = None  # None: as the body says


@dataclass(frozen=True)
class UsableModel:
    """A model a caller may use, under the name it is listed by, with its state."""

    name: str
    model: Model
    view: ModelView | None

    @property
    def qualified(self) -> str:
        return qualified(self.model.key)

    @property
    def state(self) -> str:
        if self.view is not None:
            return self.view.state.value
        return "loaded" if self.model.status is ModelStatus.LOADED else "unloaded"


class Gateway:
    """Names, targets and the request path of the inference routes."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        backend: CatalogBackend,
        scheduler: Scheduler[str],
        bus: EventBus,
        reporter: ScheduleReporter,
        keys: KeyGate,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.catalog = catalog
        self.backend = backend
        self.scheduler = scheduler
        self.bus = bus
        self.reporter = reporter
        self.relay = Relay(read_timeout_s=settings.gateway_read_timeout_s)
        self._index: tuple[int, NameIndex] | None = None
        self.aliases = dict(settings.aliases)
        for name, per_model in settings.models.items():
            self.aliases.update({alias: name for alias in per_model.aliases})

    def start(self) -> None:
        """Follow the catalog: what runtimes report of a model's state reaches the scheduler
        (a server that died, a model Ollama unloaded or loaded on its own)."""
        loop = asyncio.get_running_loop()

        def on_state(event: Event[ModelStateChange]) -> None:
            status = event.data["status"]
            if status in _REPORTS and not loop.is_closed():
                key = qualified(ModelKey(*(event.data[f] for f in _KEY_FIELDS)))
                loop.call_soon_threadsafe(self._observe, key, status == ModelStatus.LOADED.value)

        self.bus.add_listener(MODEL_STATE, on_state)

    def _observe(self, key: str, loaded: bool) -> None:
        if loaded or self.scheduler.is_loaded(key):
            with contextlib.suppress(ModelyardError):  # shutting down
                self.scheduler.observed(key, loaded)

    async def aclose(self) -> None:
        await self.scheduler.aclose()
        await self.relay.aclose()

    # -- names ------------------------------------------------------------------------------

    def names(self) -> NameIndex:
        """The name index, rebuilt after a change to the catalog."""
        version = self.catalog.store.version
        if self._index is None or self._index[0] != version:
            index = NameIndex.build(self.catalog.names(), self.aliases)
            self._index = (version, index)
        return self._index[1]

    def usable(self, principal: Principal | None = None) -> list[UsableModel]:
        """Every model a caller may use, once each under its shortest unambiguous name, and
        each alias: what ``/v1/models`` and ``/ollama/api/tags`` list (to a key with a model
        allow-list, only the models it allows, under every name)."""
        index = self.names()
        views = {view.key: view for view in self.scheduler.snapshot()}
        found: list[UsableModel] = []
        by_key: dict[str, Model] = {}
        for model in self.catalog.list_all():
            if model.status not in USABLE or not _speaks(model):
                continue
            if not allowed(principal, index.names_of(model.key)):
                continue
            name = qualified(model.key)
            by_key[name] = model
            plain = len(index.plain.get(model.name, ())) == 1
            found.append(UsableModel(model.name if plain else name, model, views.get(name)))
        for alias in sorted(self.aliases):
            try:
                key = qualified(index.resolve(alias))
            except ModelyardError:
                continue
            if key in by_key:
                found.append(UsableModel(alias, by_key[key], views.get(key)))
        return found

    # -- a request ----------------------------------------------------------------------------

    async def serve(self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint) -> None:
        """Answer one inference request (the guards have run)."""
        route = scope["path"]
        responder = Responder(send, endpoint.client, route)
        principal: Principal | None = (scope.get("state") or {}).get("principal")
        arrived_at = time.monotonic()
        name = key = ""
        try:
            limit = self.settings.gateway_max_body_bytes
            body = parse_json_object(await read_body(receive, limit))
            asked = body.get("model")
            if not isinstance(asked, str) or not asked:
                raise _no_model()
            name = asked
            model_key = self.names().resolve(name)
            if not allowed(principal, [name, *self.names().names_of(model_key)]):
                raise not_found(name)
            key = qualified(model_key)
            target, translation = self.target(key, endpoint)
            if target.dialect is Dialect.ANTHROPIC:
                target = forward_anthropic_headers(target, scope)
            admission = self.keys.admit(
                principal,
                key,
                body,
                endpoint.path in _GENERATING,
                lambda: self._context(model_key),
            )
        except ClientGone:
            return
        except ModelyardError as error:
            await responder.fail(error)
            self.refused(
                scope,
                principal,
                error.http_status,
                error.error_code,
                error.detail,
                name=name,
                key=key,
                arrived_at=arrived_at,
            )
            return
        except HTTPException as error:  # the guards' body limit, met in a chunked body
            self.refused(scope, principal, error.status_code, "body_too_large", error.detail)
            raise
        try:
            record = await exchange(
                receive,
                send,
                relay=self.relay,
                scheduler=self.scheduler,
                target=target,
                body=body,
                client=endpoint.client,
                path=route,
                translation=translation,
                streams=endpoint.streams,
                locate=(lambda: self._base(key, target)) if not target.base else None,
            )
        except BaseException:  # cancelled: the reservation is kept for its window, not held
            if admission.reservation is not None:
                self.keys.limiter.settle(admission.reservation, admission.reservation.tokens)
            raise
        self.keys.finish(principal, admission, key, record)
        self._record(principal, scope, name, record)

    def refused(
        self,
        scope: Scope,
        principal: Principal | None,
        status: int,
        code: str,
        detail: str,
        *,
        name: str = "",
        key: str = "",
        token: str = "",
        arrived_at: float | None = None,
    ) -> None:
        """One request refused before it asked for a turn — by the guards (no key, a bad or
        expired one, a scope, the IP allow-list, the body's size: ``token`` is the key it
        sent) or by ``serve`` (its body, its model, its key's limits): logged, counted and
        published like any request, and an error in its caller's usage. ``name`` is the model
        as asked, ``key`` the model it reached ("" for none)."""
        entry = self._turnless(scope, principal, status, code, detail, name, key, token, arrived_at)
        self.reporter.turnless(entry)
        self.keys.refused(principal, key)

    def answered(
        self, scope: Scope, principal: Principal | None, name: str, arrived_at: float
    ) -> None:
        """One request the gateway answered from what it knows (``/v1/models``,
        ``count_tokens``, Ollama's tags, ps, show, version): logged, counted and published
        like any request; no usage row (it spent no tokens), so no store write."""
        entry = self._turnless(scope, principal, 200, None, "", name, "", "", arrived_at)
        self.reporter.turnless(entry)

    def _turnless(
        self,
        scope: Scope,
        principal: Principal | None,
        status: int,
        code: str | None,
        detail: str,
        name: str,
        key: str,
        token: str,
        arrived_at: float | None,
    ) -> GatewayRequest:
        rules = principal.rules if principal is not None else None
        elapsed = 0.0 if arrived_at is None else time.monotonic() - arrived_at
        return GatewayRequest(
            model=name[:LOGGED_NAME_CHARS],
            key=key,
            route=scope["path"],
            caller=principal.name if principal is not None else "anonymous",
            key_prefix=rules.prefix if rules else shown_prefix(token),
            status=status,
            stream=False,
            queue_ms=0.0,
            waited_for_load=False,
            ttft_ms=None,
            duration_ms=round(elapsed * 1000, 1),
            prompt_tokens=None,
            completion_tokens=None,
            client_gone=False,
            error=detail[:LOGGED_DETAIL_CHARS],
            code=code,
        )

    def target(self, key: str, endpoint: Endpoint) -> tuple[Target[str], Translation | None]:
        """How ``key``'s backend is spoken to for ``endpoint``: in the client's dialect when
        the backend speaks it, else translated over its OpenAI API; 400 ``not_supported``."""
        provider = registry.get(key_of(key).provider)
        paths, api_key = provider.api_paths, self.backend.api_key(key)
        base = "" if self.backend.runs_here(key_of(key)) else (self.backend.base_url(key) or "")
        model = key_of(key).name
        if endpoint.client is Dialect.ANTHROPIC and paths.anthropic is not None:
            headers = {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
            return Target(
                base=_join(base, paths.anthropic),
                path=endpoint.path,
                dialect=Dialect.ANTHROPIC,
                headers=headers,
                key=key,
                model=model,
            ), None
        if endpoint.client is Dialect.OLLAMA and paths.ollama is not None:
            ttl = self._policy_ttl(key)
            return Target(
                base=_join(base, paths.ollama),
                path=endpoint.path,
                dialect=Dialect.OLLAMA,
                headers=bearer(api_key),
                pinned_options=self._num_ctx(key),
                keep_alive=int(ttl) if ttl else -1,
                key=key,
                model=model,
            ), None
        if paths.openai is None:
            raise _not_supported(provider.label, endpoint)
        translation = None
        if endpoint.client is not Dialect.OPENAI:
            if endpoint.translation is None:
                raise _not_supported(provider.label, endpoint)
            translation = endpoint.translation()
        return Target(
            base=_join(base, paths.openai),
            path=endpoint.path,
            dialect=Dialect.OPENAI,
            headers=bearer(api_key),
            cancels_only_streams=provider.capabilities.runs_gguf,
            key=key,
            model=model,
        ), translation

    async def count_tokens(self, request: TokenCount, principal: Principal | None) -> int:
        """``/v1/messages/count_tokens``: the backend's own count where it has one (the
        Anthropic API), else the model's tokenizer when it is loaded (llama.cpp's
        ``/tokenize``), else an estimate from the text's length."""
        name = request.model
        if name is None:
            raise _no_model()
        model_key = self.names().resolve(name)
        if not allowed(principal, [name, *self.names().names_of(model_key)]):
            raise not_found(name)
        key = qualified(model_key)
        provider = registry.get(key_of(key).provider)
        base, api_key = self.backend.base_url(key), self.backend.api_key(key)
        if provider.api_paths.anthropic is not None and base:
            headers = {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
            url = base + provider.api_paths.anthropic + "/messages/count_tokens"
            answer = await self.relay.client.post(
                url, json=request.sent_as(key_of(key).name), headers=headers
            )
            if answer.status_code >= 400:
                raise upstream_error(answer.status_code, answer.content, None)
            return int(answer.json()["input_tokens"])
        texts = request.texts()
        counter: TokenCounter = EstimatingCounter()
        if base and self.scheduler.is_loaded(key):
            target = ChatTarget(provider.kind, key_of(key).instance_id, base, api_key, name)
            counter = provider.token_counter(self.relay.client, target, OrderedDict())
        return sum(await counter.count([t for t in texts if t]))

    def _base(self, key: str, target: Target[str]) -> str:
        """The base URL of a model server that started for this request."""
        url = self.backend.base_url(key)
        if url is None:
            raise Unavailable(
                f"{key} is loaded but no server of it answers",
                code="model_not_running",
                hint="Try again: the next request starts it.",
            )
        provider = registry.get(key_of(key).provider)
        api = provider.api_paths.openai if target.dialect is Dialect.OPENAI else None
        return url + (api or "")

    def _policy_ttl(self, key: str) -> float | None:
        return self.scheduler.policy(key).ttl_s

    def _num_ctx(self, key: str) -> dict[str, int]:
        own = model_settings(self.settings, key)
        return {"num_ctx": own.num_ctx} if own is not None and own.num_ctx else {}

    def _context(self, key: ModelKey) -> int | None:
        model = self.catalog.get(key)
        return model.context_length if model is not None else None

    def _record(
        self, principal: Principal | None, scope: Scope, name: str, record: Exchange
    ) -> None:
        usage = record.relay.usage
        entry = GatewayRequest(
            model=name,
            key=record.model,
            route=scope["path"],
            caller=principal.name if principal is not None else "anonymous",
            key_prefix=principal.rules.prefix if principal and principal.rules else None,
            status=record.status or 499,
            stream=record.stream,
            queue_ms=round(record.waited_s * 1000, 1),
            waited_for_load=record.waited_for_load,
            ttft_ms=None if record.ttft_s is None else round(record.ttft_s * 1000, 1),
            duration_ms=round((time.monotonic() - record.arrived_at) * 1000, 1),
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            client_gone=record.client_gone,
            error=record.relay.error,
            code=record.code,
        )
        self.reporter.request(entry)


def forward_anthropic_headers(target: Target[str], scope: Scope) -> Target[str]:
    """``target`` with the client's ``anthropic-*`` headers (``anthropic-beta``, its
    ``anthropic-version``…): a backend that speaks Anthropic gets them as the client sent them,
    so betas and versions reach it. Never the client's key: the backend's own is sent."""
    forwarded = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name.startswith(b"anthropic-")
    }
    if not forwarded:
        return target
    return dataclasses.replace(target, headers={**target.headers, **forwarded})


def _join(base: str, api: str) -> str:
    return base + api if base else ""


def _speaks(model: Model) -> bool:
    paths = registry.get(model.provider).api_paths
    return any(p is not None for p in (paths.openai, paths.anthropic, paths.ollama))


def _no_model() -> ModelyardError:
    return InvalidInput(
        "the request names no model",
        code="model_required",
        hint="Give 'model': a name from GET /v1/models.",
    )


def _not_supported(label: str, endpoint: Endpoint) -> Conflict:
    return Conflict(
        f"{label} models cannot answer {endpoint.client.value} {endpoint.path} requests",
        code="not_supported",
        hint="Use the model through an API its runtime speaks (GET /v1/models lists them).",
    )
