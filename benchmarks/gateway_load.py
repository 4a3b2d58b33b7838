"""The gateway benchmark's load generator, run in its own process: concurrent streamed chat
completions over raw HTTP/1.1 keep-alive connections (asyncio streams on uvloop), so that the
client costs little CPU and measures no library of its own.

``python -m benchmarks.gateway_load URL MODEL --streams N --mode ttft|steady|throughput ...``
prints one JSON object: for ``ttft`` (rounds of N requests sent at the same instant) and
``steady`` (N requests always in flight, their starts spread out), each request's time to
its first token (ms); for ``throughput`` (N requests always in flight, their starts spread
over ``--spread`` seconds, 0 for all at once), the tokens and SSE events received in a
measured window after a warm-up, the seconds the window lasted, and the TTFT of every
request begun in the window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

TOKEN = re.compile(rb'"content":\s*"[^"]')  # an event carrying a non-empty piece of text


@dataclass
class Totals:
    tokens: int = 0
    events: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class Connection:
    """One keep-alive HTTP/1.1 connection sending streamed completions one after another."""

    def __init__(self, url: str, key: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.key = key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    async def complete(self, body: bytes, totals: Totals) -> float | None:
        """Send one request, read the answer; the time to its first token in seconds. A
        kept-alive connection the server closed meanwhile is replaced, once."""
        reused = self.writer is not None and not self.writer.is_closing()
        try:
            return await self._complete(body, totals)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            nothing = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
            if not (reused and nothing):
                raise
            self.writer = None
            return await self._complete(body, totals)

    async def _complete(self, body: bytes, totals: Totals) -> float | None:
        reader, writer = await self._open()
        auth = b"Authorization: Bearer %s\r\n" % self.key.encode() if self.key else b""
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\n%s"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (self.host.encode(), self.port, auth, len(body), body)
        )
        sent = time.perf_counter()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        totals.statuses[status] = totals.statuses.get(status, 0) + 1
        lower = head.lower()
        first: float | None = None
        pending = b""
        async for data in _body(reader, lower):
            pending += data
            cut = pending.rfind(b"\n\n")
            if cut < 0:
                continue
            events, pending = pending[: cut + 2], pending[cut + 2 :]
            for event in events.split(b"\n\n"):
                if not event:
                    continue
                totals.events += 1
                if TOKEN.search(event):
                    totals.tokens += 1
                    if first is None:
                        first = time.perf_counter() - sent
        if b"connection: close" in lower:
            writer.close()
            self.writer = None
        if status != 200:
            totals.errors += 1
        return first


async def _body(reader: asyncio.StreamReader, head: bytes) -> Any:
    """The body's bytes as they arrive (chunked or with a length)."""
    if b"transfer-encoding: chunked" in head:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return
            yield (await reader.readexactly(size + 2))[:-2]
    match = re.search(rb"content-length:\s*(\d+)", head)
    if match:
        yield await reader.readexactly(int(match.group(1)))


def request_body(model: str, max_tokens: int, n: int) -> bytes:
    return json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": f"Count for me, request {n}."}],
            "max_tokens": max_tokens,
            "stream": True,
            "user": f"load-{n}",
        }
    ).encode()


async def ttft(args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of ``streams`` simultaneous requests; every request's TTFT."""
    connections = [Connection(args.url, args.key) for _ in range(args.streams)]
    totals = Totals()
    times: list[float] = []
    for warm in range(args.rounds + 1):
        firsts = await asyncio.gather(
            *(
                c.complete(request_body(args.model, args.max_tokens, n), totals)
                for n, c in enumerate(connections)
            )
        )
        if warm:  # round 0 opens the connections and warms every cache
            times.extend(1000 * f for f in firsts if f is not None)
        await asyncio.sleep(args.pause)
    return {"ttft_ms": times, "errors": totals.errors, "statuses": totals.statuses}


async def steady(args: argparse.Namespace) -> dict[str, Any]:
    """``streams`` workers, their starts spread over one request's length, each sending
    requests back to back: so ``streams`` answers are always in flight and arrivals are
    spread out, as with independent clients. The TTFT of each request begun after the
    warm-up."""
    totals = Totals()
    times: list[float] = []
    loop = asyncio.get_running_loop()
    begin = loop.time()
    measured_from, until = begin + args.warmup, begin + args.warmup + args.duration

    async def worker(n: int) -> None:
        await asyncio.sleep(n * args.spread / args.streams)
        connection = Connection(args.url, args.key)
        while loop.time() < until:
            started = loop.time()
            first = await connection.complete(request_body(args.model, args.max_tokens, n), totals)
            if started >= measured_from and first is not None:
                times.append(1000 * first)

    await asyncio.gather(*(worker(n) for n in range(args.streams)))
    return {"ttft_ms": times, "errors": totals.errors, "statuses": totals.statuses}


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """``streams`` workers sending requests back to back; what arrived in the window, and the
    TTFT of each request begun in it. The workers' first requests are spread over
    ``spread`` seconds: 0 starts them at the same instant, so that every answer ends and is
    asked again together (a burst of ``streams`` requests every answer's length); one
    answer's length spreads the arrivals evenly, as from independent clients. The warm-up
    should outlast the spread, so the window sees every worker going."""
    totals = Totals()
    stop = asyncio.Event()
    times: list[float] = []
    window_open = False

    async def worker(n: int) -> None:
        await asyncio.sleep(n * args.spread / args.streams)
        connection = Connection(args.url, args.key)
        while not stop.is_set():
            counted = window_open
            first = await connection.complete(request_body(args.model, args.max_tokens, n), totals)
            if counted and first is not None:
                times.append(1000 * first)

    workers = [asyncio.create_task(worker(n)) for n in range(args.streams)]
    await asyncio.sleep(args.warmup)
    window_open = True
    tokens, events, started = totals.tokens, totals.events, time.perf_counter()
    await asyncio.sleep(args.duration)
    window = time.perf_counter() - started
    result = {
        "tokens": totals.tokens - tokens,
        "events": totals.events - events,
        "seconds": window,
        "errors": totals.errors,
        "statuses": totals.statuses,
    }
    window_open = False
    stop.set()
    await asyncio.wait(workers, timeout=args.max_tokens * 2)
    result["ttft_ms"] = times  # the requests begun in the window, now ended
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("model")
    parser.add_argument("--mode", choices=["ttft", "steady", "throughput"], required=True)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--spread", type=float, default=1.0)
    parser.add_argument("--key", default="")
    args = parser.parse_args()
    import uvloop

    run = {"ttft": ttft, "steady": steady, "throughput": throughput}[args.mode]
    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()
