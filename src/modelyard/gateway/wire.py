"""The three dialects the gateway speaks and relays: their framing, usage and error shapes.

OpenAI (chat completions, completions, embeddings) streams SSE ``data: {json}`` events and
ends with ``data: [DONE]``; Anthropic Messages streams named SSE events (``event: x`` then
``data: {json}``); Ollama's native API streams NDJSON, one object a line. An error before
anything was sent is a problem+json body that also carries the dialect's own ``error`` member,
so each SDK finds its message where it looks; an error after the stream started can only be
one more event in the dialect (PROTOCOLS.md §1.3, §3.3, §5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modelyard.errors import ModelyardError

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
JSON = "application/json"
PROBLEM = "application/problem+json"

# Headers of every streamed answer: nothing between the client and us may hold chunks back.
STREAM_HEADERS = (
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


class Dialect(StrEnum):
    """A wire format of model APIs."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    OLLAMA = "ollama"

    @property
    def stream_type(self) -> str:
        """The media type of a streamed answer in this dialect."""
        return NDJSON if self is Dialect.OLLAMA else SSE


@dataclass(frozen=True)
class Usage:
    """Tokens one answer cost. ``exact``: the backend's own figures; otherwise counted from
    the chunks that reached the client (an answer cut off before its usage arrived)."""

    prompt_tokens: int | None
    completion_tokens: int
    exact: bool


def compact(value: Any) -> bytes:
    """JSON without spaces, as the model servers write it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One SSE event carrying compact JSON, named when ``event`` is given (Anthropic)."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + compact(data) + b"\n\n"


def sse_comment(text: str) -> bytes:
    """An SSE comment line: clients skip it, proxies see traffic, nobody takes it for a token."""
    return b": " + text.replace("\n", " ").encode() + b"\n\n"


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def dialect_error(dialect: Dialect, error: ModelyardError) -> dict[str, Any]:
    """The ``error`` member as each dialect's clients expect it."""
    return dialect_error_member(dialect, error.http_status, error.detail, error.error_code)


def dialect_error_member(dialect: Dialect, status: int, detail: str, code: str) -> dict[str, Any]:
    """The ``error`` member for a problem's status, detail and code. (Anthropic's own bodies
    also say ``"type": "error"``; its SDKs read only ``error``, and problem+json's ``type``
    stays the problem's URI.)"""
    if dialect is Dialect.OLLAMA:
        return {"error": detail}
    if dialect is Dialect.ANTHROPIC:
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        return {"error": {"type": kind, "message": detail}}
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": detail, "type": kind, "param": None, "code": code}}


def error_body(dialect: Dialect, error: ModelyardError, instance: str | None = None) -> bytes:
    """A problem+json body (``code``, ``hint``) that also carries the dialect's ``error``."""
    body = error.to_problem(instance)
    body.update(dialect_error(dialect, error))
    return compact(body)


def stream_error(dialect: Dialect, error: ModelyardError) -> bytes:
    """The error as the last event of a stream that has already started (no ``[DONE]``)."""
    if dialect is Dialect.OLLAMA:
        return compact({"error": error.detail}) + b"\n"
    if dialect is Dialect.ANTHROPIC:
        return sse_event({"type": "error", **dialect_error(dialect, error)}, "error")
    return sse_event(dialect_error(dialect, error))
