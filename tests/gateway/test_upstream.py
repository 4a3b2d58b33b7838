"""The lean upstream client against real sockets: keep-alive reuse, a pooled connection the
server closed, timeouts, refused connections, broken HTTP, and closing a response early."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from modelyard.gateway.upstream import UpstreamFailed, UpstreamPool, UpstreamTimeout
from tests.support.paced_upstream import PacedThread
from tests.support.servers import black_hole, closed_port
from tests.support.waiting import wait_until

BODY = json.dumps({"model": "m", "messages": [], "max_tokens": 3, "stream": True}).encode()
JSON = {"content-type": "application/json"}

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    """A raw server on 127.0.0.1; the list counts the connections it accepted."""
    accepted: list[int] = []

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await handler(reader, writer)

    server = await asyncio.start_server(counting, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/x", accepted


async def answer_twice_then_close(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answers requests on one connection, closing it after every second answer."""
    for _ in range(2):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
    writer.close()


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(bounded())


def test_a_connection_is_kept_alive_and_replaced_once_the_server_closed_it() -> None:
    async def main() -> tuple[list[bytes], int]:
        server, url, accepted = await serve(answer_twice_then_close)
        pool = UpstreamPool(5, 5)
        bodies = []
        for _ in range(4):
            response = await pool.send(url, b"{}", JSON)
            bodies.append(await response.aread())
            await response.aclose()
            await asyncio.sleep(0.05)  # the server's close reaches the pool
        await pool.aclose()
        server.close()
        return bodies, len(accepted)

    bodies, connections = run(main())
    assert bodies == [b"ok"] * 4 and connections == 2


def test_a_streamed_body_arrives_in_pieces_and_a_response_left_early_closes_it() -> None:
    with PacedThread(interval=0.02) as paced:

        async def main() -> list[bytes]:
            pool = UpstreamPool(5, 5)
            whole = await pool.send(paced.url + "/v1/chat/completions", BODY, JSON)
            pieces = [chunk async for chunk in whole.aiter_raw()]
            await whole.aclose()
            body = json.dumps({"model": "m", "max_tokens": 500, "stream": True, "user": "early"})
            early = await pool.send(paced.url + "/v1/chat/completions", body.encode(), JSON)
            async for _ in early.aiter_raw():
                break
            await early.aclose()
            await pool.aclose()
            return pieces

        pieces = run(main())
        wait_until(lambda: paced.upstream.stats.closed_early, "the stand-in to see the close")
    assert len(pieces) >= 4 and pieces[-1].endswith(b"data: [DONE]\n\n")
    assert paced.upstream.stats.closed_early[0]["user"] == "early"


def test_silence_past_the_read_timeout_is_a_timeout() -> None:
    with black_hole() as port:

        async def main() -> None:
            await UpstreamPool(5, 0.3).send(f"http://127.0.0.1:{port}/v1/x", b"{}", JSON)

        with pytest.raises(UpstreamTimeout):
            run(main())


def test_a_refused_connection_says_it_could_not_connect() -> None:
    async def main() -> None:
        await UpstreamPool(5, 5).send(f"http://127.0.0.1:{closed_port()}/v1/x", b"{}", JSON)

    with pytest.raises(UpstreamFailed) as failed:
        run(main())
    assert failed.value.connect


def test_a_server_that_breaks_http_or_hangs_up_mid_body_fails_the_response() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    async def main(handler: Handler) -> bytes:
        server, url, _ = await serve(handler)
        try:
            response = await UpstreamPool(5, 5).send(url, b"", JSON)
            return bytes(await response.aread())
        finally:
            server.close()

    for handler in (garbage, cut):
        with pytest.raises(UpstreamFailed):
            run(main(handler))
