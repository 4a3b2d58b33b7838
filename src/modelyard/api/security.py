"""Request guards of SPEC §12, as one ASGI middleware in front of the app.

In order: the IP allow-list, the ``Host`` check (DNS rebinding), the ``Origin`` check
(cross-site requests; local apps' origins only where the route allows them), CORS, the caller
(a key, judged by that key alone; else local trust, judged by the OS user owning the peer's
socket), the scope the route declares, the request body's size, and WebSockets per caller.
Everything is decided from the route the request is for (``api/policy.py``) before the app
runs or the body is read. Changes are audited; refusals are counted per source and reason.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.access.keys import KEY_PREFIX, Principal
from modelyard.access.trust import LocalTrust
from modelyard.api.policy import POLICY_KEY, RoutePolicy, RouteTable
from modelyard.clock import utcnow
from modelyard.errors import problem
from modelyard.gateway.wire import Dialect, dialect_error_member
from modelyard.services import Services
from modelyard.validation import is_local_host

log = logging.getLogger("modelyard.security")
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Ollama's default origins (envconfig.AllowedOrigins): local pages on any port, and the
# schemes of desktop and editor apps. ``null`` (sandboxed frames, file://) is not one.
LOCAL_ORIGIN = re.compile(
    r"(https?://(localhost|127\.0\.0\.1|\[::1\]|0\.0\.0\.0)(:\d{1,5})?"
    r"|(app|tauri|vscode-webview)://[^\s/]+)"
)
Refusal = dict[str, Any]


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, services: Services, routes: RouteTable) -> None:
        self.app = app
        self.services = services
        self.routes = routes
        settings = services.settings
        self.check_host = is_local_host(settings.host)
        self.allowed_hosts = {h.lower() for h in settings.allowed_hosts}
        if settings.public_url:  # the name people reach it by, often through a proxy
            self.allowed_hosts.add((urlsplit(settings.public_url).hostname or "").lower())
        self.networks = [ipaddress.ip_network(c, strict=False) for c in settings.ip_allowlist]
        self.cors_origins = set(settings.cors_origins)
        self.local_origins = settings.allow_local_origins
        self.trust = LocalTrust(settings.local_trust, settings.trusted_group)
        self.max_sockets = settings.ws_max_connections
        self.sockets: Counter[str] = Counter()
        listed = list(self.cors_origins)
        self.cors_listed = CORSMiddleware(
            self._dispatch, allow_origins=listed, allow_methods=["*"], allow_headers=["*"]
        )
        self.cors_local = CORSMiddleware(
            self._dispatch,
            allow_origins=listed,
            allow_origin_regex=LOCAL_ORIGIN.pattern,
            allow_methods=["*"],
            allow_headers=["*"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = (scope.get("client") or ("unknown", 0))[0]
        method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        route, declared = self.routes.match(scope)
        scope[POLICY_KEY] = (route, declared)
        denial = self._deny(scope, headers, client, method, declared)
        preflight = self._preflight(scope, headers, method)
        if denial is None and preflight is not None:
            # Browsers never send credentials on a preflight; the CORS middleware answers it.
            await self._cors_app(preflight)(scope, receive, send)
            return
        inner = self._cors_app(declared)
        principal: Principal | None = None
        if denial is None:
            principal, denial = await self._authenticate(scope, headers, method, declared)
        limit = declared.max_body
        assert limit is not None  # an effective policy has every field
        if denial is None:
            denial = _body_too_large(headers, limit)
        if denial is not None:
            await self._refuse(scope, send, denial)
            if method in MUTATING or denial["status"] in (401, 403):
                self.services.audit.refused(
                    actor=principal.name if principal else "anonymous",
                    client=client,
                    method=method,
                    path=scope["path"],
                    status=denial["status"],
                    code=denial["code"],
                )
            if scope["type"] == "http" and _gateway_dialect(route) is not None:
                self.services.gateway.refused(
                    scope,
                    principal,
                    denial["status"],
                    denial["code"],
                    denial["detail"],
                    token=_token(scope),
                )
            return
        scope.setdefault("state", {})["principal"] = principal
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, inner, principal)
            return
        receive = _limited(receive, limit)
        # Inference through the gateway changes nothing: its own request log records it.
        if method not in MUTATING or _gateway_dialect(route) is not None:
            await inner(scope, receive, send)
            return
        await self._audited(scope, receive, send, inner, principal, client, method)

    def _cors_app(self, declared: RoutePolicy) -> ASGIApp:
        if declared.local_origins and self.local_origins:
            return self.cors_local
        return self.cors_listed if self.cors_origins else self._dispatch

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app; or, for a gateway route without parameters, the route the guards matched,
        called directly: the app's router would match it a second time (trying every route of
        every router before the gateway's), a fifth of a whole answer's CPU. Its endpoint is
        plain ASGI that answers its own errors; the one exception that reaches here is
        ``_limited``'s, refused as the guards refuse."""
        route, declared = scope[POLICY_KEY]
        if (
            not isinstance(route, Route)
            or _gateway_dialect(route) is None
            or route.param_convertors
        ):
            await self.app(scope, receive, send)
            return
        scope["endpoint"], scope["route"], scope["path_params"] = route.endpoint, route, {}
        try:
            await route.handle(scope, receive, send)
        except HTTPException as exc:
            if exc.status_code != 413 or declared.max_body is None:
                raise
            await self._refuse(scope, send, _too_large(declared.max_body))

    def _origin_allowed(self, origin: str, declared: RoutePolicy) -> bool:
        if origin in self.cors_origins:
            return True
        return bool(
            declared.local_origins and self.local_origins and LOCAL_ORIGIN.fullmatch(origin)
        )

    def _preflight(self, scope: Scope, headers: dict[str, str], method: str) -> RoutePolicy | None:
        """For a CORS preflight from an origin the route it asks about allows: that route's
        policy (its CORS middleware answers); else None (an ordinary OPTIONS request)."""
        wanted = headers.get("access-control-request-method")
        origin = headers.get("origin")
        if method != "OPTIONS" or not wanted or not origin:
            return None
        declared = self.routes.match_method(scope, wanted.upper())
        return declared if self._origin_allowed(origin, declared) else None

    def _deny(
        self,
        scope: Scope,
        headers: dict[str, str],
        client: str,
        method: str,
        declared: RoutePolicy,
    ) -> Refusal | None:
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
            if origin not in own and not self._origin_allowed(origin, declared):
                return problem(
                    403,
                    "cross_origin_forbidden",
                    "Forbidden",
                    f"requests from {origin[:200]} are not allowed",
                    "Use modelyard's own UI, or add the origin to cors_origins.",
                )
        return None

    async def _authenticate(
        self, scope: Scope, headers: dict[str, str], method: str, declared: RoutePolicy
    ) -> tuple[Principal | None, Refusal | None]:
        token = _token(scope)
        keys = self.services.api_keys
        builtin = keys.builtin(token) if token else None
        if builtin is None and token and _placeholder(scope, token):
            token = ""  # a gateway client's "any key" (SDKs insist on one): local trust decides
        if token:  # a key of modelyard's form means it, on every route, local or not
            principal = builtin or keys.stored(token)
            if principal is None:
                return None, problem(
                    401,
                    "unauthorized",
                    "Unauthorized",
                    "the API key is not valid",
                    "Send a valid key as 'Authorization: Bearer <key>'.",
                )
            if principal.rules is not None and principal.rules.expired(utcnow()):
                return principal, problem(
                    401,
                    "api_key_expired",
                    "Unauthorized",
                    f"the API key {principal.rules.prefix}… expired",
                    "Ask for a new key (modelyard keys create).",
                )
        elif declared.public and method in ("GET", "HEAD"):
            return None, None
        else:
            principal = self.trust.principal(scope.get("client"), scope.get("server"), headers)
            if principal is None:
                return None, problem(
                    401,
                    "unauthorized",
                    "Unauthorized",
                    "an API key is required",
                    "Send 'Authorization: Bearer <key>'. Without a key, modelyard accepts only "
                    "programs of its own OS user (or of trusted_group) on this machine.",
                )
        needed = declared.scope_for(method)
        if not principal.allows(needed):
            return principal, problem(
                403,
                "insufficient_scope",
                "Forbidden",
                f"this key lacks the {needed!r} scope",
                "Use a key with the needed scope.",
            )
        return principal, None

    async def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        inner: ASGIApp,
        principal: Principal | None,
    ) -> None:
        subject = principal.subject if principal else "anonymous"
        if self.sockets[subject] >= self.max_sockets:
            await send({"type": "websocket.close", "code": 1008, "reason": "too_many_websockets"})
            return
        self.sockets[subject] += 1
        try:
            await inner(scope, receive, send)
        finally:
            self.sockets[subject] -= 1
            if not self.sockets[subject]:
                del self.sockets[subject]

    async def _audited(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        inner: ASGIApp,
        principal: Principal | None,
        client: str,
        method: str,
    ) -> None:
        audited = False

        def audit(status: int, detail: str) -> None:
            self.services.audit.record(
                actor=principal.name if principal else "anonymous",
                client=client,
                method=method,
                path=scope["path"],
                status=status,
                detail=detail,
            )

        async def send_wrapper(message: Message) -> None:
            nonlocal audited
            if message["type"] == "http.response.start" and not audited:
                # Recorded before the client sees the answer, so a read that follows finds it.
                audited = True
                audit(int(message["status"]), "")
            await send(message)

        try:
            await inner(scope, receive, send_wrapper)
        finally:
            if not audited:  # the request died before any answer
                audit(500, "no response")

    async def _refuse(self, scope: Scope, send: Send, body: Refusal) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": body["code"]})
            return
        dialect = _gateway_dialect(scope.get(POLICY_KEY, (None,))[0])
        if dialect is not None:  # a gateway route: its clients read their own error shape
            member = dialect_error_member(dialect, body["status"], body["detail"], body["code"])
            body = {**body, **member}
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        if body["status"] == 413:  # its body is never read, so the connection cannot go on
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": body["status"], "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _placeholder(scope: Scope, token: str) -> bool:
    """A token on a gateway route that cannot be a modelyard key: what clients of local model
    servers send when any key will do (``sk-no-key-required``, ``ollama``, ``lm-studio``).
    Ignored there, so local trust judges the caller (a remote one is refused, so nothing is
    widened); a wrong, revoked or expired key of modelyard's own form is refused as such."""
    route = scope.get(POLICY_KEY, (None,))[0]
    return _gateway_dialect(route) is not None and not token.startswith(KEY_PREFIX)


