"""An unrelated web application, for "something else answers on this port" tests.

``GET /`` (and ``HEAD /``) answer 200 with an HTML page; every other path and method gets a
404 HTML page, as a typical nginx-fronted site does. Requests are recorded in ``state.log``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.fakes.common import RecordingMiddleware, RequestLog

HOME = """<!DOCTYPE html>
<html><head><title>Welcome to the team wiki</title></head>
<body><h1>Team wiki</h1><p>Nothing to see here.</p></body></html>
"""
NOT_FOUND = """<html>
<head><title>404 Not Found</title></head>
<body>
<center><h1>404 Not Found</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class PlainHttpState:
    """Scripting object: the home page HTML and the request log."""

    def __init__(self, home: str = HOME) -> None:
        self.home = home
        self.log = RequestLog()


def create_plain_http_app(state: PlainHttpState) -> Starlette:
    """The ASGI app of the unrelated web site."""

    async def page(request: Request) -> Response:
        if request.url.path == "/" and request.method in ("GET", "HEAD"):
            return HTMLResponse(state.home, headers={"server": "nginx"})
        return HTMLResponse(NOT_FOUND, status_code=404, headers={"server": "nginx"})

    return Starlette(
        routes=[Route("/{path:path}", page, methods=METHODS)],
        middleware=[Middleware(RecordingMiddleware, log=state.log)],
    )
