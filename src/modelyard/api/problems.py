"""Every error leaves the API as RFC 9457 problem+json with ``code`` and ``hint``."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelyard.errors import ModelyardError, problem

log = logging.getLogger("modelyard.api")
PROBLEM = "application/problem+json"

# Compatibility endpoints (SPEC §8) whose clients also expect ``success: false`` in error
# bodies: these paths and everything under them, and every DELETE under ``/api/models/`` (the
# model-delete endpoint catches every deeper path).
_SUCCESS_FIELD_PATHS = (
    "/api/models/download",
    "/api/models/pull",
    "/api/models/list",
    "/api/models/available",
    "/api/models/status",
    "/api/models/health",
)
_SUCCESS_FIELD_DELETE_PREFIX = "/api/models/"
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


def _has_success_field(request: Request) -> bool:
    """Whether the request went to a compatibility endpoint that answers with ``success``."""
    path = request.url.path.rstrip("/")
    if request.method == "DELETE" and path.startswith(_SUCCESS_FIELD_DELETE_PREFIX):
        return True
    return any(path == p or path.startswith(p + "/") for p in _SUCCESS_FIELD_PATHS)


def problem_response(
    request: Request, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    if _has_success_field(request):
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
