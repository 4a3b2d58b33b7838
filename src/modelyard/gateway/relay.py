"""Forward one request to a model server and stream its bytes back, as they come.

The relay does not re-parse what it forwards: a meter (``metering``) cuts the upstream bytes
at event boundaries and reads only the few events accounting needs, and the bytes go on to
the client unchanged — except on the translated routes, where a ``StreamTranslator`` turns
OpenAI events into another dialect's (the only place that pays a parse per chunk).

Cancellation is the caller's: ``asgi.until_disconnect`` cancels the task running ``forward``
when the client goes away, and a response let go of before its end closes its upstream
connection (it is never put back in a pool), which is how llama.cpp, Ollama and the cloud
APIs learn to stop generating. ``RelayResult`` is filled
in as the answer goes, so a cut-off answer still tells what it cost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from modelyard.errors import (
    ModelyardError,
    TooManyRequests,
    Unavailable,
    UpstreamError,
    UpstreamRejected,
)
from modelyard.gateway.asgi import Responder
from modelyard.gateway.assemble import AnswerAssembler
from modelyard.gateway.metering import StreamMeter, body_usage, meter_for
from modelyard.gateway.upstream import (
    UpstreamFailed,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
)
from modelyard.gateway.wire import JSON, Dialect, Usage

UPSTREAM_ERROR_BYTES = 64 * 1024  # an error body is read up to this much, the rest dropped
UpstreamAnswer = UpstreamResponse | httpx.Response  # the two clients' responses read alike


@dataclass(frozen=True)
class UpstreamRequest:
    """What to send: the full URL, the (already rewritten) JSON body and the backend's own
    headers (its key, ``anthropic-version``…); never the client's credentials."""

    url: str
    body: bytes
    dialect: Dialect
    stream: bool
    headers: Mapping[str, str] = field(default_factory=dict)
    strip_usage: bool = False  # the gateway asked for usage the client did not ask for
    assemble: bool = False  # streamed from the backend, answered whole (``assemble``)


@dataclass
class RelayResult:
    """What happened, filled in as it happens (so a cancelled relay still reports)."""

    status: int | None = None
    usage: Usage | None = None
    chunks: int = 0
    sent_at: float = 0.0  # monotonic, when the request left for the backend
    first_chunk_at: float | None = None  # monotonic, when the first bytes reached the client
    finished: bool = False  # the answer arrived whole
    backend_failed: bool = False  # the connection failed: the backend may be dead
    error: str | None = None  # why the answer failed, for the request log


class StreamTranslator(Protocol):
    """Turns complete upstream events of one stream into the client's dialect."""

    def feed(self, events: bytes) -> bytes: ...

    def close(self, meter: StreamMeter) -> bytes:
        """The closing events once the upstream stream ended."""
        ...


class Translation(Protocol):
    """A route whose client speaks another dialect than the backend (which speaks OpenAI)."""

    @property
    def client(self) -> Dialect: ...

    @property
    def path(self) -> str:
        """The backend's endpoint, under its ``/v1`` base (``/chat/completions``…)."""
        ...

    def request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """The client's request as the backend's, for the backend's ``model`` name."""
        ...

    def response(self, body: bytes) -> bytes:
        """A whole upstream answer in the client's dialect."""
        ...

    def stream(self) -> StreamTranslator:
        """A translator for one streamed answer."""
        ...


def client_limits(max_connections: int) -> httpx.Limits:
    """Pool limits for hundreds of concurrent streams (httpx's default of 100 would queue
    the 101st stream inside the client, where nobody sees it wait)."""
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )


