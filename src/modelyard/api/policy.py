"""What each route asks of its callers, declared where the route is declared (SPEC §12).

A router declares a policy for all its routes, and a route that differs declares its own::

    router = APIRouter(dependencies=[policy(write="inference")])

    @router.get("/api/audit", dependencies=[policy(read="admin")])

Fields a declaration leaves out keep the router's value, or the default: ``read`` for reads
(GET, HEAD, WebSocket), ``admin`` for changes, no local apps' origins, errors without
``success`` (the compatibility endpoints of SPEC §8 declare ``COMPATIBILITY``: their clients
read ``success: false`` in every error, and ``api/problems.py`` adds it). The guard middleware
finds a request's route in a ``RouteTable`` built from the same routers before anything else
runs (the body is not read yet, a refusal is audited) and applies the route's policy. As a
FastAPI dependency the declaration also runs where FastAPI itself routed the request, and
fails closed when the two disagree, so a route the table does not know can never be reached
under another route's policy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter
from fastapi.params import Depends as DependsParam
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from modelyard.errors import ModelyardError

ScopeName = Literal["read", "inference", "admin"]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "WEBSOCKET"})
POLICY_KEY = "modelyard.policy"


@dataclass(frozen=True)
class RoutePolicy:
    """A declaration; ``None`` fields are left to the router's declaration or the default."""

    read: ScopeName | None = None
    write: ScopeName | None = None
    local_origins: bool | None = None  # local apps' origins may call it, with CORS
    public: bool | None = None  # reads need no key at all (the dashboard's shell)
    max_body: int | None = None  # bytes; None: the app's max_body_bytes
    success_field: bool | None = None  # errors carry ``success: false`` too

    def over(self, base: RoutePolicy) -> RoutePolicy:
        """This declaration on top of ``base``."""
        changes = {
            f.name: value
            for f in dataclasses.fields(self)
            if (value := getattr(self, f.name)) is not None
        }
        return dataclasses.replace(base, **changes)

    def scope_for(self, method: str) -> ScopeName:
        """The scope a key needs for ``method`` (a WebSocket reads)."""
        chosen = self.read if method in READ_METHODS else self.write
        assert chosen is not None  # an effective policy has every field
        return chosen

    async def __call__(self, connection: HTTPConnection) -> None:
        # The middleware stored the route it matched; FastAPI's own match must be the same
        # (the same endpoint at the same path: FastAPI copies a WebSocket route it includes).
        applied = connection.scope.get(POLICY_KEY)
        if applied is None or not _same_route(applied[0], connection.scope.get("route")):
            raise ModelyardError(
                f"the guards did not check {connection.url.path} under its route's policy",
                code="route_policy_mismatch",
            )


def policy(
    *,
    read: ScopeName | None = None,
    write: ScopeName | None = None,
    local_origins: bool | None = None,
    public: bool | None = None,
    max_body: int | None = None,
    success_field: bool | None = None,
) -> DependsParam:
    """A declaration to put in a router's or a route's ``dependencies``."""
    return DependsParam(
        RoutePolicy(
            read=read,
            write=write,
            local_origins=local_origins,
            public=public,
            max_body=max_body,
            success_field=success_field,
        )
    )


# A compatibility endpoint's declaration (SPEC §8): its errors carry ``success: false``.
COMPATIBILITY = policy(success_field=True)


def declared_policy(route: BaseRoute, default: RoutePolicy) -> RoutePolicy:
    """The effective policy of a route: its declarations, router's first, over ``default``."""
    effective = default
    for dependency in getattr(route, "dependencies", None) or []:
        if isinstance(dependency.dependency, RoutePolicy):
            effective = dependency.dependency.over(effective)
    return effective


class RouteTable:
    """The routes of the app with their policies, matched the way Starlette matches them:
    the first route whose path and method fit; a path that fits with another method (405)
    and an unknown path (404) get the default policy."""

    def __init__(self, max_body: int) -> None:
        self.default = RoutePolicy(
            read="read",
            write="admin",
            local_origins=False,
            public=False,
            max_body=max_body,
            success_field=False,
        )
        self._routes: list[tuple[BaseRoute, RoutePolicy]] = []
        # What a path of a route without parameters (every gateway route) matched: a dict
        # lookup instead of a regular expression per route on every request. Bounded by the
        # app's own routes and methods; paths with parameters are matched each time.
        self._static: dict[tuple[str, str, str, str], tuple[BaseRoute, RoutePolicy]] = {}

    def add_router(self, router: APIRouter, over: RoutePolicy | None = None) -> None:
        """Every route of ``router``; ``over`` is a declaration made where it is included
        (one that needs a setting, such as a larger body limit)."""
        base = over.over(self.default) if over is not None else self.default
        for route in router.routes:
            self.add(route, declared_policy(route, base))

    def add(self, route: BaseRoute, declared: RoutePolicy) -> None:
        self._routes.append((route, declared))

    def match(self, scope: Scope) -> tuple[BaseRoute | None, RoutePolicy]:
        key = (scope["type"], scope.get("root_path", ""), scope["path"], scope.get("method", ""))
        known = self._static.get(key)
        if known is not None:
            return known
        for route, declared in self._routes:
            found, _ = route.matches(scope)
            if found is Match.FULL:
                if getattr(route, "param_convertors", None) == {}:
                    self._static[key] = (route, declared)
                return route, declared
        return None, self.default

    def match_method(self, scope: Scope, method: str) -> RoutePolicy:
        """The policy of the route ``method`` would reach at this path (a CORS preflight)."""
        _, declared = self.match({**scope, "method": method})
        return declared


def _same_route(matched: BaseRoute | None, routed: BaseRoute | None) -> bool:
    return (
        matched is not None
        and routed is not None
        and getattr(matched, "endpoint", None) is getattr(routed, "endpoint", None)
        and getattr(matched, "path", None) == getattr(routed, "path", None)
    )
