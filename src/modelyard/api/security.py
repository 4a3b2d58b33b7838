"""Request guards of SPEC §12, as one ASGI middleware: IP allow-list, Host check (DNS
rebinding), Origin check (cross-site requests), API keys with scopes, and the audit log."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.access.keys import LOCAL, Principal
from modelyard.errors import problem
from modelyard.runtimes.instances import is_local_host
from modelyard.services import Services

log = logging.getLogger("modelyard.security")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
_PUBLIC_PREFIXES = ("/static/",)
_PUBLIC_PATHS = {"/", "/favicon.ico"}


def required_scope(method: str, path: str) -> str:
    if method not in MUTATING:
        return "read"
    if path == "/api/conversations" or (
        path.startswith("/api/conversations/") and path.endswith(("/messages", "/stop"))
    ):
        return "inference"
    return "admin"


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        settings = services.settings
        self.check_host = is_local_host(settings.host)
        self.allowed_hosts = {h.lower() for h in settings.allowed_hosts}
        self.networks = [ipaddress.ip_network(c, strict=False) for c in settings.ip_allowlist]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = (scope.get("client") or ("unknown", 0))[0]
        method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        path: str = scope["path"]
        denial = self._deny(scope, headers, client, method)
        principal: Principal | None = None
        if denial is None and self._cors_preflight(headers, method):
            # Browsers never send credentials on a preflight; CORSMiddleware answers it.
            await self.app(scope, receive, send)
            return
        if denial is None:
            principal, denial = await self._authenticate(scope, headers, method, path)
        if denial is not None:
            await self._refuse(scope, send, denial)
            if method in MUTATING:
                self._audit(principal, client, method, path, denial["status"], denial["code"])
            return
        scope.setdefault("state", {})["principal"] = principal
        if method not in MUTATING:
            await self.app(scope, receive, send)
            return
        audited = False

        async def send_wrapper(message: Message) -> None:
            nonlocal audited
            if message["type"] == "http.response.start" and not audited:
                # Recorded before the client sees the answer, so a read that follows finds it.
                audited = True
                self._audit(principal, client, method, path, int(message["status"]), "")
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if not audited:  # the request died before any answer
                self._audit(principal, client, method, path, 500, "no response")

    def _cors_preflight(self, headers: dict[str, str], method: str) -> bool:
        return (
            method == "OPTIONS"
            and "access-control-request-method" in headers
            and headers.get("origin") in self.services.settings.cors_origins
        )

    def _deny(
        self, scope: Scope, headers: dict[str, str], client: str, method: str
    ) -> dict[str, Any] | None:
        if self.networks:
            try:
                addr = ipaddress.ip_address(client)
                allowed = any(addr in net for net in self.networks)
            except ValueError:
                allowed = False
            if not allowed:
                return problem(
                    403,
                    "ip_not_allowed",
                    "Forbidden",
                    f"{client} is not in the IP allow-list",
                    "Add the client's network to ip_allowlist.",
                )
        host = headers.get("host", "")
        name = _hostname(host).lower()
        if self.check_host and not (is_local_host(name) or name in self.allowed_hosts):
            return problem(
                403,
                "host_not_allowed",
                "Forbidden",
                f"Host {host!r} is not allowed",
                "Open modelyard via localhost or 127.0.0.1, or add the name to allowed_hosts.",
            )
        origin = headers.get("origin")
        if origin and (method in MUTATING or scope["type"] == "websocket"):
            own = {f"http://{host}", f"https://{host}"}
            if origin not in own and origin not in self.services.settings.cors_origins:
                return problem(
                    403,
                    "cross_origin_forbidden",
                    "Forbidden",
                    f"requests from {origin} are not allowed",
                    "Use modelyard's own UI, or add the origin to cors_origins.",
                )
        return None

    async def _authenticate(
        self, scope: Scope, headers: dict[str, str], method: str, path: str
    ) -> tuple[Principal | None, dict[str, Any] | None]:
        keys = self.services.api_keys
        required = keys.known_required()
        if required is None:  # first request: read the store once, off the event loop
            required = await asyncio.to_thread(keys.required)
        if not required:
            return LOCAL, None
        if method in {"GET", "HEAD"} and (
            path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES)
        ):
            return None, None
        token = ""
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        elif scope["type"] == "websocket":
            token = parse_qs(scope.get("query_string", b"").decode()).get("access_token", [""])[0]
        principal = await asyncio.to_thread(keys.lookup, token) if token else None
        if principal is None:
            return None, problem(
                401,
                "unauthorized",
                "Unauthorized",
                "a valid API key is required" if token else "an API key is required",
                "Send 'Authorization: Bearer <key>'.",
            )
        needed = required_scope(method, path)
        if not principal.allows(needed):
            return principal, problem(
                403,
                "insufficient_scope",
                "Forbidden",
                f"this key lacks the {needed!r} scope",
                "Use a key with the needed scope.",
            )
        return principal, None

    async def _refuse(self, scope: Scope, send: Send, body: dict[str, Any]) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": body["code"]})
            return
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": body["status"],
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def _audit(
        self,
        principal: Principal | None,
        client: str,
        method: str,
        path: str,
        status: int,
        detail: str,
    ) -> None:
        self.services.audit.record(
            actor=principal.name if principal else "anonymous",
            client=client,
            method=method,
            path=path,
            status=status,
            detail=detail,
        )
