"""Anthropic Messages over an OpenAI chat-completions backend.

A Messages request (system, text/image/tool_use/tool_result blocks, tools, tool_choice,
stop_sequences…) becomes a chat-completions request; the answer becomes a ``message`` with
``text`` and ``tool_use`` blocks, ``stop_reason`` and ``usage``; a stream becomes Anthropic's
event sequence: ``message_start``, then per block ``content_block_start``, its
``content_block_delta``s (``text_delta`` or ``input_json_delta``) and ``content_block_stop``,
then ``message_delta`` (stop reason, usage) and ``message_stop``.

Where the two differ: the input token count is not known when the stream starts (OpenAI sends
usage last), so ``message_start`` says 0 and ``message_delta`` carries both counts, as the
Anthropic API itself now does. Reasoning text (``reasoning_content``) is left out: Anthropic's
thinking blocks need a signature no OpenAI backend makes. ``top_k`` is passed on (llama.cpp,
vLLM and LM Studio accept it).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.gateway.metering import StreamMeter
from modelyard.gateway.translate.openai_events import DONE, chunks, first_choice, usage_counts
from modelyard.gateway.wire import Dialect, compact, sse_event

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_PASSED = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "stream": "stream"}


def _text(content: Any) -> str:
    """The text of a string or of a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _image_part(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        raise InvalidInput(
            f"image source type {source.get('type')!r} cannot be sent to this model",
            code="not_supported",
            hint="Send images as base64 or URL sources.",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _user_messages(content: Any) -> list[dict[str, Any]]:
    """A user turn: tool results first (as ``tool`` messages), then text and images."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            text = _text(block.get("content"))
            if block.get("is_error"):
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append(_image_part(block))
        elif kind not in ("thinking", "redacted_thinking"):
            raise InvalidInput(
                f"content blocks of type {kind!r} cannot be sent to this model",
                code="not_supported",
                hint="Send text, image, tool_use and tool_result blocks.",
            )
    if parts:
        texts_only = all(p["type"] == "text" for p in parts)
        joined: Any = "".join(p["text"] for p in parts) if texts_only else parts
        out.append({"role": "user", "content": joined})
    return out


def _assistant_message(content: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": _text(content) or None}
    calls = [
        {
            "id": block.get("id"),
            "type": "function",
            "function": {
                "name": block.get("name"),
                "arguments": compact(block.get("input") or {}).decode(),
            },
        }
        for block in (content if isinstance(content, list) else [])
        if isinstance(block, dict) and block.get("type") == "tool_use"
    ]
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    """OpenAI's ``tool_choice`` and ``parallel_tool_calls`` for Anthropic's ``tool_choice``."""
    if not isinstance(choice, dict):
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}.get(str(kind)), parallel


def chat_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A Messages request as a chat-completions request for ``model``."""
    messages: list[dict[str, Any]] = []
    if system := _text(body.get("system")):
        messages.append({"role": "system", "content": system})
    for turn in body.get("messages") or []:
        if not isinstance(turn, dict):
            raise InvalidInput("each message must be an object", code="invalid_message")
        if turn.get("role") == "assistant":
            messages.append(_assistant_message(turn.get("content")))
        else:
            messages.extend(_user_messages(turn.get("content")))
    sent: dict[str, Any] = {"model": model, "messages": messages}
    if isinstance(body.get("max_tokens"), int):
        sent["max_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        sent["stop"] = body["stop_sequences"]
    for theirs, ours in _PASSED.items():
        if theirs in body:
            sent[ours] = body[theirs]
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        sent["user"] = user
    if body.get("tools"):
        sent["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.get("name"),
                    "description": tool.get("description", ""),
                    "parameters": tool.get("input_schema") or {"type": "object"},
                },
            }
            for tool in body["tools"]
            if isinstance(tool, dict)
        ]
    choice, parallel = _tool_choice(body.get("tool_choice"))
    if choice is not None:
        sent["tool_choice"] = choice
    if parallel is not None:
        sent["parallel_tool_calls"] = parallel
    return sent


def _arguments(raw: Any) -> Any:
    try:
        return json.loads(raw) if isinstance(raw, str) and raw else {}
    except ValueError:
        return {"_raw": raw}  # a model that wrote broken JSON: keep what it wrote


def message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def message_response(answer: Any, model: str) -> dict[str, Any]:
    """A whole chat-completions answer as a Messages answer under the client's ``model``."""
    choice = first_choice(answer)
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + secrets.token_hex(12),
                "name": function.get("name"),
                "input": _arguments(function.get("arguments")),
            }
        )
    prompt, completion = usage_counts(answer)
    return {
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


class MessagesStream:
    """Chat-completion chunks in, Messages events out, for one stream."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._started = False
        self._block = -1  # index of the open block
        self._open: str | None = None  # "text", or the OpenAI index of an open tool call
        self._stop_reason = "end_turn"

    def feed(self, events: bytes) -> bytes:
        out: list[bytes] = []
        for chunk in chunks(events):
            if chunk is DONE or not isinstance(chunk, dict):
                continue
            if not self._started:
                out.append(self._message_start())
            if "error" in chunk:
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else str(error)
                body = {"type": "error", "error": {"type": "api_error", "message": message}}
                out.append(sse_event(body, "error"))
                continue
            choice = first_choice(chunk)
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out.extend(self._text(delta["content"]))
            for call in delta.get("tool_calls") or []:
                out.extend(self._tool_call(call))
            if choice.get("finish_reason"):
                self._stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return b"".join(out)

    def close(self, meter: StreamMeter) -> bytes:
        """The closing events: the open block's stop, ``message_delta``, ``message_stop``."""
        out = [] if self._started else [self._message_start()]
        out.extend(self._close_block())
        usage = meter.usage
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
            "usage": {
                "input_tokens": usage.prompt_tokens or 0,
                "output_tokens": usage.completion_tokens,
            },
        }
        out.append(sse_event(delta, "message_delta"))
        out.append(sse_event({"type": "message_stop"}, "message_stop"))
        return b"".join(out)

    def _message_start(self) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return sse_event({"type": "message_start", "message": message}, "message_start")

    def _start_block(self, block: dict[str, Any], kind: str) -> bytes:
        self._block += 1
        self._open = kind
        start = {"type": "content_block_start", "index": self._block, "content_block": block}
        return sse_event(start, "content_block_start")

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        stop = {"type": "content_block_stop", "index": self._block}
        return [sse_event(stop, "content_block_stop")]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        body = {"type": "content_block_delta", "index": self._block, "delta": delta}
        return sse_event(body, "content_block_delta")

    def _text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open != "text":
            out.extend(self._close_block())
            out.append(self._start_block({"type": "text", "text": ""}, "text"))
        out.append(self._delta({"type": "text_delta", "text": text}))
        return out

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        kind = f"tool{call.get('index', 0)}"
        function = call.get("function") or {}
        if self._open != kind or call.get("id"):
            out.extend(self._close_block())
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + secrets.token_hex(12),
                "name": function.get("name"),
                "input": {},
            }
            out.append(self._start_block(block, kind))
        if function.get("arguments"):
            out.append(
                self._delta({"type": "input_json_delta", "partial_json": function["arguments"]})
            )
        return out


class AnthropicOverOpenAI:
    """``relay.Translation`` for ``/v1/messages`` in front of a chat-completions backend."""

    client = Dialect.ANTHROPIC
    path = "/chat/completions"

    def __init__(self) -> None:
        self.model = ""

    def request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        self.model = str(body.get("model", model))
        return chat_request(body, model)

    def response(self, body: bytes) -> bytes:
        return compact(message_response(json.loads(body), self.model))

    def stream(self) -> MessagesStream:
        return MessagesStream(self.model)


@dataclass(frozen=True)
class TokenCount:
    """A ``/v1/messages/count_tokens`` body, kept as the client sent it: a backend that counts
    is sent it with only ``model`` renamed; any other counts the texts of its translation."""

    body: dict[str, Any]

    @property
    def model(self) -> str | None:
        """The model it names (None when it names none)."""
        name = self.body.get("model")
        return name if isinstance(name, str) and name else None

    def sent_as(self, model: str) -> dict[str, Any]:
        return {**self.body, "model": model}

    def texts(self) -> list[str]:
        """The texts of its messages (the system prompt first) as chat-completions sees them."""
        messages = chat_request(self.body, "").get("messages", [])
        return [_texts_of(m.get("content")) for m in messages]


def _texts_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""