def _gateway_dialect(route: object) -> Dialect | None:
    """The dialect of a gateway route (``api/routes/gateway.py``), None for other routes."""
    dialect = getattr(route, "dialect", None)
    return dialect if isinstance(dialect, Dialect) else None


def _token(scope: Scope) -> str:
    """The key a request carries: ``Authorization: Bearer``, ``x-api-key`` (as Anthropic's
    clients send it), or a WebSocket's access_token.

    Decoded as UTF-8 with surrogate escapes, so any octets compare (and fail) as bytes."""
    for name, value in scope["headers"]:
        if name.lower() == b"authorization" and value[:7].lower() == b"bearer ":
            return str(value[7:].strip().decode("utf-8", "surrogateescape"))
    for name, value in scope["headers"]:
        if name.lower() == b"x-api-key" and value.strip():
            return str(value.strip().decode("utf-8", "surrogateescape"))
    if scope["type"] == "websocket":
        query = scope.get("query_string", b"").decode("latin-1")
        return str(parse_qs(query).get("access_token", [""])[0])
    return ""


def _body_too_large(headers: dict[str, str], limit: int) -> Refusal | None:
    length = headers.get("content-length", "")
    return _too_large(limit) if length.isdigit() and int(length) > limit else None


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that fails once the body passes ``limit``: a chunked body has no
    Content-Length to refuse up front, so it is refused on the first chunk past the limit."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                # The rest of the body is never read: the connection cannot serve another
                # request after it, so it closes once this answer is sent.
                raise HTTPException(
                    413, detail=_too_large(limit)["detail"], headers={"Connection": "close"}
                )
        return message

    return receive_limited


def _too_large(limit: int) -> Refusal:
    return problem(
        413,
        "body_too_large",
        "Content too large",
        f"the request body is larger than the {limit} bytes allowed",
        "Send a smaller body (the limit is max_body_bytes).",
    )
