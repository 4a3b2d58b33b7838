"""Every error leaves the API as RFC 9457 problem+json with ``code`` and ``hint``; a route that
declares the compatibility shape (``policy.COMPATIBILITY``) adds ``success: false``."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from modelyard.api.policy import RoutePolicy, declared_policy
from modelyard.errors import ModelyardError, problem

log = logging.getLogger("modelyard.api")
PROBLEM = "application/problem+json"

_PARAMETER_LOCATIONS = {"query": "query parameter", "path": "path parameter", "header": "header"}
_BODY_HINT = "Send a JSON object matching the schema in /openapi.json."

_HTTP_CODES = {
    404: ("route_not_found", "Not found", "Check the path; /openapi.json lists every endpoint."),
    405: ("method_not_allowed", "Method not allowed", "Check the HTTP method for this path."),
    # A chunked body that passed the limit while it was read (api/security.py).
    413: (
        "body_too_large",
        "Content too large",
        "Send a smaller body (the limit is max_body_bytes).",
    ),
}


class Problem(BaseModel):
    """An RFC 9457 problem with modelyard's ``code`` and ``hint`` (``errors.problem``).

    Some carry more members: ``errors`` (a request that did not validate), ``required`` and
    ``available`` (resources), ``upstream_status`` (a failed download)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    hint: str
    instance: str | None = None


class CompatibilityProblem(Problem):
    """A problem as a compatibility endpoint (SPEC §8) answers it: with ``success: false``."""

    success: Literal[False] = False


_NATIVE = RoutePolicy(success_field=False)


def _compatible(route: BaseRoute | None) -> bool:
    """Whether a route declares the compatibility error shape (``success: false``)."""
    return route is not None and bool(declared_policy(route, _NATIVE).success_field)


def document(router: APIRouter) -> None:
    """Declare every route's error answers in the OpenAPI schema: problem+json, in the shape
    its policy gives them. Call it before the router is included."""
    for route in router.routes:
        if isinstance(route, APIRoute):
            model = CompatibilityProblem if _compatible(route) else Problem
            content = {PROBLEM: {"schema": model.model_json_schema()}}
            generic: dict[int | str, dict[str, Any]] = {
                "4XX": {
                    "description": "Refused: the problem's `code` says why.",
                    "content": content,
                },
                "5XX": {
                    "description": "Failed: the problem's `code` says why.",
                    "content": content,
                },
            }
            route.responses = {**generic, **route.responses}


def problem_response(
    request: Request, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    # The route FastAPI matched, or whose path matched when the method did not (a 405).
    if _compatible(request.scope.get("route")):
        body.setdefault("success", False)
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM, headers=headers)


def _parameter_hint(kind: str, name: str, error: dict[str, Any]) -> str:
    """A hint naming the parameter and, where pydantic says them, its allowed values."""
    expected = (error.get("ctx") or {}).get("expected")
    if error.get("type") in ("literal_error", "enum") and expected:
        return f"Give {kind} '{name}' one of: {expected}."
    msg = str(error.get("msg", ""))
    if msg.startswith("Input should be "):
        return f"Give {kind} '{name}' a value that is {msg.removeprefix('Input should be ')}."
    if error.get("type") == "missing":
        return f"Give {kind} '{name}'; /openapi.json describes it."
    return f"Check {kind} '{name}' against /openapi.json."


def _validation_detail(
    exc: RequestValidationError,
) -> tuple[str, str, str, list[dict[str, Any]]]:
    """(code, detail, hint, errors) for a request FastAPI could not validate."""
    errors = exc.errors()
    simple = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    if any(e["type"] == "json_invalid" for e in simple):
        return "invalid_json", "The request body is not valid JSON.", _BODY_HINT, simple
    first = simple[0] if simple else {"loc": [], "msg": "invalid request"}
    loc = first["loc"]
    if len(loc) >= 2 and loc[0] in _PARAMETER_LOCATIONS:
        kind, name = _PARAMETER_LOCATIONS[loc[0]], loc[1]
        hint = _parameter_hint(kind, name, errors[0])
        return "validation_error", f"{kind} '{name}': {first['msg']}", hint, simple
    where = ".".join(p for p in loc if p != "body") or "request"
    return "validation_error", f"{where}: {first['msg']}", _BODY_HINT, simple


def install(app: FastAPI) -> None:
    @app.exception_handler(ModelyardError)
    async def _modelyard(request: Request, exc: ModelyardError) -> JSONResponse:
        if exc.http_status >= 500:
            method = request.scope.get("method", "WEBSOCKET")
            log.warning("%s %s → %s %s", method, request.url.path, exc.http_status, exc.detail)
        return problem_response(request, exc.to_problem(request.url.path), exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, detail, hint, errors = _validation_detail(exc)
        status = 400 if code == "invalid_json" else 422
        body = problem(
            status, code, "Invalid request", detail, hint, instance=request.url.path, errors=errors
        )
        return problem_response(request, body)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title, hint = _HTTP_CODES.get(
            exc.status_code, ("http_error", "HTTP error", "Check the request.")
        )
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        body = problem(exc.status_code, code, title, detail, hint)
        return problem_response(request, body, headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = problem(
            500,
            "internal_error",
            "Internal error",
            "An unexpected error occurred.",
            "This is a bug in modelyard; the server log has the details.",
        )
        return problem_response(request, body)
