"""gzip for the API's answers where it pays: large JSON to a client across a network.

Not to a loopback client (the dashboard on this machine, a local script, a proxy on this host
that compresses itself): there the bytes cost nothing and compressing costs milliseconds (a
1,000-model list, 376 KB, takes 2.4 ms at level 1: more than answering it). Never on streams
(Server-Sent Events, NDJSON pulls) and never outside ``/api/`` and ``/openapi.json``, so the
gateway's relays under other paths pass through untouched. The dashboard's own files come
compressed already (``api/assets.py``).
"""

from __future__ import annotations

from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.validation import is_local_host

MIN_BYTES = 4096
LEVEL = 1  # within a few percent of level 6's size here, at half the CPU
_PATHS = ("/api/", "/openapi.json")
_STREAMS = (*DEFAULT_EXCLUDED_CONTENT_TYPES, "application/x-ndjson")


class ApiCompression:
    """A pure ASGI middleware: routes a request to Starlette's gzip only when it pays."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(
            app, minimum_size=MIN_BYTES, compresslevel=LEVEL, exclude_content_types=_STREAMS
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith(_PATHS)
            and not is_local_host((scope.get("client") or ("", 0))[0])
        ):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
