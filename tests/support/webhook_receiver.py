"""A webhook receiver on 127.0.0.1 for the alert tests and benchmark: it records every request
(headers, body, when it arrived) and can answer 503 to the first ``fail_first`` of them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import ServerThread


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    answered: int


@dataclass
class Receiver:
    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            status = 503 if len(self.received) < self.fail_first else 204
            self.received.append(
                Received(request.url.path, dict(request.headers), body, time.monotonic(), status)
            )
        return Response(status_code=status)

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.answered == 204]

    def serve(self) -> ServerThread:
        app = Starlette(routes=[Route("/{path:path}", self._hook, methods=["POST"])])
        return ServerThread(app)  # started by the caller (or its with-block)
