"""Response headers that keep a browser from misusing modelyard's pages (SPEC §12).

The Content-Security-Policy allows only modelyard's own scripts, styles and connections (no
other origin, and no inline script but the ones a response names by their hash: the dashboard's
index page has one), and no page may frame it: a framed dashboard could be clicked through by
the page around it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "content-security-policy"


def content_security_policy(*scripts: str) -> str:
    """The policy, allowing besides modelyard's own files the inline scripts ``scripts``
    (CSP sources such as ``'sha256-…'``)."""
    return "; ".join(
        (
            "default-src 'self'",
            " ".join(("script-src 'self'", *scripts)),
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


CONTENT_SECURITY_POLICY = content_security_policy()
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]

_CSP_NAME = CSP.encode()
_DEFAULT_CSP = (_CSP_NAME, CONTENT_SECURITY_POLICY.encode())


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every HTTP response, and the default policy to each that
    does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *SECURITY_HEADERS]
                if all(name.lower() != _CSP_NAME for name, _ in headers):
                    headers.append(_DEFAULT_CSP)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
