"""A lean HTTP/1.1 client for the relay's plain-HTTP backends: asyncio protocols and
httptools' C parser, keep-alive connections pooled per host.

Measured in the gateway benchmark, httpx's ``AsyncClient`` cost the gateway about ten times
the CPU per relayed chunk of this client (anyio cancel scopes, h11's pure-Python parsing and
the pool's scans, for every chunk of every stream): too much at hundreds of streams of
tokens. This client does one thing — send a request, hand the body back as it arrives, with
a read timeout between pieces — and closes the connection when a response is let go of
before its end, which is how a model server learns that its client left. HTTPS backends (the
cloud APIs, perhaps behind a proxy) keep going through httpx (``relay``).

Backpressure: while the relay has not taken what arrived (its client reads slowly), reading
from the backend pauses past ``HIGH_WATER`` bytes, so TCP slows the backend down instead of
memory filling up.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

HIGH_WATER = 1 << 20
IDLE_S = 30.0  # an idle pooled connection is closed after this long


class UpstreamFailed(Exception):
    """The connection failed or the server broke the protocol; ``connect`` when it could
    not even be opened."""

    def __init__(self, message: str, *, connect: bool = False) -> None:
        super().__init__(message)
        self.connect = connect


class UpstreamTimeout(UpstreamFailed):
    """Nothing arrived within the read (or connect) timeout."""


class _Connection(asyncio.Protocol):
    """One TCP connection and the response being read on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.error: str | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self._header_name = b""
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.reused = False
        self.got_bytes = False
        self.idle_since = 0.0
        self._headers_ready: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"the server broke HTTP/1.1: {exc}")
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail("the server closed the connection" + (f": {exc}" if exc else ""))

    # -- httptools callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self._headers_ready is not None and not self._headers_ready.done():
            self._headers_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # -- for the response -----------------------------------------------------------------------

    def _fail(self, message: str) -> None:
        self.error = self.error or message
        if self._headers_ready is not None and not self._headers_ready.done():
            self._headers_ready.set_result(None)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def start(self, request: bytes) -> asyncio.Future[None]:
        """Send a request; a future done when the response's headers (or an error) arrive."""
        assert self.transport is not None
        self.parser = httptools.HttpResponseParser(self)
        self.status, self.headers, self.complete = 0, {}, False
        self.chunks.clear()
        self.buffered, self.got_bytes = 0, False
        self._headers_ready = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._headers_ready

    async def next_chunk(self, timeout: float) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while not self.chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise UpstreamFailed(self.error)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError:
                raise UpstreamTimeout(f"nothing arrived for {timeout:g} s") from None
            finally:
                self._waiter = None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self._paused and self.buffered < HIGH_WATER // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk


class UpstreamResponse:
    """A response whose body is read as it arrives; ``aclose`` always (a response let go of
    before its end closes its connection)."""

    def __init__(self, pool: UpstreamPool, key: tuple[str, int], conn: _Connection) -> None:
        self._pool = pool
        self._key = key
        self._conn = conn
        self.status_code = conn.status
        self.headers: Mapping[str, str] = conn.headers
        self._done = False

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        while (chunk := await self._conn.next_chunk(self._pool.read_timeout_s)) is not None:
            yield chunk

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_raw()])

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.closed and conn.error is None:
            self._pool._release(self._key, conn)
        elif conn.transport is not None:
            conn.transport.abort()  # mid-answer: the backend sees its client go


class UpstreamPool:
    """Keep-alive connections per (host, port), for plain-HTTP backends."""

    def __init__(self, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
        """POST ``body`` to ``url``; the response once its headers arrived."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {target or '/'} HTTP/1.1", f"host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"content-length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        key = (host, port)
        conn = await self._connection(key)
        await self._headers(conn, request)
        if conn.error is not None and conn.reused and not conn.got_bytes:
            # A pooled connection the server had just closed: once more on a fresh one.
            conn = await self._open(key)
            await self._headers(conn, request)
        if conn.error is not None:
            raise UpstreamFailed(conn.error)
        return UpstreamResponse(self, key, conn)

    async def _headers(self, conn: _Connection, request: bytes) -> None:
        try:
            async with asyncio.timeout(self.read_timeout_s):
                await conn.start(request)
        except TimeoutError:
            if conn.transport is not None:
                conn.transport.abort()
            raise UpstreamTimeout(f"no answer within {self.read_timeout_s:g} s") from None
        except asyncio.CancelledError:
            if conn.transport is not None:
                conn.transport.abort()  # the client left while the backend was working
            raise

    async def _connection(self, key: tuple[str, int]) -> _Connection:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_S:
                conn.reused = True
                return conn
            if conn.transport is not None:
                conn.transport.close()
        return await self._open(key)

    async def _open(self, key: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(_Connection, key[0], key[1])
        except TimeoutError:
            raise UpstreamTimeout(
                f"could not connect to {key[0]}:{key[1]} in time", connect=True
            ) from None
        except OSError as exc:
            raise UpstreamFailed(
                f"could not connect to {key[0]}:{key[1]}: {exc}", connect=True
            ) from exc
        return conn

    def _release(self, key: tuple[str, int], conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self._idle.setdefault(key, []).append(conn)

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                if conn.transport is not None:
                    conn.transport.close()
        self._idle.clear()
