"""One gateway request from end to end: a turn from the scheduler, then the relay.

The route has parsed the body and resolved the model to a ``Target`` (the scheduler's key and
the backend's endpoint); ``exchange`` does the rest inside ``until_disconnect``, so a client
that hangs up while queued, while its model loads or while it is answered is let go of at
once — its place in the queue given up, a load nobody waits for cancelled, the upstream
request closed. A streaming client that waits gets SSE comments (``: loading <model> 42%``),
never fake tokens; an Ollama client (NDJSON has no comments) just waits.

For an OpenAI-style backend the gateway always asks for usage in a stream
(``stream_options.include_usage``) and strips it again when the client did not ask, so every
answer is accounted for with the backend's own figures. Every other field of the request is
passed through untouched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from starlette.types import Receive, Send

from modelyard.errors import InvalidInput, ModelyardError
from modelyard.gateway.asgi import ClientGone, Responder, until_disconnect
from modelyard.gateway.relay import Relay, RelayResult, Translation, UpstreamRequest
from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelState, WaitView
from modelyard.gateway.wire import Dialect, compact

K = TypeVar("K", bound=Hashable)
log = logging.getLogger("modelyard.gateway")
HEARTBEAT_S = 0.5
_STREAMABLE = ("/chat/completions", "/completions")


@dataclass(frozen=True)
class Target(Generic[K]):
    """Where a request goes: the scheduler's ``key`` for the model, the backend's ``base``
    URL (with ``/v1`` for OpenAI-style backends) and ``path``, the ``model`` name the
    backend knows, its dialect and its own headers (its key).

    For an Ollama backend, the options pinned for the model (``num_ctx``) so no request
    forces a reload, and the ``keep_alive`` that leaves unloading to the scheduler. A backend
    that stops generating for a client that left only when it streams
    (``cancels_only_streams``, llama.cpp) is always asked for a stream of chat and text
    completions; the relay assembles whole answers itself."""

    key: K
    base: str
    path: str
    model: str
    dialect: Dialect
    headers: Mapping[str, str] = field(default_factory=dict)
    pinned_options: Mapping[str, Any] = field(default_factory=dict)
    keep_alive: str | int | None = None  # sent to an Ollama backend instead of the client's
    cancels_only_streams: bool = False  # llama.cpp: whole answers are streamed and assembled


@dataclass
class Exchange:
    """What one request did, for the request log, metrics and usage (never the prompt)."""

    model: str
    stream: bool
    arrived_at: float  # monotonic
    status: int | None = None
    waited_s: float = 0.0  # for its turn: the queue and any load
    waited_for_load: bool = False
    ttft_s: float | None = None  # arrival to the first bytes of the answer
    client_gone: bool = False
    code: str | None = None  # the error's code when it failed
    relay: RelayResult = field(default_factory=RelayResult)


def wants_stream(dialect: Dialect, body: Mapping[str, Any]) -> bool:
    """Whether the client asked for a stream (Ollama streams unless told not to)."""
    if dialect is Dialect.OLLAMA:
        return body.get("stream", True) is not False
    return body.get("stream") is True


def upstream_request(
    target: Target[Any],
    body: Mapping[str, Any],
    client: Dialect,
    translation: Translation | None,
    streams: bool | None = None,
) -> UpstreamRequest:
    """The request for the backend: the client's, with the backend's model name, the usage
    request, the pinned options; or the translation's. ``streams`` overrides what the body
    says (Ollama's ``/api/embed`` has no ``stream`` field and never streams)."""
    strip = False
    if translation is not None:  # the translated request says whether it streams
        sent = translation.request(dict(body), target.model)
        url = target.base + translation.path
        stream = sent.get("stream") is True
    else:
        stream = wants_stream(client, body) if streams is None else streams
        sent = {**body, "model": target.model}
        url = target.base + target.path
        if target.dialect is Dialect.OLLAMA and target.pinned_options:
            sent["options"] = {**(body.get("options") or {}), **target.pinned_options}
        if target.dialect is Dialect.OLLAMA and target.keep_alive is not None:
            sent["keep_alive"] = target.keep_alive  # the scheduler decides when it unloads
    assemble = (
        not stream
        and target.cancels_only_streams
        and target.dialect is Dialect.OPENAI
        and url.endswith(_STREAMABLE)
    )
    if assemble:
        sent["stream"] = True
    if (stream or assemble) and target.dialect is Dialect.OPENAI:
        options = sent.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        strip = stream and options.get("include_usage") is not True
        sent["stream_options"] = {**options, "include_usage": True}
    return UpstreamRequest(
        url=url,
        body=compact(sent),
        dialect=target.dialect,
        stream=stream,
        headers=target.headers,
        strip_usage=strip,
        assemble=assemble,
    )


async def exchange(
    receive: Receive,
    send: Send,
    *,
    relay: Relay,
    scheduler: Scheduler[K],
    target: Target[K],
    body: Mapping[str, Any],
    client: Dialect,
    path: str = "",
    translation: Translation | None = None,
    streams: bool | None = None,
    heartbeat_s: float = HEARTBEAT_S,
    locate: Callable[[], str] | None = None,
) -> Exchange:
    """Serve one request: wait for a turn at the model, relay the backend's answer.

    ``locate`` gives the backend's base URL once the model is loaded, for a backend that has
    none before (a local file's server gets its port when it starts); ``target.base`` is then
    the empty string."""
    responder = Responder(send, client, path)
    try:
        request = upstream_request(target, body, client, translation, streams)
    except ModelyardError as error:  # a request the translation cannot carry
        await responder.fail(error)
        return Exchange(
            str(target.key), False, time.monotonic(), status=responder.status, code=error.error_code
        )
    record = Exchange(str(target.key), request.stream, time.monotonic())

    async def beat(view: WaitView) -> None:
        record.waited_for_load |= view.state is ModelState.LOADING
        await responder.heartbeat(view.heartbeat())

    async def work() -> None:
        try:
            with scheduler.request(target.key) as ticket:
                if not ticket.granted:
                    record.waited_for_load = ticket.view().state is not ModelState.LOADED
                    await ticket.ready(beat if request.stream else None, heartbeat_s)
                record.waited_s = time.monotonic() - record.arrived_at
                sent = request
                if locate is not None:
                    sent = dataclasses.replace(request, url=locate() + request.url)
                await relay.forward(sent, responder, record.relay, translation)
                if record.relay.backend_failed:
                    ticket.backend_failed()
        except ModelyardError as error:
            record.relay.error = error.detail
            await responder.fail(error)
        except Exception:  # a bug: still a problem+json answer, and the traceback in the log
            log.exception("gateway request for %s failed", target.key)
            record.relay.error = "internal error"
            await responder.fail(ModelyardError("an unexpected error occurred"))

    try:
        await until_disconnect(receive, work())
    except ClientGone:
        record.client_gone = True
    record.status, record.code = responder.status, responder.code
    if record.relay.first_chunk_at is not None:
        record.ttft_s = record.relay.first_chunk_at - record.arrived_at
    return record


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or ``InvalidInput`` saying what is wrong."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(
            f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from exc
    if not isinstance(value, dict):
        raise InvalidInput("the request body must be a JSON object", code="invalid_json")
    return value
