"""The one error tree. Each error knows its HTTP status, a stable snake_case code and a hint.

Adapters translate foreign errors (httpx, ollama, OS errors) into these with
``raise ... from exc``; ``modelyard.api.problems`` turns them into RFC 9457 problem+json.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class ModelyardError(Exception):
    """Base of every error modelyard reports to a user."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    default_hint: ClassVar[str] = "This is a bug in modelyard; the server log has the details."

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        hint: str | None = None,
        status: int | None = None,
        retry_after_s: float | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.error_code = code or self.code
        self.hint = hint or self.default_hint
        self.http_status = status or self.status
        self.retry_after_s = retry_after_s
        self.extra = extra

    def headers(self) -> dict[str, str]:
        """Response headers the error asks for: ``Retry-After`` (whole seconds, at least 1)
        when the client should come back later."""
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The problem+json body (RFC 9457) with ``code`` and ``hint``."""
        return problem(
            self.http_status,
            self.error_code,
            self.title,
            self.detail,
            self.hint,
            instance=instance,
            **self.extra,
        )


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    hint: str,
    *,
    instance: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An RFC 9457 problem body with modelyard's ``code`` and ``hint`` members."""
    body: dict[str, Any] = {
        "type": f"https://modelyard.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "hint": hint,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


class InvalidInput(ModelyardError):
    """The request is malformed or names something that cannot be."""

    status = 400
    code = "invalid_input"
    title = "Invalid input"
    default_hint = "Check the request against /openapi.json."


class Unauthorized(ModelyardError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"
    default_hint = "Send an API key as 'Authorization: Bearer <key>'."


class Forbidden(ModelyardError):
    status = 403
    code = "forbidden"
    title = "Forbidden"
    default_hint = "This request is not allowed from where it came."


class NotFound(ModelyardError):
    status = 404
    code = "not_found"
    title = "Not found"
    default_hint = "Check the name or id; list what exists first."


class Conflict(ModelyardError):
    """The request is valid but the current state does not allow it."""

    status = 409
    code = "conflict"
    title = "Conflict"
    default_hint = "Change the state first (for example stop it), then try again."


class PayloadTooLarge(ModelyardError):
    status = 413
    code = "too_large"
    title = "Too large"
    default_hint = "Send less."


class TooManyRequests(ModelyardError):
    """Too much is waiting already; ``Retry-After`` says when to come back."""

    status = 429
    code = "too_many_requests"
    title = "Too many requests"
    default_hint = "Retry after the number of seconds in the Retry-After header."


class InsufficientResources(ModelyardError):
    """Not enough disk or memory; an override flag exists where it makes sense."""

    status = 507
    code = "insufficient_resources"
    title = "Insufficient resources"
    default_hint = "Free some space or memory, or pass force=true to try anyway."


class UpstreamError(ModelyardError):
    """A provider or remote server failed or answered something unusable."""

    status = 502
    code = "upstream_error"
    title = "Upstream error"
    default_hint = "Check the provider on the Providers page."


class UpstreamRejected(ModelyardError):
    """The backend refused the request as malformed or too large; its 4xx status and its
    own message are passed on."""

    status = 400
    code = "upstream_rejected"
    title = "Refused by the model server"
    default_hint = "The model server's own message is in 'detail'; change the request."


class Unavailable(ModelyardError):
    status = 503
    code = "unavailable"
    title = "Unavailable"
    default_hint = "Try again in a moment."


class ConfigError(ModelyardError):
    """The configuration cannot be used; raised at start, shown without a traceback."""

    status = 500
    code = "config_error"
    title = "Configuration error"
    default_hint = "See docs/CONFIGURATION.md."


class ListingError(UpstreamError):
    """An instance's models could not be listed; ``code`` says why."""


class ChatError(UpstreamError):
    """A generation that could not start or finish. Its stable ``code`` reaches the client in
    the stream's ``error`` event (``provider_unreachable``, ``timeout``, ``unauthorized``,
    ``model_not_found``, ``context_exceeded``, ``bad_request``, ``rate_limited``,
    ``upstream_error``, or the health check's reason when the provider is down)."""

    title = "Chat failed"


class PullError(UpstreamError):
    """A pull that ended without success; ``retryable`` says whether to try again."""

    title = "Pull failed"

    def __init__(self, detail: str, *, code: str, retryable: bool, hint: str | None = None) -> None:
        super().__init__(detail, code=code, hint=hint)
        self.retryable = retryable


class IllegalTransition(ModelyardError):
    """A state change that a transition table forbids: a bug in modelyard, never the user's."""

    status = 500
    code = "illegal_transition"
    title = "Illegal state change"
