"""Plain ASGI for the gateway's hot path: the body read, the answer written, the hang-up seen.

No ``BaseHTTPMiddleware`` and no Starlette response objects between a token and the client:
``Responder`` writes ASGI messages itself and remembers whether the answer has started, which
decides how an error can still be told (a problem+json body, or one last event of the
stream). ``until_disconnect`` runs the work of a request while it watches ``receive`` for
``http.disconnect``, and cancels the work the moment the client goes away — while it is
queued, waiting for a load or generating — so the upstream request is closed at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from starlette.types import Receive, Send

from modelyard.errors import ModelyardError, PayloadTooLarge
from modelyard.gateway.wire import (
    PROBLEM,
    STREAM_HEADERS,
    Dialect,
    error_body,
    sse_comment,
    stream_error,
)

T = TypeVar("T")
Headers = Iterable[tuple[bytes, bytes]]


class ClientGone(Exception):
    """The client closed its connection before the answer was complete."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; ``PayloadTooLarge`` past ``limit`` bytes (chunked bodies
    too), ``ClientGone`` when the client hangs up first."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the request body is over {limit} bytes",
                code="body_too_large",
                hint="Send a smaller request (images count too).",
            )
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # a body the handler did not read (it always reads it first)


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work`` unless the client disconnects first: then cancel it, let its clean-up
    run (closing the upstream request) and raise ``ClientGone``. The work runs in the
    caller's task; only the watcher is a task of its own (one task a request, not two)."""
    current = asyncio.current_task()
    assert current is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        await _disconnected(receive)
        gone = True
        current.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        result = await work
    except asyncio.CancelledError:
        if not gone:
            raise  # cancelled from outside (shutdown)
        current.uncancel()
        raise ClientGone from None
    finally:
        watcher.cancel()
    if gone:  # the work ended on its own just as the client left
        current.uncancel()
        raise ClientGone
    return result


class Responder:
    """Writes one answer in a dialect; knows whether it has started."""

    def __init__(self, send: Send, dialect: Dialect, path: str = "") -> None:
        self._send = send
        self.dialect = dialect
        self.path = path
        self.status: int | None = None
        self.code: str | None = None  # the code of the error told, for the request log
        self.streaming = False
        self.complete = False

    @property
    def started(self) -> bool:
        return self.status is not None

    async def start_stream(self, status: int = 200, extra: Headers = ()) -> None:
        """Start a streamed answer (SSE or NDJSON by dialect) that nothing may buffer."""
        headers = [(b"content-type", self.dialect.stream_type.encode()), *STREAM_HEADERS]
        headers.extend(extra)
        self.status, self.streaming = status, True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, data: bytes) -> None:
        """More of a streamed answer."""
        if data:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        """The last bytes of a streamed answer."""
        self.complete = True
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def whole(self, status: int, body: bytes, media_type: str, extra: Headers = ()) -> None:
        """A complete, non-streamed answer."""
        headers = [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        self.status, self.complete = status, True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def heartbeat(self, text: str) -> bool:
        """An SSE comment while the client waits (a load, the queue); starts the stream if it
        has not started. False where the dialect has no such thing (NDJSON): nothing sent."""
        if self.dialect is Dialect.OLLAMA or (self.started and not self.streaming):
            return False
        if not self.started:
            await self.start_stream()
        await self.write(sse_comment(text))
        return True

    async def fail(self, error: ModelyardError) -> None:
        """Tell the client about ``error``: problem+json with the dialect's ``error`` member
        (and ``Retry-After`` when it has one) before the answer started, else the dialect's
        in-stream error event as the stream's end."""
        self.code = error.error_code
        if self.complete:
            return
        if not self.started:
            extra = [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
            body = error_body(self.dialect, error, self.path or None)
            await self.whole(error.http_status, body, PROBLEM, extra)
        elif self.streaming:
            await self.end(stream_error(self.dialect, error))
