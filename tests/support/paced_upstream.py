"""A paced OpenAI-compatible stand-in: tokens at a fixed pace, and the moment a client hangs up.

``POST /v1/chat/completions`` answers like llama-server (PROTOCOLS §3.3): streamed, a first
chunk with the role, one chunk per token every ``interval`` seconds, a finish chunk, the usage
chunk when ``stream_options.include_usage`` asks for it, ``data: [DONE]``; not streamed, one
``chat.completion`` after the same time. ``max_tokens`` sets the number of tokens. Written on
asyncio streams (uvloop when present) so that hundreds of paced streams cost it little CPU:
it stands in for a model server in the gateway's benchmark, in its own process.

While it answers it reads the connection too, so it sees a client close at once: every
request whose client went away before the end is recorded with the ``CLOCK_MONOTONIC`` time
(comparable across processes on one machine) and the request's ``user`` field, which the
client sets to tell its requests apart. ``GET /stats`` returns them as JSON
(``{"started", "served", "closed_early": [{"user", "closed_at"}]}``).

Run it alone with ``python -m tests.support.paced_upstream --port N --interval 0.05``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

CHUNK_HEAD = b'{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"'
TAIL = b'"}}],"created":1,"id":"chatcmpl-paced","model":"paced","object":"chat.completion.chunk"}'


@dataclass
class Stats:
    started: int = 0
    served: int = 0
    closed_early: list[dict[str, Any]] = field(default_factory=list)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(body: Any) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


class PacedUpstream:
    """The stand-in's protocol handling, shared by the thread and the process forms."""

    def __init__(self, interval: float, default_tokens: int = 20) -> None:
        self.interval = interval
        self.default_tokens = default_tokens
        self.stats = Stats()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "GET" and path == "/stats":
                    await self._json(writer, self.stats.__dict__)
                elif method == "GET" and path == "/v1/models":  # for modelyard's catalog
                    await self._json(writer, {"object": "list", "data": [{"id": "paced"}]})
                elif method == "POST" and path == "/v1/chat/completions":
                    if not await self._complete(reader, writer, json.loads(body or b"{}")):
                        return
                else:
                    await self._json(writer, {"error": {"message": "File Not Found"}}, 404)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _json(self, writer: asyncio.StreamWriter, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        writer.write(
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, len(data), data)
        )
        await writer.drain()

    async def _complete(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: dict[str, Any]
    ) -> bool:
        """Answer one completion; False when the client went away first."""
        tokens = int(request.get("max_tokens") or self.default_tokens)
        user = str(request.get("user", ""))
        self.stats.started += 1
        closed = asyncio.ensure_future(reader.read(1))  # b"" once the client closes
        try:
            if request.get("stream"):
                ok = await self._stream(writer, closed, tokens, request)
            else:
                ok = await self._whole(writer, closed, tokens)
        finally:
            closed.cancel()  # takes nothing from the buffer: the next request stays whole
            with contextlib.suppress(asyncio.CancelledError):
                await closed
        if not ok:
            self.stats.closed_early.append({"user": user, "closed_at": time.monotonic()})
        self.stats.served += 1
        return ok

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        closed: asyncio.Future[bytes],
        tokens: int,
        request: dict[str, Any],
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + _chunk(
                b'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":'
                b'"assistant","content":null}}],"id":"chatcmpl-paced","object":'
                b'"chat.completion.chunk"}\n\n'
            )
        )
        for n in range(tokens):
            done, _ = await asyncio.wait((closed,), timeout=self.interval)
            if done:
                return False
            writer.write(_chunk(b"data: " + CHUNK_HEAD + b"t%d " % n + TAIL + b"\n\n"))
        end = _event({"choices": [{"finish_reason": "length", "index": 0, "delta": {}}], "id": "x"})
        options = request.get("stream_options") or {}
        closed.cancel()  # before the last bytes: the client sends nothing until it has them
        if options.get("include_usage"):
            usage = {"prompt_tokens": 7, "completion_tokens": tokens, "total_tokens": 7 + tokens}
            end += _event({"choices": [], "id": "x", "usage": usage})
        writer.write(_chunk(end + b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _whole(
        self, writer: asyncio.StreamWriter, closed: asyncio.Future[bytes], tokens: int
    ) -> bool:
        done, _ = await asyncio.wait((closed,), timeout=self.interval * tokens)
        if done:
            return False
        closed.cancel()  # before the answer: the client sends nothing until it has it
        body = {
            "choices": [
                {
                    "finish_reason": "length",
                    "index": 0,
                    "message": {"role": "assistant", "content": "t " * tokens},
                }
            ],
            "object": "chat.completion",
            "usage": {"prompt_tokens": 7, "completion_tokens": tokens, "total_tokens": 7 + tokens},
        }
        await self._json(writer, body)
        return True


class PacedThread:
    """The stand-in on 127.0.0.1 in a thread of this process (for tests)."""

    def __init__(self, interval: float, default_tokens: int = 20) -> None:
        self.upstream = PacedUpstream(interval, default_tokens)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self.upstream.handle, "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(server.wait_closed())

    def __enter__(self) -> PacedThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def _serve(port: int, interval: float) -> None:
    upstream = PacedUpstream(interval)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(_serve(args.port, args.interval))
    except ImportError:
        asyncio.run(_serve(args.port, args.interval))


if __name__ == "__main__":
    main()