class Relay:
    """The HTTP clients and the forwarding of requests through them: plain-HTTP backends
    (the local runtimes) through the lean ``UpstreamPool``, HTTPS ones (the cloud APIs,
    perhaps behind a proxy from the environment) through httpx."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 300.0,
        max_connections: int = 1024,
    ) -> None:
        self.pool = UpstreamPool(connect_timeout_s, read_timeout_s)
        timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self.client = httpx.AsyncClient(timeout=timeout, limits=client_limits(max_connections))

    async def aclose(self) -> None:
        await self.pool.aclose()
        await self.client.aclose()

    async def _send(self, request: UpstreamRequest) -> UpstreamAnswer:
        headers = _headers(request)
        if request.url.startswith("https://"):
            upstream = self.client.build_request(
                "POST", request.url, content=request.body, headers=headers
            )
            return await self.client.send(upstream, stream=True)
        return await self.pool.send(request.url, request.body, headers)

    async def forward(
        self,
        request: UpstreamRequest,
        responder: Responder,
        result: RelayResult,
        translation: Translation | None = None,
    ) -> None:
        """Send ``request`` and relay the answer to ``responder``; errors reach the client in
        its dialect. Never raises for upstream trouble (it is in ``result``)."""
        result.sent_at = time.monotonic()
        try:
            response = await self._send(request)
        except (httpx.HTTPError, UpstreamFailed) as exc:
            await self._failed(exc, responder, result)
            return
        try:
            result.status = response.status_code
            if response.status_code >= 400:
                body = await _read_capped(response)
                retry = _retry_after(response)
                await responder.fail(upstream_error(response.status_code, body, retry))
                result.error = f"backend answered {response.status_code}"
            elif request.stream:
                await self._stream(response, request, responder, result, translation)
            elif request.assemble:
                await self._assembled(response, request, responder, result, translation)
            else:
                body = await response.aread()
                media_type = response.headers.get("content-type", JSON)
                await self._whole(body, media_type, request, responder, result, translation)
        except (httpx.HTTPError, UpstreamFailed) as exc:
            await self._failed(exc, responder, result)
        finally:
            await response.aclose()

    async def _whole(
        self,
        body: bytes,
        media_type: str,
        request: UpstreamRequest,
        responder: Responder,
        result: RelayResult,
        translation: Translation | None,
    ) -> None:
        result.usage = body_usage(request.dialect, body)
        if translation is not None:
            try:
                body, media_type = translation.response(body), JSON
            except (ValueError, TypeError, AttributeError) as exc:
                result.error = f"unreadable answer: {exc}"
                await responder.fail(
                    UpstreamError(f"the model server's answer could not be read: {exc}")
                )
                return
        result.first_chunk_at = time.monotonic()
        result.finished = True
        result.chunks = max(result.chunks, 1)
        await responder.whole(200, body, media_type)

    async def _assembled(
        self,
        response: UpstreamAnswer,
        request: UpstreamRequest,
        responder: Responder,
        result: RelayResult,
        translation: Translation | None,
    ) -> None:
        """Read the backend's stream to its end and answer it whole; leaving early (the
        client went away) closes the stream, which stops the backend."""
        meter = meter_for(request.dialect)
        assembler = AnswerAssembler()
        try:
            async for data in response.aiter_raw():
                assembler.feed(meter.feed(data))
            assembler.feed(meter.flush())
        finally:
            result.chunks, result.usage = meter.events, meter.usage
        if assembler.error is not None:
            result.error = meter.error
            await responder.fail(upstream_error(500, assembler.body(), None))
            return
        await self._whole(assembler.body(), JSON, request, responder, result, translation)

    async def _stream(
        self,
        response: UpstreamAnswer,
        request: UpstreamRequest,
        responder: Responder,
        result: RelayResult,
        translation: Translation | None,
    ) -> None:
        meter = meter_for(request.dialect, strip_usage=request.strip_usage)
        translator = translation.stream() if translation is not None else None
        if not responder.started:
            await responder.start_stream(response.status_code)
        try:
            async for data in response.aiter_raw():
                out = meter.feed(data)
                if translator is not None and out:
                    out = translator.feed(out)
                if out:
                    if result.first_chunk_at is None:
                        result.first_chunk_at = time.monotonic()
                    await responder.write(out)
                if meter.finished and translator is None and not result.finished:
                    # The end marker is relayed: a client that hangs up now (SDKs close at
                    # it) had the whole answer, before upstream closes its side.
                    result.finished = meter.error is None
            out = meter.flush()
            if translator is not None:
                out = translator.feed(out) + translator.close(meter)
            result.finished = meter.finished and meter.error is None
            result.error = meter.error
            await responder.end(out)
        finally:
            result.chunks, result.usage = meter.events, meter.usage

    async def _failed(
        self, exc: httpx.HTTPError | UpstreamFailed, responder: Responder, result: RelayResult
    ) -> None:
        """A connection-level failure: tell the client, and flag the backend as suspect when
        it could not be reached or broke off (a read timeout only says it is slow)."""
        timed_out = isinstance(exc, httpx.TimeoutException | UpstreamTimeout)
        result.backend_failed = not timed_out
        if timed_out:
            error: ModelyardError = UpstreamError(
                f"the model server did not answer in time ({type(exc).__name__})",
                code="upstream_timeout",
                status=504,
                hint="The model may be overloaded; try again, or raise the read timeout.",
            )
        else:
            error = UpstreamError(
                f"the model server broke off the request: {str(exc) or type(exc).__name__}",
                code="upstream_unreachable",
                hint="The model server may have stopped; the next request restarts it.",
            )
        result.error = error.detail
        await responder.fail(error)


def _headers(request: UpstreamRequest) -> dict[str, str]:
    accept = request.dialect.stream_type if request.stream else JSON
    return {"content-type": JSON, "accept": accept, **request.headers}


async def _read_capped(response: UpstreamAnswer) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        parts.append(chunk)
        size += len(chunk)
        if size >= UPSTREAM_ERROR_BYTES:
            break
    return b"".join(parts)[:UPSTREAM_ERROR_BYTES]


def _message(body: bytes) -> str:
    """The upstream's error message, whatever its shape."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()[:500] or "no details"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):  # OpenAI, llama.cpp, Anthropic
        return str(error.get("message") or error)
    if isinstance(error, str):  # Ollama, and some OpenAI-compatible servers
        return error
    return str(data)[:500]


def upstream_error(status: int, body: bytes, retry: float | None) -> ModelyardError:
    """An upstream error status and body as one of ours: a 4xx keeps its status (the
    request was at fault), 429 and 503 keep theirs with ``Retry-After``, others are 502."""
    detail = f"the model server answered {status}: {_message(body)}"
    if status == 429:
        return TooManyRequests(detail, code="upstream_rate_limited", retry_after_s=retry or 1)
    if status == 503:
        return Unavailable(detail, code="upstream_unavailable", retry_after_s=retry or 1)
    if 400 <= status < 500:
        return UpstreamRejected(detail, status=status)
    if status == 501:  # llama-server without --reranking, say: the backend lacks the endpoint
        return UpstreamError(
            detail,
            code="not_supported",
            status=501,
            hint="This model's server does not offer this endpoint.",
        )
    return UpstreamError(detail)


def _retry_after(response: UpstreamAnswer) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
