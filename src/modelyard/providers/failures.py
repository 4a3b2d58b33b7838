"""How a runtime's failure while answering becomes a ``ChatError`` with a reason code the
client can act on: ``provider_unreachable``, ``timeout``, ``unauthorized``,
``model_not_found``, ``context_exceeded``, ``bad_request``, ``rate_limited`` or
``upstream_error``."""

from __future__ import annotations

from modelyard.chat.types import Target
from modelyard.errors import ChatError

_CONTEXT_WORDS = ("context", "exceed_context_size", "too long", "maximum context")


def sdk_message(body: object, fallback: str) -> str:
    """The server's own words from an SDK error's body (``{"error": {"message"}}`` as OpenAI
    and Anthropic send it, or ``{"message"}``), else the SDK's."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return fallback


def failed_hint(target: Target) -> str:
    """What to do when an instance failed while answering: which one, and where to look."""
    return (
        f"{target.key} ({target.base_url}) failed while answering with {target.model}: "
        "check the instance's status and its log, then send the message again or "
        "regenerate the answer."
    )


def upstream_failed(message: str, target: Target) -> ChatError:
    """An error the runtime reported in the middle of its answer."""
    return ChatError(message, code="upstream_error", hint=failed_hint(target))


def status_error(status: int, message: str, target: Target) -> ChatError:
    """The error for an HTTP status the runtime answered with."""
    where = f"{target.key} ({target.base_url})"
    if status < 400:  # an error event after a 200 had started the stream
        return upstream_failed(message, target)
    if status in (401, 403):
        return ChatError(
            f"{where} refused the request: {message}",
            code="unauthorized",
            hint="Check the API key configured for this instance.",
        )
    if status == 404:
        return ChatError(
            f"{where} does not know the model {target.model!r}: {message}",
            code="model_not_found",
            hint="Pick a model this instance lists, or fetch it first.",
        )
    if status == 429:
        return ChatError(message, code="rate_limited", hint="Wait a moment and try again.")
    if status in (400, 413, 422):
        if any(word in message.lower() for word in _CONTEXT_WORDS):
            return ChatError(
                message,
                code="context_exceeded",
                hint="Shorten the message, or raise the context size in the chat options.",
            )
        return ChatError(message, code="bad_request", hint="Check the chat options.")
    return ChatError(
        f"{where} answered HTTP {status}: {message}",
        code="upstream_error",
        hint=failed_hint(target),
    )


def timed_out(target: Target) -> ChatError:
    return ChatError(
        f"{target.key} did not answer in time",
        code="timeout",
        hint="The server may be overloaded or hung; check its status and log.",
    )


def unreachable(target: Target, exc: BaseException) -> ChatError:
    return ChatError(
        f"cannot reach {target.key} at {target.base_url}: {exc}",
        code="provider_unreachable",
        hint="Start the provider, or check its address.",
    )
