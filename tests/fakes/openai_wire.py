"""OpenAI chat-completions wire format, shared by the LM Studio and OpenAI-compatible fakes.

``stream_chat`` yields the SSE bytes of a streamed completion (``data: <json>\\n\\n`` per
chunk: a first chunk with the assistant role, one chunk per piece, a last chunk with
``finish_reason`` and an empty delta, an optional usage chunk when the request asked for
``stream_options.include_usage``, then ``data: [DONE]``). A scripted mid-stream error is sent
as ``data: {"error": {...}}`` and the stream ends without ``[DONE]`` (as llama-server and
vLLM do). ``complete_chat`` builds the non-streamed ``chat.completion`` object.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tests.fakes.common import ReplyScript, play


@dataclass(frozen=True)
class ChatRequest:
    """The parts of a chat-completions request the fakes act on."""

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_tokens: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ChatRequest:
        """Read a request body (already known to be a JSON object)."""
        options = body.get("stream_options") or {}
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        messages = body.get("messages") or []
        words = sum(
            len(str(m.get("content") or "").split()) for m in messages if isinstance(m, dict)
        )
        return cls(
            model=str(body.get("model") or ""),
            stream=bool(body.get("stream")),
            include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
            max_tokens=limit if isinstance(limit, int) and limit >= 0 else None,
            prompt_tokens=max(words, 1),
        )


def sse(data: Any) -> bytes:
    """One SSE event carrying compact JSON."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> Any:
    """The OpenAI error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class _Ids:
    """The identity shared by every chunk of one completion."""

    def __init__(self, model: str, fingerprint: str) -> None:
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model
        self.fingerprint = fingerprint

    def head(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**self.head("chat.completion.chunk"), "choices": [choice]}


async def stream_chat(
    script: ReplyScript, request: ChatRequest, fingerprint: str
) -> AsyncIterator[bytes]:
    """The SSE body of a streamed completion."""
    ids = _Ids(request.model, fingerprint)
    pieces, cut = script.pieces_for(request.max_tokens)
    yield sse(ids.chunk({"role": "assistant", "content": ""}))
    sent = 0
    async for event in play(script, pieces):
        if event.error is not None:
            yield sse(error_body(event.error, "server_error"))
            return
        sent += 1
        yield sse(ids.chunk({"content": event.text}))
    yield sse(ids.chunk({}, "length" if cut else "stop"))
    if request.include_usage:
        yield sse(
            {
                **ids.head("chat.completion.chunk"),
                "choices": [],
                "usage": _usage(request.prompt_tokens, sent),
            }
        )
    yield b"data: [DONE]\n\n"


async def complete_chat(
    script: ReplyScript, request: ChatRequest, fingerprint: str
) -> tuple[int, Any]:
    """A non-streamed completion: (status, body). A scripted error becomes a 500."""
    ids = _Ids(request.model, fingerprint)
    pieces, cut = script.pieces_for(request.max_tokens)
    text: list[str] = []
    async for event in play(script, pieces):
        if event.error is not None:
            return 500, error_body(event.error, "server_error")
        text.append(event.text)
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": "".join(text)},
        "logprobs": None,
        "finish_reason": "length" if cut else "stop",
    }
    body = {
        **ids.head("chat.completion"),
        "choices": [choice],
        "usage": _usage(request.prompt_tokens, len(text)),
    }
    return 200, body
